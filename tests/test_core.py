"""End to end on real Delta tables in a temporary directory (issue: core)."""

from __future__ import annotations

import textwrap
import types
import uuid
from pathlib import Path

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from deltalake import DeltaTable

import lakehouse as lh
from lakehouse.errors import MaterializeError, OutputError


def build_module(tmp_path: Path, source: str, name: str = "user_assets") -> types.ModuleType:
    """Define assets from source in a real module file, as a user project would."""
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


BASE = """
import polars as pl
import lakehouse as lh

RATE = 1.0

@lh.asset
def orders(ctx: lh.Context) -> pl.DataFrame:
    return pl.DataFrame({"customer": ["a", "b", "a", "c"], "amount": [10.0, 20.0, 5.0, 7.5]})

@lh.asset
def revenue(orders: pl.LazyFrame) -> pl.LazyFrame:
    return orders.group_by("customer").agg((pl.col("amount") * RATE).sum())

@lh.asset(engine="duckdb")
def top_customers(revenue):
    return revenue.order("amount desc").limit(2)
"""


def test_first_run_materializes_all_second_run_nothing(tmp_path: Path) -> None:
    mod = build_module(tmp_path, BASE)
    lake = lh.Lakehouse(tmp_path / "lake", assets=mod)
    plan = lake.plan()
    assert plan["asset"].to_list() == ["orders", "revenue", "top_customers"]
    assert set(plan["reason"]) == {"never_materialized"}
    result = lake.materialize()
    assert result.ok
    frame = result.assets
    assert frame["status"].to_list() == ["materialized"] * 3
    assert frame.columns[:3] == ["asset", "partitions", "status"]
    for col in ("asset", "status", "reason", "rows", "version", "seconds", "error"):
        assert col in frame.columns
    top = lake.read("top_customers")
    assert top["customer"].to_list() == ["b", "a"]
    assert top["amount"].to_list() == [20.0, 15.0]
    # an independent reader sees the same table
    assert DeltaTable(str(tmp_path / "lake" / "top_customers")).to_pyarrow_table().num_rows == 2

    again = lake.materialize()
    assert again.assets["status"].to_list() == ["skipped"] * 3
    assert lake.plan().height == 0
    status = lake.status()
    assert status["stale"].to_list() == [False] * 3
    assert status.columns[:8] == ["asset", "stale", "reason", "cause", "version", "rows", "materialized_at",
                                  "code_version"]


def test_code_change_recomputes_exactly_the_subgraph(tmp_path: Path) -> None:
    mod = build_module(tmp_path, BASE)
    lake = lh.Lakehouse(tmp_path / "lake", assets=mod)
    lake.materialize()
    # a comment/format change is not a code change
    mod2 = build_module(tmp_path, BASE.replace("def revenue(orders: pl.LazyFrame) -> pl.LazyFrame:",
                                               "def revenue(orders: pl.LazyFrame)  ->  pl.LazyFrame:  # note"), "m2")
    lake2 = lh.Lakehouse(tmp_path / "lake", assets=mod2)
    assert lake2.plan().height == 0
    mod3 = build_module(tmp_path, BASE.replace("* RATE)", "* RATE * 2)"), "m3")
    lake3 = lh.Lakehouse(tmp_path / "lake", assets=mod3)
    plan = lake3.plan()
    assert plan.select("asset", "reason", "cause").rows() == [
        ("revenue", "code_changed", "revenue"),
        ("top_customers", "upstream_stale", "revenue"),
    ]
    res = lake3.materialize()
    assert res.materialized == ["revenue", "top_customers"]
    assert lake3.read("top_customers")["amount"].to_list() == [40.0, 30.0]
    assert lake3.plan().height == 0


def test_helper_constant_change_is_a_code_change(tmp_path: Path) -> None:
    mod = build_module(tmp_path, BASE)
    lake = lh.Lakehouse(tmp_path / "lake", assets=mod)
    lake.materialize()
    mod.RATE = 2.0
    plan = lake.plan()
    assert plan["asset"].to_list() == ["revenue", "top_customers"]
    assert plan["reason"].to_list() == ["code_changed", "upstream_stale"]


