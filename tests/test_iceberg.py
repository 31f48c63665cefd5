"""Iceberg specifics: partition specs from partition definitions, namespaces, catalogs by
properties, exact overwrite filters, one entry per commit, lazy reads."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest

import lakehouse as lh
from lakehouse.assets import WriteMode
from lakehouse.errors import PartitionError, StorageError
from lakehouse.storage import get_format
from lakehouse.storage.iceberg import identifier


def _lake(tmp_path: Path, assets: list[Any], **kw: Any) -> Any:
    kw.setdefault("format", "iceberg")
    return lh.Lakehouse(str(tmp_path / "wh"), assets=assets, **kw)


def _table(lake: Any, name: str) -> Any:
    return get_format("iceberg").native(lake.table_ref(lake._spec(name)))


def _spec_of(table: Any) -> list[tuple[str, str]]:
    schema = table.schema()
    return [(schema.find_field(f.source_id).name, str(f.transform)) for f in table.spec().fields]


def test_partition_specs_follow_partition_definitions(tmp_path: Path) -> None:
    @lh.asset(partitions=lh.daily("2024-01-01", "2024-01-03"), partition_column="day")
    def by_day(ctx: lh.Context) -> pl.DataFrame:
        return pl.DataFrame({"day": [ctx.partition.start.date()], "v": [1]})

    @lh.asset(partitions=lh.hourly("2024-01-01", "2024-01-01T03:00"), partition_column="ts")
    def by_hour(ctx: lh.Context) -> pl.DataFrame:
        start = ctx.partition.start.astimezone(dt.timezone.utc).replace(tzinfo=None)
        hours = [start + dt.timedelta(hours=i) for i in range(len(ctx.partition.keys))]
        return pl.DataFrame({"ts": hours, "v": [1] * len(hours)})

    @lh.asset(partitions=lh.monthly("2024-01-01", "2024-03-01"), partition_column="month")
    def by_month(ctx: lh.Context) -> pl.DataFrame:
        return pl.DataFrame({"month": [ctx.partition.start.date()], "v": [1]})

    @lh.asset(partitions=lh.static(["eu", "us"]), partition_column="region")
    def by_region(ctx: lh.Context) -> pl.DataFrame:
        return pl.DataFrame(
            {"region": list(ctx.partition.keys), "v": [1] * len(ctx.partition.keys)}
        )

    @lh.asset(
        partitions=lh.multi(
            day=lh.daily("2024-01-01", "2024-01-03"), region=lh.static(["eu", "us"])
        ),
        partition_column=["day", "region"],
    )
    def by_both(ctx: lh.Context) -> pl.DataFrame:
        rows = [k.split("|") for k in ctx.partition.keys]
        return pl.DataFrame(
            {"day": [dt.date.fromisoformat(d) for d, _ in rows], "region": [r for _, r in rows]}
        )

    assets = [by_day, by_hour, by_month, by_region, by_both]
    lake = _lake(tmp_path, assets)
    lake.materialize()
    assert _spec_of(_table(lake, "by_day")) == [("day", "day")]
    assert _spec_of(_table(lake, "by_hour")) == [("ts", "hour")]
    assert _spec_of(_table(lake, "by_month")) == [("month", "month")]
    assert _spec_of(_table(lake, "by_region")) == [("region", "identity")]
    assert _spec_of(_table(lake, "by_both")) == [("day", "day"), ("region", "identity")]
    # an hourly range overwrite touches only its hours
    lake.materialize("by_hour", partitions="2024-01-01-01:00", force=True)
    assert lake.read("by_hour").height == 3
    assert lake.read("by_both").height == 4


def test_namespaces_and_default_format(tmp_path: Path) -> None:
    @lh.asset(namespace="sales/eu")
    def orders() -> pl.DataFrame:
        return pl.DataFrame({"id": [1]})

    @lh.asset
    def plain() -> pl.DataFrame:
        return pl.DataFrame({"id": [2]})

    lake = _lake(tmp_path, [orders, plain])
    lake.materialize()
    assert lake.table("sales/eu/orders").format == "iceberg"
    assert identifier(lake.table_ref(lake._spec("sales/eu/orders"))) == ("sales_eu", "orders")
    assert identifier(lake.table_ref(lake._spec("plain"))) == ("default", "plain")
    # the default catalog is pyiceberg's SQL catalog inside the lakehouse catalog database
    from pyiceberg.catalog.sql import SqlCatalog

    cat = SqlCatalog(
        "lakehouse", uri=lake.settings.catalog_url, warehouse=f"file://{tmp_path / 'wh'}"
    )
    assert ("sales_eu", "orders") in cat.list_tables("sales_eu")
    assert cat.load_table(("default", "plain")).location().rstrip("/").endswith("wh/plain")


def test_existing_catalog_by_properties(tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    props = {
        "type": "sql",
        "uri": f"sqlite:///{other / 'iceberg.db'}",
        "warehouse": f"file://{other / 'store'}",
    }

    @lh.asset
    def t() -> pl.DataFrame:
        return pl.DataFrame({"x": [1, 2]})

    lake = _lake(tmp_path, [t], iceberg_catalog=props)
    lake.materialize()
    from pyiceberg.catalog import load_catalog

    table = load_catalog("lakehouse", **props).load_table(("default", "t"))
    assert table.scan().to_arrow().num_rows == 2
    assert str(other / "store") in table.location()  # the catalog chose the location
    assert lake.read("t")["x"].to_list() == [1, 2]


def test_unreachable_catalog_is_a_storage_error(tmp_path: Path) -> None:
    @lh.asset
    def t() -> pl.DataFrame:
        return pl.DataFrame({"x": [1]})

    lake = _lake(
        tmp_path,
        [t],
        iceberg_catalog={"type": "sql", "uri": "nosuchdialect://x", "warehouse": "file:///x"},
    )
    with pytest.raises(lh.errors.MaterializeError) as info:
        lake.materialize()
    assert "t" in info.value.failures and "Iceberg catalog" in info.value.failures["t"]


def _ref_and_fmt(tmp_path: Path) -> tuple[Any, Any, Any]:
    @lh.asset(partitions=lh.daily("2024-01-01", "2024-01-11"), partition_column="day")
    def ev(ctx: lh.Context) -> pl.DataFrame:
        days = pl.date_range(
            ctx.partition.start.date(), ctx.partition.end.date(), closed="left", eager=True
        )
        return pl.DataFrame({"day": days, "v": [0] * len(days)})

    lake = _lake(tmp_path, [ev])
    lake.materialize()
    ref = lake.table_ref(lake._spec("ev"))
    return lake, ref, get_format("iceberg")


def _write_day(fmt: Any, ref: Any, rows: pa.Table, day_index: int, step: str) -> Any:
    from lakehouse.partitions import RangeSet, predicate, predicate_sql

    pred = predicate(ref.partitions, RangeSet.of(day_index, day_index + 1), ["day"])
    prov = {"run_id": step, "step_id": step, "partitions": f"[[{day_index}, {day_index + 1}]]"}
    return fmt.write(
        ref,
        rows,
        mode=WriteMode("overwrite"),
        predicate=predicate_sql(pred),
        partition_by=["day"],
        schema_mode="strict",
        provenance=prov,
    )


def test_overwrite_filter_refuses_rows_outside_it(tmp_path: Path) -> None:
    _lake, ref, fmt = _ref_and_fmt(tmp_path)
    before = fmt.current(ref)
    rows = pa.table({"day": [dt.date(2024, 1, 3), dt.date(2024, 1, 9)], "v": [5, 5]})
    with pytest.raises(PartitionError, match="outside the partitions"):
        _write_day(fmt, ref, rows, 2, "s-bad")  # pyiceberg alone would append the 01-09 row
    assert fmt.current(ref) == before
    result = _write_day(fmt, ref, rows.slice(0, 1), 2, "s-good")
    got = pl.from_arrow(fmt.read_arrow(ref)).sort("day")
    assert got.height == 10 and got.filter(pl.col("v") == 5)["day"].to_list() == [
        dt.date(2024, 1, 3)
    ]
    assert result.version == fmt.current(ref)[0] and result.seq > before[1]


def test_one_commit_entry_per_write_with_provenance(tmp_path: Path) -> None:
    _lake, ref, fmt = _ref_and_fmt(tmp_path)
    for i in range(3):
        _write_day(fmt, ref, pa.table({"day": [dt.date(2024, 1, 2)], "v": [i]}), 1, f"step-{i}")
    table = fmt.native(ref)
    assert len(table.snapshots()) > 4  # each overwrite is a delete and an append snapshot
    commits = fmt.commits(ref)
    assert [c["provenance"].get("step_id") for c in commits][-3:] == ["step-0", "step-1", "step-2"]
    assert len(commits) == 4
    assert commits[-1]["version"] == fmt.current(ref)[0]
    assert [c["seq"] for c in commits] == sorted(c["seq"] for c in commits)


def test_dataset_reads_files_lazily_and_after_added_columns(tmp_path: Path) -> None:
    extra = {"on": False}

    @lh.asset(schema="add_columns")
    def t() -> pl.DataFrame:
        df = pl.DataFrame({"x": [1, 2]})
        return df.with_columns(y=pl.lit("new")) if extra["on"] else df

    @lh.asset(engine="duckdb")
    def counted(t: Any) -> str:
        return "select count(*) as n, count(y) as with_y from t"

    lake = _lake(tmp_path, [t, counted])
    lake.materialize("t")
    extra["on"] = True
    lake.materialize(force=True)
    ref = lake.table_ref(lake._spec("t"))
    import pyarrow.dataset as pads

    ds = get_format("iceberg").dataset(ref)
    assert isinstance(ds, pads.FileSystemDataset)  # the data files, not rows in memory
    assert lake.read("counted").to_dicts() == [{"n": 2, "with_y": 2}]
    first = lake.history("t")["version"].to_list()[-1]
    old = lake.read("t", version=first)
    assert old.columns == ["x"] and old.height == 2


def test_missing_snapshot_is_a_clear_error(tmp_path: Path) -> None:
    @lh.asset
    def t() -> pl.DataFrame:
        return pl.DataFrame({"x": [1]})

    lake = _lake(tmp_path, [t])
    lake.materialize()
    ref = lake.table_ref(lake._spec("t"), version="12345")
    with pytest.raises(StorageError, match="no snapshot 12345"):
        get_format("iceberg").read_arrow(ref)


def test_remote_warehouse_repr_shows_local_catalog_file(tmp_path: Path) -> None:
    lake = lh.Lakehouse(
        "s3://bucket/prefix",
        assets=[],
        local_dir=str(tmp_path / "state"),
        storage_options={"AWS_SECRET_ACCESS_KEY": "do-not-print-me"},
    )
    text = repr(lake)
    assert str(tmp_path / "state" / "catalog.db") in text
    assert "do-not-print-me" not in text and "do-not-print-me" not in repr(lake.settings)


@pytest.mark.postgres
def test_iceberg_tables_in_the_postgres_catalog(tmp_path: Path, postgres_db_url: str) -> None:
    @lh.asset(partitions=lh.daily("2024-01-01", "2024-01-04"), partition_column="day")
    def ev(ctx: lh.Context) -> pl.DataFrame:
        days = pl.date_range(
            ctx.partition.start.date(), ctx.partition.end.date(), closed="left", eager=True
        )
        return pl.DataFrame({"day": days, "v": [1] * len(days)})

    lake = _lake(tmp_path, [ev], catalog=postgres_db_url)
    lake.materialize()
    lake.materialize(partitions="2024-01-02", force=True)
    assert lake.read("ev").height == 3 and lake.history("ev").height == 2
    import sqlalchemy as sa

    engine = sa.create_engine(postgres_db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT catalog_name, table_namespace, table_name FROM iceberg_tables")
            ).all()
    finally:
        engine.dispose()
    assert [tuple(r) for r in rows] == [("lakehouse", "default", "ev")]
    assert not (tmp_path / "wh" / ".lakehouse").exists()  # no SQLite file on the side


def test_formats_page_examples_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import re

    text = (Path(__file__).resolve().parents[1] / "docs" / "formats.md").read_text()
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {"__name__": "docs_formats"}
    for i, block in enumerate(re.findall(r"```python\n(.*?)```", text, re.S)):
        exec(compile(block, f"formats.md[{i}]", "exec"), namespace)
    out = capsys.readouterr().out
    assert "iceberg [60.0]" in out and "\n1\n" in out


@pytest.mark.slow
def test_partition_overwrites_match_a_model(tmp_path: Path) -> None:
    """Any sequence of multi-range overwrites leaves exactly the model's rows (property)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from lakehouse.partitions import RangeSet, predicate, predicate_sql

    days = 20

    @lh.asset(partitions=lh.daily("2024-01-01", "2024-01-21"), partition_column="day")
    def ev(ctx: lh.Context) -> pl.DataFrame:
        span = pl.date_range(
            ctx.partition.start.date(), ctx.partition.end.date(), closed="left", eager=True
        )
        return pl.DataFrame({"day": span, "gen": [0] * len(span)})

    lake = _lake(tmp_path, [ev])
    lake.materialize()
    ref = lake.table_ref(lake._spec("ev"))
    fmt = get_format("iceberg")
    start = dt.date(2024, 1, 1)
    counter = [0]
    ranges = st.lists(
        st.tuples(st.integers(0, days - 1), st.integers(1, 4)), min_size=1, max_size=3
    )

    @settings(
        max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(ops=st.lists(ranges, min_size=1, max_size=3))
    def check(ops: list[list[tuple[int, int]]]) -> None:
        model = {r["day"]: r["gen"] for r in pl.from_arrow(fmt.read_arrow(ref)).to_dicts()}
        for op in ops:
            counter[0] += 1
            gen = counter[0]
            rs = RangeSet((a, min(a + n, days)) for a, n in op)
            chosen = [start + dt.timedelta(days=i) for i in rs.indices()]
            rows = pa.table({"day": chosen, "gen": [gen] * len(chosen)})
            prov = {
                "run_id": f"r{gen}",
                "step_id": f"s{gen}",
                "partitions": str([list(r) for r in rs.ranges]),
            }
            fmt.write(
                ref,
                rows,
                mode=WriteMode("overwrite"),
                schema_mode="strict",
                partition_by=["day"],
                predicate=predicate_sql(predicate(ref.partitions, rs, ["day"])),
                provenance=prov,
            )
            model.update({d: gen for d in chosen})
        got = {r["day"]: r["gen"] for r in pl.from_arrow(fmt.read_arrow(ref)).to_dicts()}
        assert pl.from_arrow(fmt.read_arrow(ref)).height == days
        assert got == model

    check()
