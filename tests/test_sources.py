"""Sources: declarations, observation, source_changed staleness, reading sources downstream,
since_last_run incremental reads, and freshness (max_age) with an injected clock.

Everything runs on real files, real Delta tables written by plain ``deltalake`` and real
Iceberg tables written by plain ``pyiceberg``, with the SQLite catalog. The S3 and
PostgreSQL variants are in test_sources_remote.py, crash injection in test_sources_crash.py.
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest

import lakehouse as lh
from lakehouse.errors import DefinitionError, LakehouseError, StorageError


def write(path: Path, **cols: list[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(cols).write_parquet(path)
    return path


def reasons(lake: lh.Lakehouse) -> dict[str, str]:
    return {r["asset"]: r["reason"] for r in lake.plan().iter_rows(named=True)}


def causes(lake: lh.Lakehouse) -> dict[str, str]:
    return {r["asset"]: r["cause"] for r in lake.plan().iter_rows(named=True)}


def ran(result: Any) -> set[str]:
    return {r["asset"] for r in result.rows if r["status"] == "materialized"}


# ------------------------------------------------------------------------- declarations


def test_declarations_are_sources_with_a_key(tmp_path: Path) -> None:
    f = lh.files(str(tmp_path / "landing" / "orders" / "*.parquet"))
    assert f.kind == "source" and f.key == "orders" and f.fn is None
    d = lh.delta_table(str(tmp_path / "partner" / "events"), namespace="partner")
    assert d.key == "partner/events"
    s = lh.sql_table("sqlite:///x.db", "main.customers", cursor="updated_at")
    assert s.key == "customers"
    i = lh.iceberg_table("sales.refunds", catalog={"type": "sql"}, max_age="2h")
    assert i.key == "refunds" and i.max_age == 7200.0

    @lh.source(observe=lambda: "v1", max_age="30m")
    def api_rates(ctx: lh.Context) -> pl.DataFrame:
        return pl.DataFrame({"r": [1.0]})

    spec = api_rates.__lakehouse_asset__
    assert spec.kind == "source" and spec.fn is api_rates and spec.max_age == 1800.0
    assert spec.context_param == "ctx"
    for key in (f.key, d.key, s.key, i.key, spec.key):
        assert lh.assets.REGISTRY[key].kind == "source"
    assert api_rates(None).height == 1  # the function stays callable


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda p: lh.files(p + "/{day}/*.parquet", name="x"), "no partitions="),
        (
            lambda p: lh.files(p + "/*.parquet", name="x", partitions=lh.daily(start="2024-01-01")),
            "placeholders",
        ),
        (lambda p: lh.files(p + "/*.xlsx", name="x", format="xlsx"), "format='xlsx'"),
        (
            lambda p: lh.files(
                p + "/{a}/{b}/*.parquet", name="x", partitions=lh.daily(start="2024-01-01")
            ),
            "2 placeholders",
        ),
        (lambda p: lh.sql_table("not a url", "t"), "SQLAlchemy URL"),
        (lambda p: lh.sql_table("sqlite://", "a.b.c"), "schema.table"),
        (lambda p: lh.iceberg_table("no_namespace"), "namespace.table"),
        (lambda p: lh.files("/*.parquet"), "source name"),
        (lambda p: lh.files(p + "/*.parquet", name="x", max_age="soon"), "not a duration"),
    ],
)
def test_bad_declarations_raise_definition_errors(tmp_path: Path, call: Any, needle: str) -> None:
    with pytest.raises(DefinitionError) as info:
        call(str(tmp_path))
    assert needle in str(info.value)
    assert "hint:" in str(info.value)


def test_source_decorator_validation() -> None:
    with pytest.raises(DefinitionError, match="at most one"):

        @lh.source(observe=lambda: "v")
        def two(a: Any, b: Any) -> None: ...

    with pytest.raises(DefinitionError, match="not a function"):

        @lh.source(observe="v1")
        def reader() -> None: ...

    with pytest.raises(DefinitionError, match="unknown argument"):

        @lh.source(write="append")
        def bad() -> str:
            return "v"


# ----------------------------------------------------------------------- files (local)


def test_local_files_added_replaced_deleted(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    write(landing / "a.parquet", id=[1, 2], amount=[10, 20])
    orders = lh.files(str(landing / "*.parquet"), name="orders")

    @lh.asset
    def revenue(orders: pl.LazyFrame) -> pl.DataFrame:
        return orders.select(
            pl.col("amount").sum().alias("total"), pl.len().cast(pl.Int64).alias("n")
        ).collect()

    lake = lh.Lakehouse(tmp_path / "wh", assets=[orders, revenue])
    lake.materialize()
    assert lake.read("revenue").row(0) == (30, 2)
    assert lake.plan().height == 0  # observed again by plan? no: nothing changed since the run
    assert ran(lake.materialize()) == set()

    def step(expected: tuple[int, int], change: Any) -> None:
        change()
        obs = lake.observe()
        assert obs.filter(pl.col("source") == "orders")["changed"].to_list() == [True]
        assert reasons(lake) == {"revenue": "source_changed"}
        old, new = causes(lake)["revenue"].split(" → ")
        assert old != new and "file" in new
        assert ran(lake.materialize()) == {"revenue"}
        assert lake.read("revenue").row(0) == expected
        assert lake.plan().height == 0

    step((60, 3), lambda: write(landing / "b.parquet", id=[3], amount=[30]))  # added
    step(
        (130, 4), lambda: write(landing / "a.parquet", id=[1, 2, 9], amount=[10, 20, 70])
    )  # replaced
    step((30, 1), lambda: (landing / "a.parquet").unlink())  # deleted

    # observing without a change records nothing new and keeps the plan empty
    assert lake.observe()["changed"].to_list() == [False]
    assert lake.plan().height == 0
    status = lake.status().filter(pl.col("asset") == "orders").row(0, named=True)
    assert status["version"].startswith("1 file ") and status["stale"] is False
    assert status["materialized_at"] is not None and status["age"] is not None


def test_materialize_observes_the_sources_it_reads(tmp_path: Path) -> None:
    landing = tmp_path / "in"
    write(landing / "a.csv.parquet", x=[1])
    src = lh.files(str(landing / "*.parquet"), name="numbers")

    @lh.asset
    def doubled(numbers: pl.DataFrame) -> pl.DataFrame:
        return numbers.with_columns(pl.col("x") * 2)

    lake = lh.Lakehouse(tmp_path / "wh", assets=[src, doubled])
    lake.materialize()
    write(landing / "b.parquet", x=[5])
    assert lake.plan().height == 0  # plan() does not observe: nothing known yet
    result = lake.materialize("doubled")  # observes 'numbers' (a direct upstream) first
    assert ran(result) == {"doubled"}
    assert sorted(lake.read("doubled")["x"].to_list()) == [2, 10]
    row = next(r for r in result.rows if r["asset"] == "doubled")
    assert row["reason"] == "source_changed"


def test_csv_and_json_files(tmp_path: Path) -> None:
    (tmp_path / "csv").mkdir()
    (tmp_path / "csv" / "a.csv").write_text("id,name\n1,a\n2,b\n")
    (tmp_path / "json").mkdir()
    (tmp_path / "json" / "a.jsonl").write_text('{"id": 1, "tag": "x"}\n{"id": 3, "tag": "y"}\n')
    people = lh.files(str(tmp_path / "csv" / "*.csv"), name="people")
    tags = lh.files(str(tmp_path / "json" / "*.jsonl"), name="tags")
    assert people.observe.format == "csv" and tags.observe.format == "json"

    @lh.asset(engine="duckdb")
    def joined(people: Any, tags: Any) -> str:
        return "select p.id, p.name, t.tag from people p left join tags t using (id) order by p.id"

    lake = lh.Lakehouse(tmp_path / "wh", assets=[people, tags, joined])
    lake.materialize()
    assert lake.read("joined").rows() == [(1, "a", "x"), (2, "b", None)]


def test_partitioned_files_only_changed_partitions_rerun(tmp_path: Path) -> None:
    land = tmp_path / "landing"
    days = lh.daily(start="2024-01-01", end="2024-01-04")
    for i, day in enumerate(["2024-01-01", "2024-01-02", "2024-01-03"]):
        write(land / day / "part-0.parquet", amount=[i + 1])
    write(land / "not-a-day" / "junk.parquet", amount=[999])  # outside the partitions: ignored
    events = lh.files(str(land / "{day}" / "*.parquet"), name="events", partitions=days)
    assert events.partition_column == ("day",)
    calls: list[Any] = []

    @lh.asset(partitions=days, partition_column="day", code_version="1")  # it appends to `calls`
    def daily_total(ctx: lh.Context, events: pl.LazyFrame) -> pl.DataFrame:
        calls.append(ctx.partition.keys)
        return events.group_by("day").agg(pl.col("amount").sum()).collect()

    lake = lh.Lakehouse(tmp_path / "wh", assets=[events, daily_total])
    obs = lake.observe()
    assert obs.height == 3 and set(obs["partitions"]) == {"2024-01-01", "2024-01-02", "2024-01-03"}
    lake.materialize()
    df = lake.read("daily_total").sort("day")
    assert df["amount"].to_list() == [1, 2, 3]
    assert df.schema["day"] == pl.Date  # the partition column comes from the path

    calls.clear()
    write(land / "2024-01-02" / "part-1.parquet", amount=[40])
    lake.observe()
    plan = lake.plan()
    assert plan.rows() == [("daily_total", "2024-01-02", 1, "source_changed", plan["cause"][0])]
    assert plan["cause"][0].startswith("2024-01-02: 1 file ") and "→ 2 files " in plan["cause"][0]
    lake.materialize()
    assert calls == [("2024-01-02",)]
    assert lake.read("daily_total").sort("day")["amount"].to_list() == [1, 42, 3]

    # status of the source: the observed version of each partition, unobserved ranges too
    st = lake.status("events")
    assert st["partitions"].to_list() == ["2024-01-01", "2024-01-02", "2024-01-03"]
    assert st["version"][1].startswith("2 files ") and st["stale"].to_list() == [False] * 3
    # reading a source directly: as of its newest observation, with the partition column
    assert lake.read("events").sort("day", "amount")["amount"].to_list() == [1, 2, 40, 3]

    # a day whose files all disappear changes too (its dependant partition becomes empty)
    for f in (land / "2024-01-03").iterdir():
        f.unlink()
    lake.observe()
    assert lake.plan()["partitions"].to_list() == ["2024-01-03"]
    lake.materialize()
    assert lake.read("daily_total").sort("day")["amount"].to_list() == [1, 42]


def test_incremental_files_append_each_file_once(tmp_path: Path) -> None:
    land = tmp_path / "landing"
    write(land / "f1.parquet", id=[1, 2])
    src = lh.files(str(land / "*.parquet"), name="orders")

    @lh.asset(write="append", ins={"orders": lh.upstream("orders", since_last_run=True)})
    def orders_log(orders: pl.LazyFrame) -> pl.LazyFrame:
        return orders

    @lh.asset
    def orders_all(orders: pl.LazyFrame) -> pl.LazyFrame:
        return orders

    lake = lh.Lakehouse(tmp_path / "wh", assets=[src, orders_log, orders_all])
    lake.materialize()
    write(land / "f2.parquet", id=[3])
    write(land / "f3.parquet", id=[4, 5])
    lake.materialize()
    assert sorted(lake.read("orders_log")["id"]) == [1, 2, 3, 4, 5]
    # a replaced file is delivered again (as a new version of that file), a deleted one is not
    write(land / "f1.parquet", id=[1, 2, 6])
    (land / "f2.parquet").unlink()
    lake.materialize()
    assert sorted(lake.read("orders_log")["id"]) == [1, 1, 2, 2, 3, 4, 5, 6]
    assert sorted(lake.read("orders_all")["id"]) == [1, 2, 4, 5, 6]
    # nothing new: the incremental asset is fresh, and forcing it appends nothing
    assert lake.plan().height == 0
    lake.materialize("orders_log", force=True)
    assert lake.read("orders_log").height == 8
    # the consumed position is in the materialization record and the commit provenance
    inputs = lake.catalog.materializations("orders_log")[0]["inputs"]
    assert [i.asset for i in inputs] == ["orders"]
    st = lake.status().filter(pl.col("asset") == "orders_log").row(0, named=True)
    assert st["stale"] is False


# --------------------------------------------------------------------- custom sources


def test_custom_source_with_reader_and_partitioned_observe(tmp_path: Path) -> None:
    versions = {"2024-01-01": "a", "2024-01-02": "a"}
    reads: list[tuple[Any, Any]] = []

    @lh.source(
        observe=lambda: dict(versions),
        partitions=lh.daily(start="2024-01-01", end="2024-01-03"),
        partition_column="day",
    )
    def feed(ctx: lh.Context) -> pl.DataFrame:
        reads.append((ctx.partition.keys, ctx.metadata["version"]))
        import datetime as dt

        days = [dt.date.fromisoformat(k) for k in ctx.partition.keys]
        return pl.DataFrame({"day": days, "v": [versions[k] for k in ctx.partition.keys]})

    @lh.asset(partitions=lh.daily(start="2024-01-01", end="2024-01-03"), partition_column="day")
    def copy(feed: pl.DataFrame) -> pl.DataFrame:
        return feed

    lake = lh.Lakehouse(tmp_path / "wh", assets=[feed, copy])
    lake.materialize()
    assert reads == [(("2024-01-01", "2024-01-02"), "obs 2")]  # one step for the range
    versions["2024-01-02"] = "b"
    reads.clear()
    lake.materialize()
    assert [r[0] for r in reads] == [("2024-01-02",)]
    assert lake.read("copy").sort("day")["v"].to_list() == ["a", "b"]


def test_observe_only_source_in_deps(tmp_path: Path) -> None:
    etag = tmp_path / "etag.txt"
    etag.write_text("e1")

    @lh.source
    def exchange_rates() -> str:
        return etag.read_text()

    @lh.asset(deps=["exchange_rates"], code_version="1")
    def converted() -> pl.DataFrame:
        return pl.DataFrame({"rate": [etag.read_text()]})

    @lh.asset
    def wrong(exchange_rates: pl.DataFrame) -> pl.DataFrame:
        return exchange_rates

    lake = lh.Lakehouse(tmp_path / "wh", assets=[exchange_rates, converted])
    lake.materialize()
    assert lake.plan().height == 0
    etag.write_text("e2")
    lake.observe()
    assert lake.plan().rows() == [("converted", None, 1, "source_changed", "e1 → e2")]
    lake.materialize()
    assert lake.read("converted")["rate"].to_list() == ["e2"]
    assert lake.provenance("converted")["input_version"].to_list() == ["e2"]

    bad = lh.Lakehouse(tmp_path / "wh2", assets=[exchange_rates, wrong])
    result = bad.materialize(raise_on_error=False)
    assert "observe-only" in result.failures["wrong"] and "deps=" in result.failures["wrong"]


def test_observe_errors_name_the_source(tmp_path: Path) -> None:
    @lh.source
    def broken() -> Any:
        return 42.5

    @lh.source
    def flaky() -> str:
        raise RuntimeError("endpoint down")

    missing = lh.delta_table(str(tmp_path / "nope"), name="missing")
    lake = lh.Lakehouse(tmp_path / "wh", assets=[broken, flaky, missing])
    with pytest.raises(DefinitionError) as info:
        lake.observe("broken")
    assert info.value.asset == "broken" and "version string" in str(info.value)
    with pytest.raises(StorageError) as info2:
        lake.observe("flaky")
    assert info2.value.asset == "flaky" and "endpoint down" in str(info2.value)
    frame = lake.observe(raise_on_error=False)
    errors = dict(zip(frame["source"], frame["error"], strict=False))
    assert "no Delta table" in errors["missing"] and "endpoint down" in errors["flaky"]
    assert isinstance(info.value, LakehouseError)


# ------------------------------------------------------------------ Delta and Iceberg


def test_delta_source_written_by_plain_deltalake(tmp_path: Path) -> None:
    from deltalake import write_deltalake

    uri = str(tmp_path / "partner" / "events")
    write_deltalake(uri, pa.table({"id": [1, 2], "kind": ["a", "b"]}))
    events = lh.delta_table(uri)

    @lh.asset
    def counts(events: pl.LazyFrame) -> pl.DataFrame:
        return events.group_by("kind").agg(pl.len().cast(pl.Int64)).sort("kind").collect()

    @lh.asset(write="append", ins={"events": lh.upstream("events", since_last_run=True)})
    def events_copy(events: pl.LazyFrame) -> pl.LazyFrame:
        return events

    lake = lh.Lakehouse(tmp_path / "wh", assets=[events, counts, events_copy])
    lake.materialize()
    assert lake.read("counts").sort("kind").rows() == [("a", 1), ("b", 1)]
    write_deltalake(uri, pa.table({"id": [3, 4], "kind": ["a", "a"]}), mode="append")
    write_deltalake(uri, pa.table({"id": [5], "kind": ["c"]}), mode="append")
    lake.observe()
    assert causes(lake) == {"counts": "0 → 2", "events_copy": "0 → 2"}
    lake.materialize()
    assert lake.read("counts").sort("kind").rows() == [("a", 3), ("b", 1), ("c", 1)]
    assert sorted(lake.read("events_copy")["id"]) == [1, 2, 3, 4, 5]
    assert lake.plan().height == 0
    assert lake.status().filter(pl.col("asset") == "events")["version"].to_list() == ["2"]


def test_delta_source_with_change_data_feed_gives_updates(tmp_path: Path) -> None:
    from deltalake import DeltaTable, write_deltalake

    uri = str(tmp_path / "customers")
    write_deltalake(
        uri,
        pa.table({"id": [1, 2, 3], "name": ["a", "b", "c"]}),
        configuration={"delta.enableChangeDataFeed": "true"},
    )
    customers = lh.delta_table(uri)

    @lh.asset(
        write=lh.merge(on="id"),
        ins={"customers": lh.upstream("customers", since_last_run=True)},
        code_version="1",
    )
    def customers_copy(ctx: lh.Context, customers: pl.DataFrame) -> pl.DataFrame:
        ctx.metadata["n"] = customers.height
        seen.append(customers.height)
        return customers

    seen: list[int] = []
    lake = lh.Lakehouse(tmp_path / "wh", assets=[customers, customers_copy])
    lake.materialize()
    DeltaTable(uri).update(predicate="id = 2", updates={"name": "'B'"})
    write_deltalake(uri, pa.table({"id": [4], "name": ["d"]}), mode="append")
    lake.materialize()
    assert seen == [3, 2]  # the update post-image and the insert, nothing else
    assert lake.read("customers_copy").sort("id").rows() == [(1, "a"), (2, "B"), (3, "c"), (4, "d")]


def _iceberg_catalog(tmp_path: Path) -> tuple[Any, dict[str, str]]:
    from pyiceberg.catalog.sql import SqlCatalog

    # SQL catalogs scope tables by catalog name: give the writer's name
    props = {
        "name": "partner",
        "type": "sql",
        "uri": f"sqlite:///{tmp_path}/partner_catalog.db",
        "warehouse": f"file://{tmp_path}/partner_wh",
    }
    (tmp_path / "partner_wh").mkdir(exist_ok=True)
    cat = SqlCatalog("partner", **{k: v for k, v in props.items() if k not in ("type", "name")})
    return cat, props


def test_iceberg_source_written_by_plain_pyiceberg(tmp_path: Path) -> None:
    cat, props = _iceberg_catalog(tmp_path)
    cat.create_namespace("sales")
    schema = pa.schema([("id", pa.int64()), ("amount", pa.float64())])
    tbl = cat.create_table("sales.refunds", schema=schema)
    tbl.append(pa.table({"id": [1, 2], "amount": [1.5, 2.5]}, schema=schema))
    refunds = lh.iceberg_table("sales.refunds", catalog=props)

    @lh.asset
    def refund_total(refunds: pl.LazyFrame) -> pl.DataFrame:
        return refunds.select(pl.col("amount").sum(), pl.len().cast(pl.Int64)).collect()

    @lh.asset(write="append", ins={"refunds": lh.upstream("refunds", since_last_run=True)})
    def refunds_log(refunds: pl.DataFrame) -> pl.DataFrame:
        return refunds

    lake = lh.Lakehouse(tmp_path / "wh", assets=[refunds, refund_total, refunds_log])
    lake.materialize()
    first = str(tbl.current_snapshot().snapshot_id)
    assert lake.read("refund_total").row(0) == (4.0, 2)
    tbl = cat.load_table("sales.refunds")
    tbl.append(pa.table({"id": [3], "amount": [10.0]}, schema=schema))
    tbl.append(pa.table({"id": [4, 5], "amount": [1.0, 1.0]}, schema=schema))
    second = str(tbl.current_snapshot().snapshot_id)
    lake.observe()
    assert causes(lake)["refund_total"] == f"{first} → {second}"
    lake.materialize()
    assert lake.read("refund_total").row(0) == (16.0, 5)
    assert sorted(lake.read("refunds_log")["id"]) == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("fmt", ["delta", "iceberg"])
def test_since_last_run_on_a_lakehouse_asset(tmp_path: Path, fmt: str) -> None:
    batches = [[1, 2], [3], [4, 5, 6]]
    n = {"i": 0}

    @lh.asset(write="append", format=fmt, code_version="1")
    def raw() -> pl.DataFrame:
        return pl.DataFrame({"id": batches[n["i"]]})

    seen: list[list[int]] = []

    @lh.asset(
        write="append",
        format=fmt,
        ins={"raw": lh.upstream("raw", since_last_run=True)},
        code_version="1",
    )
    def clean(raw: pl.DataFrame) -> pl.DataFrame:
        seen.append(sorted(raw["id"]))
        return raw.with_columns(ok=pl.lit(True))

    lake = lh.Lakehouse(tmp_path / "wh", assets=[raw, clean])
    lake.materialize()
    for i in (1, 2):
        n["i"] = i
        lake.materialize("raw", force=True)
        lake.materialize("clean")
    assert seen == batches
    assert sorted(lake.read("clean")["id"]) == [1, 2, 3, 4, 5, 6]
    assert lake.plan().height == 0


def _hours(*hours: int) -> list[Any]:
    import datetime as dt

    return [dt.datetime(2024, 1, 1, h, tzinfo=dt.timezone.utc) for h in hours]


@pytest.mark.parametrize("upstream", ["hourly asset", "delta source"])
def test_since_last_run_on_a_timestamp_partitioned_delta_table(
    tmp_path: Path, upstream: str
) -> None:
    """Hive folders of a timestamp partition are percent-escaped on storage and escaped once
    more in the Delta log: every new file must still be found."""
    from deltalake import write_deltalake

    seen: list[list[tuple[Any, int]]] = []

    @lh.asset(write="append", ins={"ev": lh.upstream("ev", since_last_run=True)})
    def copy(ev: pl.DataFrame) -> pl.DataFrame:
        seen.append(sorted(ev.select("ts", "x").rows()))
        return ev

    uri = str(tmp_path / "partner" / "ev")

    def rows(h: int) -> pl.DataFrame:
        return pl.DataFrame({"ts": _hours(h, h), "x": [10 * h, 10 * h + 1]})

    if upstream == "hourly asset":

        @lh.asset(
            partitions=lh.hourly(start="2024-01-01-00:00", end="2024-01-01-04:00"),
            partition_column="ts",
            code_version="1",
            format="delta",
        )
        def ev(ctx: lh.Context) -> pl.DataFrame:
            return rows(ctx.partition.start.hour)

        lake = lh.Lakehouse(tmp_path / "wh", assets=[ev, copy])

        def add(h: int) -> None:
            lake.materialize("ev", partitions=f"2024-01-01-{h:02d}:00")

    else:

        def add(h: int) -> None:
            mode = "append" if (tmp_path / "partner" / "ev").exists() else "error"
            write_deltalake(uri, rows(h).to_arrow(), partition_by=["ts"], mode=mode)

        add(0)
        lake = lh.Lakehouse(tmp_path / "wh", assets=[lh.delta_table(uri, name="ev"), copy])
    if upstream == "hourly asset":
        add(0)
    lake.materialize("copy")
    add(1)
    add(2)
    lake.materialize("copy")
    add(3)
    lake.materialize("copy")
    expected = [sorted(zip(_hours(h, h), [10 * h, 10 * h + 1], strict=True)) for h in range(4)]
    assert seen == [expected[0], expected[1] + expected[2], expected[3]]
    assert sorted(lake.read("copy").select("ts", "x").rows()) == sorted(
        r for rows in expected for r in rows
    )
    lake.close()


def test_since_last_run_skips_compaction_and_reads_new_rows_it_rewrote(tmp_path: Path) -> None:
    """New rows that a compaction moved into a file with older rows before the downstream
    read them are delivered once, from the file they were added in; once that file is
    vacuumed the read fails with a clear error instead of losing or repeating rows."""
    n = [0]

    @lh.asset(write="append", code_version="1", format="delta")
    def raw() -> pl.DataFrame:
        n[0] += 1
        return pl.DataFrame({"id": [2 * n[0] - 1, 2 * n[0]]})

    seen: list[list[int]] = []

    @lh.asset(write="append", ins={"raw": lh.upstream("raw", since_last_run=True)})
    def copy(raw: pl.DataFrame) -> pl.DataFrame:
        seen.append(sorted(raw["id"]))
        return raw

    lake = lh.Lakehouse(tmp_path / "wh", assets=[raw, copy])
    lake.materialize()  # ids 1, 2
    lake.materialize("raw", force=True)  # 3, 4
    lake.materialize("raw", force=True)  # 5, 6
    assert lake.optimize("raw")["action"].to_list() == ["compacted"]  # one file: 1..6
    lake.materialize("copy")
    lake.materialize("raw", force=True)  # 7, 8
    assert lake.optimize("raw")["action"].to_list() == ["compacted"]
    lake.materialize("copy")
    assert seen == [[1, 2], [3, 4, 5, 6], [7, 8]]
    assert sorted(lake.read("copy")["id"]) == list(range(1, 9))

    lake.materialize("raw", force=True)  # 9, 10
    lake.optimize("raw")
    lake.vacuum(retain="0s")  # the file holding only 9, 10 is needed by no kept version
    result = lake.materialize("copy", raise_on_error=False)
    assert "has been vacuumed" in result.failures["copy"]
    assert "lake.wipe(downstream)" in result.failures["copy"]
    assert sorted(lake.read("copy")["id"]) == list(range(1, 9))  # nothing repeated
    lake.close()


def test_since_last_run_after_an_erasure(tmp_path: Path) -> None:
    """An erasure rewrites the upstream's files without repeating their rows downstream;
    when it purged versions the downstream had not read yet, the read fails with a clear
    error, and a wipe of the downstream reloads it in full."""
    n = [0]

    @lh.asset(write="append", code_version="1", format="delta")
    def raw() -> pl.DataFrame:
        n[0] += 1
        return pl.DataFrame({"id": [2 * n[0] - 1, 2 * n[0]]})

    @lh.asset(write="append", erase_by=["id"], ins={"raw": lh.upstream("raw", since_last_run=True)})
    def copy(raw: pl.LazyFrame) -> pl.LazyFrame:
        return raw

    lake = lh.Lakehouse(tmp_path / "wh", assets=[raw, copy])
    lake.materialize()  # 1, 2
    lake.materialize("raw", force=True)  # 3, 4
    lake.materialize("copy")
    lake.erase("raw", where=pl.col("id") == 1, reason="test")
    lake.materialize("raw", force=True)  # 5, 6
    lake.materialize("copy")
    assert sorted(lake.read("copy")["id"]) == [2, 3, 4, 5, 6]

    lake.materialize("raw", force=True)  # 7, 8: not read before the erasure purges
    lake.erase("raw", where=pl.col("id") == 2, reason="test")
    result = lake.materialize("copy", raise_on_error=False)
    assert "no longer has the log of the versions after" in result.failures["copy"]
    assert "lake.wipe(downstream)" in result.failures["copy"]
    assert sorted(lake.read("copy")["id"]) == [3, 4, 5, 6]
    lake.wipe("copy")
    lake.materialize("copy")
    assert sorted(lake.read("copy")["id"]) == [3, 4, 5, 6, 7, 8]
    lake.close()


def test_since_last_run_through_a_delta_relayout(tmp_path: Path) -> None:
    """The relayout that removes Hive partitioning rewrites every row: the downstream gets
    the hours written since its last run (read from their partition files, timestamps
    intact), and later hours once each."""
    seen: list[list[tuple[Any, int]]] = []

    @lh.asset(
        partitions=lh.hourly(start="2024-01-01-00:00", end="2024-01-01-04:00"),
        partition_column="ts",
        code_version="1",
        format="delta",
    )
    def ev(ctx: lh.Context) -> pl.DataFrame:
        hours = range(ctx.partition.start.hour, ctx.partition.end.hour)  # one step: 1 or 2 h
        return pl.DataFrame({"ts": _hours(*hours), "x": list(hours)})

    @lh.asset(write="append", ins={"ev": lh.upstream("ev", since_last_run=True)})
    def copy(ev: pl.DataFrame) -> pl.DataFrame:
        seen.append(sorted(ev.select("ts", "x").rows()))
        return ev

    lake = lh.Lakehouse(tmp_path / "wh", assets=[ev, copy])
    lake.materialize(partitions="2024-01-01-00:00")
    lake.materialize("ev", partitions="2024-01-01-01:00..2024-01-01-02:00")
    row = lake.optimize("ev").row(0, named=True)
    assert "Hive partitioning by ts removed" in (row["detail"] or "")
    lake.materialize("copy")
    lake.materialize("ev", partitions="2024-01-01-03:00")
    lake.materialize("copy")
    assert seen == [
        [(_hours(0)[0], 0)],
        [(_hours(1)[0], 1), (_hours(2)[0], 2)],
        [(_hours(3)[0], 3)],
    ]
    assert sorted(lake.read("copy")["x"]) == [0, 1, 2, 3]
    lake.close()


# --------------------------------------------------------------------------- freshness


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def test_max_age_expires_with_an_injected_clock(tmp_path: Path) -> None:
    @lh.asset(max_age="1h")
    def prices() -> pl.DataFrame:
        return pl.DataFrame({"p": [1.0]})

    @lh.asset
    def report(prices: pl.DataFrame) -> pl.DataFrame:
        return prices

    @lh.asset(
        max_age="1h",
        partitions=lh.daily(start="2024-01-01", end="2024-01-04"),
        partition_column="day",
    )
    def daily(ctx: lh.Context) -> pl.DataFrame:
        return pl.DataFrame({"day": [ctx.partition.start.date()], "v": [1]})

    clock = Clock()
    lake = lh.Lakehouse(tmp_path / "wh", assets=[prices, report, daily])
    lake.clock = clock
    lake.materialize()
    done = time.time()
    clock.offset = 1800
    assert lake.plan().height == 0
    st = lake.status().filter(pl.col("asset") == "prices").row(0, named=True)
    assert 1790 <= st["age"].total_seconds() <= 1900
    assert abs(st["deadline"].timestamp() - (st["materialized_at"].timestamp() + 3600)) < 1e-3
    assert lake.status().filter(pl.col("asset") == "report")["deadline"].to_list() == [None]

    clock.offset = 7200
    plan = lake.plan()
    rows = {
        (r["asset"], r["partitions"]): (r["reason"], r["cause"]) for r in plan.iter_rows(named=True)
    }
    assert rows[("prices", None)][0] == "expired" and "max_age 1h" in rows[("prices", None)][1]
    assert rows[("report", None)] == ("upstream_stale", "prices")
    assert rows[("daily", "2024-01-03")][0] == "expired"  # only the latest partition
    assert ("daily", "2024-01-01") not in rows
    st = lake.status().filter(pl.col("asset") == "prices").row(0, named=True)
    assert st["stale"] is True and st["reason"] == "expired" and st["age"].total_seconds() >= 7190

    result = lake.materialize()
    assert ran(result) == {"prices", "report", "daily"}
    assert lake.catalog.materializations("prices")[0]["started_at"] >= done
    clock.offset = 0
    assert lake.plan().height == 0


def test_source_max_age_is_about_the_last_observation(tmp_path: Path) -> None:
    write(tmp_path / "in" / "a.parquet", x=[1])
    src = lh.files(str(tmp_path / "in" / "*.parquet"), name="feed", max_age="15m")
    clock = Clock()
    lake = lh.Lakehouse(tmp_path / "wh", assets=[src])
    lake.clock = clock
    row = lake.status().row(0, named=True)
    assert row["stale"] is True and row["reason"] == "expired" and row["cause"] == "never observed"
    lake.observe()
    assert lake.status()["stale"].to_list() == [False]
    clock.offset = 3600
    row = lake.status().row(0, named=True)
    assert row["reason"] == "expired" and "observed 1h ago" in row["cause"]
    lake.observe()  # unchanged, but observed: fresh again
    row = lake.status().row(0, named=True)
    assert row["stale"] is False and row["age"].total_seconds() < 60


def test_cli_materialize_exits_0_when_everything_is_fresh(tmp_path: Path) -> None:
    from lakehouse.cli import main

    write(tmp_path / "in" / "a.parquet", x=[1])
    project = tmp_path / "proj.py"
    project.write_text(
        "import polars as pl, lakehouse as lh\n"
        f"feed = lh.files({str(tmp_path / 'in' / '*.parquet')!r}, name='feed')\n"
        "@lh.asset\n"
        "def total(feed: pl.LazyFrame) -> pl.DataFrame:\n"
        "    return feed.select(pl.col('x').sum()).collect()\n"
    )
    args = ["--project", str(project), "--warehouse", str(tmp_path / "wh")]

    def run(*argv: str) -> tuple[int, str]:
        out, err = io.StringIO(), io.StringIO()
        code = main(list(argv), stdout=out, stderr=err)
        return code, out.getvalue() + err.getvalue()

    code, out = run("materialize", *args)
    assert code == 0 and "materialized" in out
    code, out = run("materialize", *args)
    assert code == 0 and "nothing stale" in out
    write(tmp_path / "in" / "b.parquet", x=[2])
    code, out = run("materialize", *args)
    assert code == 0 and "source_changed" in out
    code, out = run("status", "--json", *args)
    assert code == 0 and '"age"' in out


# ------------------------------------------------------------------ property: files


@pytest.mark.slow
def test_property_incremental_files_deliver_every_file_version_once(tmp_path_factory: Any) -> None:
    """Random adds, replacements, deletions and runs: the full-read asset always equals the
    files present, and the append-only incremental asset holds each file version seen at
    a run exactly once."""
    import itertools
    import os

    from hypothesis import HealthCheck, example, given, settings
    from hypothesis import strategies as st

    op = st.one_of(
        st.tuples(st.just("write"), st.integers(0, 3), st.integers(1, 3)),
        st.tuples(st.just("delete"), st.integers(0, 3), st.just(0)),
        st.tuples(st.just("run"), st.just(0), st.just(0)),
    )
    counter = itertools.count(1)

    @settings(
        max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(ops=st.lists(op, min_size=1, max_size=8))
    @example(
        ops=[
            ("write", 0, 2),
            ("run", 0, 0),
            ("delete", 0, 0),
            ("run", 0, 0),
            ("write", 1, 1),
            ("write", 1, 2),
            ("run", 0, 0),
            ("write", 1, 1),
        ]
    )
    def check(ops: list[tuple[str, int, int]]) -> None:
        root = tmp_path_factory.mktemp("prop")
        land = root / "landing"
        land.mkdir()
        src = lh.files(str(land / "*.parquet"), name="feed")

        @lh.asset(write="append", ins={"feed": lh.upstream("feed", since_last_run=True)})
        def feed_log(feed: pl.LazyFrame) -> pl.LazyFrame:
            return feed

        @lh.asset
        def feed_now(feed: pl.LazyFrame) -> pl.LazyFrame:
            return feed

        lake = lh.Lakehouse(root / "wh", assets=[src, feed_log, feed_now])
        present: dict[int, list[int]] = {}
        delivered: list[int] = []
        for kind, slot, n in [*ops, ("run", 0, 0)]:
            path = land / f"f{slot}.parquet"
            if kind == "write":
                ids = [next(counter) for _ in range(n)]
                pl.DataFrame({"id": ids}).write_parquet(path)
                tick = next(counter)
                os.utime(path, ns=(tick * 10**9, tick * 10**9))  # a new version has a new mtime
                present[slot] = ids
            elif kind == "delete" and slot in present:
                path.unlink()
                del present[slot]
            elif kind == "run":
                if not present:  # no file at all: no schema to read, a clear error, nothing written
                    result = lake.materialize(raise_on_error=False)
                    assert set(result.failures) <= {"feed_log", "feed_now"}
                    assert all("matched no files" in e for e in result.failures.values())
                    if delivered:
                        assert sorted(lake.read("feed_log")["id"].to_list()) == sorted(delivered)
                    continue
                seen = set(delivered)
                delivered.extend(i for ids in present.values() for i in ids if i not in seen)
                lake.materialize()
                now = sorted(i for ids in present.values() for i in ids)
                assert sorted(lake.read("feed_now")["id"].to_list()) == now
                assert sorted(lake.read("feed_log")["id"].to_list()) == sorted(delivered)
        lake.close()

    check()


# ------------------------------------------------------------------ property: Delta


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["append", "hourly"])
def test_property_delta_since_last_run_delivers_each_row_once(
    tmp_path_factory: Any, layout: str
) -> None:
    """Random writes, optimize() runs (compaction; for the hourly table first the relayout
    that removes its Hive partitions) and incremental runs: the downstream always holds
    every row of the upstream exactly once."""
    import datetime as dt

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    op = st.sampled_from(["write", "optimize", "run"])

    @settings(
        max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(ops=st.lists(op, min_size=1, max_size=8))
    def check(ops: list[str]) -> None:
        root = tmp_path_factory.mktemp("delta_prop")
        written = [0]

        if layout == "append":

            @lh.asset(write="append", code_version="1", format="delta")
            def up() -> pl.DataFrame:
                written[0] += 1
                return pl.DataFrame({"id": [written[0]]})

        else:

            @lh.asset(
                partitions=lh.hourly(start="2024-01-01-00:00", end="2024-01-02-00:00"),
                partition_column="ts",
                code_version="1",
                format="delta",
            )
            def up(ctx: lh.Context) -> pl.DataFrame:
                h = ctx.partition.start.hour
                ts = dt.datetime(2024, 1, 1, h, tzinfo=dt.timezone.utc)
                return pl.DataFrame({"ts": [ts], "id": [h + 1]})

        @lh.asset(write="append", ins={"up": lh.upstream("up", since_last_run=True)})
        def down(up: pl.LazyFrame) -> pl.LazyFrame:
            return up.select("id")

        lake = lh.Lakehouse(root / "wh", assets=[up, down])

        def write() -> None:
            if layout == "append":
                lake.materialize("up", force=True)
            else:
                lake.materialize("up", partitions=f"2024-01-01-{written[0]:02d}:00")
                written[0] += 1

        write()
        for kind in [*ops, "run"]:
            if kind == "write":
                write()
            elif kind == "optimize":
                lake.optimize("up")
            else:
                lake.materialize("down")
                assert sorted(lake.read("down")["id"]) == list(range(1, written[0] + 1))
        lake.close()

    check()


# ------------------------------------------------------------------------------- Dask


@pytest.mark.dask
def test_sources_read_on_dask_workers(tmp_path: Path) -> None:
    """Source reads (pinned listings, custom readers, incremental positions) travel to
    spawned Dask worker processes."""
    land = tmp_path / "landing"
    write(land / "a.parquet", id=[1, 2])
    feed = lh.files(str(land / "*.parquet"), name="feed")

    @lh.source(observe=lambda: "1")
    def constants(ctx: lh.Context) -> pl.DataFrame:
        return pl.DataFrame({"k": [ctx.metadata["version"]]})

    @lh.asset(write="append", ins={"feed": lh.upstream("feed", since_last_run=True)})
    def feed_log(feed: pl.LazyFrame, constants: pl.DataFrame) -> pl.LazyFrame:
        return feed.with_columns(k=pl.lit(constants["k"][0]))

    with lh.DaskExecutor(n_workers=1, threads_per_worker=1) as ex:
        lake = lh.Lakehouse(tmp_path / "wh", assets=[feed, constants, feed_log], executor=ex)
        lake.materialize()
        write(land / "b.parquet", id=[3])
        lake.materialize()
        df = lake.read("feed_log").sort("id")
    assert df.rows() == [(1, "1"), (2, "1"), (3, "1")]


# ------------------------------------------------------------------------------- docs


def test_sources_page_examples_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The ```python blocks of docs/sources.md run top to bottom and print what they show."""
    import re

    text = (Path(__file__).resolve().parents[1] / "docs" / "sources.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) >= 5
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {"__name__": "docs_sources"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"sources.md[{i}]", "exec"), namespace)
    out = capsys.readouterr().out
    expected = re.findall(r"^# (\[.*\])$", text, re.M)
    assert len(expected) >= 6
    for line in expected:
        assert line in out, line