def test_upstream_changed_when_an_input_has_a_newer_version(tmp_path: Path) -> None:
    mod = build_module(tmp_path, BASE)
    lake = lh.Lakehouse(tmp_path / "lake", assets=mod)
    lake.materialize()
    lake.materialize("orders", force=True)
    plan = lake.plan()
    assert plan.select("asset", "reason", "cause").rows() == [
        ("revenue", "upstream_changed", "orders"),
        ("top_customers", "upstream_stale", "revenue"),
    ]
    lake.materialize()
    assert lake.plan().height == 0
    prov = lake.provenance("revenue")
    first = prov.filter(pl.col("depth") == 0)
    assert first["input"].to_list() == ["orders"]
    assert first["input_version"].to_list() == [lake.table("orders").version]


def test_selection_strings(tmp_path: Path) -> None:
    mod = build_module(tmp_path, BASE)
    lake = lh.Lakehouse(tmp_path / "lake", assets=mod)
    assert lake.plan("revenue")["asset"].to_list() == ["revenue"]
    assert lake.plan("revenue+")["asset"].to_list() == ["revenue", "top_customers"]
    assert lake.plan("+revenue")["asset"].to_list() == ["orders", "revenue"]
    assert lake.plan(["orders", "top_customers"])["asset"].to_list() == ["orders", "top_customers"]
    res = lake.materialize("+revenue")
    assert [r["asset"] for r in res.rows] == ["orders", "revenue"]
    assert lake.plan()["asset"].to_list() == ["top_customers"]


def test_failure_stops_downstream_but_independent_assets_commit(tmp_path: Path) -> None:
    mod = build_module(tmp_path, BASE + """
@lh.asset
def broken(orders: pl.DataFrame) -> pl.DataFrame:
    raise ValueError("bad data in orders")

@lh.asset
def after_broken(broken: pl.LazyFrame) -> pl.LazyFrame:
    return broken
""")
    lake = lh.Lakehouse(tmp_path / "lake", assets=mod)
    with pytest.raises(MaterializeError) as err:
        lake.materialize()
    assert "broken" in str(err.value) and "bad data in orders" in str(err.value)
    result = err.value.result
    status = dict(zip(result.assets["asset"], result.assets["status"]))
    assert status == {"orders": "materialized", "broken": "failed", "revenue": "materialized",
                      "after_broken": "upstream_failed", "top_customers": "materialized"}
    res = lake.materialize(raise_on_error=False)
    assert not res.ok and set(res.failures) == {"broken", "after_broken"}
    assert set(lake.plan()["asset"]) == {"broken", "after_broken"}


@pytest.mark.parametrize("kind", ["polars_df", "lazy", "arrow", "reader", "pandas", "duckdb_rel", "sql"])
def test_every_output_type(tmp_path: Path, kind: str) -> None:
    def make():  # type: ignore[no-untyped-def]
        df = pl.DataFrame({"k": [1, 2, 3], "v": ["x", "y", "z"]})
        return {
            "polars_df": df,
            "lazy": df.lazy(),
            "arrow": df.to_arrow(),
            "reader": pa.RecordBatchReader.from_batches(df.to_arrow().schema, df.to_arrow().to_batches()),
            "pandas": df.to_pandas(),
            "duckdb_rel": duckdb.from_arrow(df.to_arrow()),
        }[kind]

    if kind == "sql":
        src = lh.asset(lambda: pl.DataFrame({"k": [1, 2, 3], "v": ["x", "y", "z"]}), name="src")
        out = lh.asset(engine="duckdb", name="out")(lambda src: "select * from src order by k")
        assets = [src, out]
    else:
        assets = [lh.asset(make, name="out")]
    lake = lh.Lakehouse(tmp_path / "lake", assets=assets)
    lake.materialize()
    got = lake.read("out").sort("k")
    assert got["k"].to_list() == [1, 2, 3] and got["v"].to_list() == ["x", "y", "z"]


@pytest.mark.parametrize("annotation", ["pl.LazyFrame", "pl.DataFrame", "pa.Table", "pd.DataFrame", ""])
def test_inputs_arrive_in_the_annotated_type(tmp_path: Path, annotation: str) -> None:
    ann = f": {annotation}" if annotation else ""
    mod = build_module(tmp_path, f"""
import polars as pl, pyarrow as pa, pandas as pd
import lakehouse as lh
SEEN = []

@lh.asset
def src():
    return pl.DataFrame({{"k": [1, 2]}})

@lh.asset
def use(src{ann}):
    SEEN.append(type(src).__module__.split(".")[0] + "." + type(src).__name__)
    return pl.DataFrame({{"n": [len(pl.DataFrame(src) if not isinstance(src, pl.LazyFrame) else src.collect())]}})
""", f"ann_{abs(hash(annotation))}")
    lake = lh.Lakehouse(tmp_path / "lake", assets=mod)
    lake.materialize()
    expected = {"pl.LazyFrame": "polars.LazyFrame", "": "polars.LazyFrame", "pl.DataFrame": "polars.DataFrame",
                "pa.Table": "pyarrow.Table", "pd.DataFrame": "pandas.DataFrame"}[annotation]
    assert mod.SEEN == [expected]
    assert lake.read("use")["n"].to_list() == [2]


def test_duckdb_assets_receive_relations_and_ctx_duckdb(tmp_path: Path) -> None:
    seen = {}

    @lh.asset(name="nums")
    def nums():  # type: ignore[no-untyped-def]
        return pl.DataFrame({"x": [1, 2, 3]})

    @lh.asset(engine="duckdb", name="total")
    def total(ctx: lh.Context, nums):  # type: ignore[no-untyped-def]
        seen["type"] = type(nums).__name__
        seen["con"] = ctx.duckdb is not None
        return ctx.duckdb.sql("select sum(x) as s from nums")

    lake = lh.Lakehouse(tmp_path / "lake", assets=[nums, total])
    lake.materialize()
    assert seen == {"type": "DuckDBPyRelation", "con": True}
    assert lake.read("total")["s"].to_list() == [6]


def test_wrong_return_type_is_an_output_error(tmp_path: Path) -> None:
    bad = lh.asset(lambda: {"a": 1}, name="bad_dict")
    lake = lh.Lakehouse(tmp_path / "lake", assets=[bad])
    res = lake.materialize(raise_on_error=False)
    err = res.assets["error"][0]
    assert res.assets["asset"][0] == "bad_dict" and "builtins.dict" in err and "hint:" in err
    with pytest.raises(MaterializeError, match=r"bad_dict: .*builtins\.dict"):
        lake.materialize()
    sql_in_polars = lh.asset(lambda: "select 1", name="sql_polars")
    lake = lh.Lakehouse(tmp_path / "lake2", assets=[sql_in_polars])
    res = lake.materialize(raise_on_error=False)
    assert "engine='duckdb'" in res.assets["error"][0]
    assert issubclass(OutputError, TypeError)


def test_write_append_and_time_travel(tmp_path: Path) -> None:
    counter = {"n": 0}

    @lh.asset(name="events", write="append", code_version="1")
    def events():  # type: ignore[no-untyped-def]
        counter["n"] += 1
        return pl.DataFrame({"run": [counter["n"]]})

    lake = lh.Lakehouse(tmp_path / "lake", assets=[events])
    lake.materialize()
    lake.materialize(force=True)
    assert sorted(lake.read("events")["run"].to_list()) == [1, 2]
    assert lake.read("events", version=0)["run"].to_list() == [1]
    info = lake.table("events")
    assert info.format == "delta" and info.version == "1" and info.uri.endswith("/events")


def test_commit_carries_provenance(tmp_path: Path) -> None:
    mod = build_module(tmp_path, BASE)
    lake = lh.Lakehouse(tmp_path / "lake", assets=mod)
    res = lake.materialize()
    hist = DeltaTable(str(tmp_path / "lake" / "revenue")).history()[0]
    assert hist["lakehouse.run_id"] == res.run_id
    assert hist["lakehouse.asset"] == "revenue"
    assert '"orders"' in hist["lakehouse.inputs"]
    assert hist["lakehouse.code_version"] == lake.status().filter(pl.col("asset") == "revenue")["code_version"][0]