def test_concurrent_observers_recording_one_change_twice_deliver_it_once(tmp_path: Path) -> None:
    from lakehouse.execution.sources import load_states, observe_one

    land = tmp_path / "landing"
    write(land / "a.parquet", id=[1])
    feed = lh.files(str(land / "*.parquet"), name="feed")

    @lh.asset(write="append", ins={"feed": lh.upstream("feed", since_last_run=True)})
    def feed_log(feed: pl.LazyFrame) -> pl.LazyFrame:
        return feed

    lake = lh.Lakehouse(tmp_path / "wh", assets=[feed, feed_log])
    lake.materialize()
    write(land / "b.parquet", id=[2])
    before = load_states(lake, ["feed"])["feed"]
    # two observers saw the same listing change before either recorded it
    first = observe_one(lake, feed, before, time.time())
    second = observe_one(lake, feed, before, time.time())
    assert first and [r["version"] for r in first] == [r["version"] for r in second]
    lake.catalog.record_observations(first, {"feed": time.time()})
    lake.materialize()
    lake.catalog.record_observations(second, {"feed": time.time()})  # the late duplicate
    assert lake.plan().height == 0  # same version: nothing changed
    lake.materialize("feed_log", force=True)
    assert sorted(lake.read("feed_log")["id"]) == [1, 2]