def test_registry_default_and_redefinition(tmp_path: Path) -> None:
    @lh.asset(name="cell_a")
    def cell_a():  # type: ignore[no-untyped-def]
        return pl.DataFrame({"v": [1]})

    lake = lh.Lakehouse(tmp_path / "lake")  # no assets=: the registry
    lake.materialize("cell_a")
    assert lake.plan("cell_a").height == 0

    @lh.asset(name="cell_a")
    def cell_a_again():  # type: ignore[no-untyped-def]
        return pl.DataFrame({"v": [2]})

    assert lake.plan("cell_a")["reason"].to_list() == ["code_changed"]
    lake.materialize("cell_a")
    assert lake.read("cell_a")["v"].to_list() == [2]


def test_lineage_views(tmp_path: Path) -> None:
    mod = build_module(tmp_path, BASE)
    lake = lh.Lakehouse(tmp_path / "lake", assets=mod)
    lin = lake.lineage("revenue")
    assert lin.upstream == ["orders"] and lin.downstream == ["top_customers"]
    assert lin.parents == ["orders"] and lin.children == ["top_customers"]
    assert lin.edges.rows() == [("orders", "revenue"), ("revenue", "top_customers")]
    assert "revenue" in lin._repr_html_()


def test_catalog_url_and_repr(tmp_path: Path) -> None:
    lake = lh.Lakehouse(tmp_path / "lake", assets=[], catalog=f"sqlite:///{tmp_path}/other.db")
    assert lake.plan().height == 0
    assert (tmp_path / "other.db").exists()
    assert "other.db" in repr(lake)


def test_unsigned_outputs_are_widened_and_stay_stable(tmp_path: Path) -> None:
    @lh.asset(name="counted", code_version="1")
    def counted() -> pl.LazyFrame:
        return pl.LazyFrame({"a": [1, 2, 3]}).select(n=pl.len(), small=pl.lit(3, dtype=pl.UInt8))

    lake = lh.Lakehouse(tmp_path / "lake", assets=[counted])
    lake.materialize()
    assert lake.materialize(force=True).ok  # same schema on the second write
    assert lake.read("counted").schema == pl.Schema({"n": pl.Int64, "small": pl.Int16})


def test_duckdb_utc_timestamps_rewrite_under_the_strict_schema(tmp_path: Path) -> None:
    @lh.asset(name="stamped", engine="duckdb", code_version="1")
    def stamped(ctx: lh.Context):  # type: ignore[no-untyped-def]
        return ctx.duckdb.sql("select timestamptz '2024-01-01 00:00:00+00' as at, 1 as n")

    lake = lh.Lakehouse(tmp_path / "lake", assets=[stamped])
    lake.materialize()
    assert lake.materialize(force=True).ok  # Etc/UTC from DuckDB equals the stored UTC
    assert lake.read("stamped")["n"].to_list() == [1]


@pytest.mark.parametrize("where", ["local", pytest.param("s3", marks=pytest.mark.s3)])
def test_delta_writes_report_the_bytes_of_their_own_files(
    tmp_path: Path, where: str, request: pytest.FixtureRequest
) -> None:
    """The bytes a Delta write reports are exactly the sizes of the files its commit added,
    for a new table, an overwrite and an append (read from the table's own commit)."""
    import pyarrow as pa

    from lakehouse.assets import TableRef, WriteMode
    from lakehouse.storage.delta import DeltaFormat
    from lakehouse.storage.files import list_files
    from lakehouse.storage.uri import delta_options

    if where == "s3":
        bucket = request.getfixturevalue("s3_bucket")
        uri = f"{bucket.uri}/bytes-{uuid.uuid4().hex[:8]}"
        opts = delta_options(uri, bucket.storage_options)
    else:
        uri, opts = str(tmp_path / "t"), {}
    fmt = DeltaFormat()
    seen: set[str] = set()
    for i, kind in enumerate(["overwrite", "overwrite", "append"]):
        ref = TableRef("t", "delta", uri, version=None if i == 0 else str(i - 1),
                       storage_options=opts)
        data = pa.table({"k": list(range(100 * (i + 1))), "v": [float(i)] * (100 * (i + 1))})
        res = fmt.write(ref, data, mode=WriteMode(kind), predicate=None, partition_by=[],
                        schema_mode="strict", provenance={"step_id": f"s{i}"})
        assert res.seq == i
        files = {f.uri: f.size for f in list_files(uri, opts) if f.uri.endswith(".parquet")}
        new = {n: size for n, size in files.items() if n not in seen}
        seen |= set(files)
        assert len(new) >= 1 and res.bytes == sum(new.values())
