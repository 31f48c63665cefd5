"""Table maintenance and lifecycle: optimize, vacuum, pins, orphaned assets, drop,
renames (``previous_names``) and wipe - on real Delta and Iceberg tables."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pytest

FORMATS = ["delta", "iceberg"]
DAYS = 4


def _sorted(frame: Any) -> Any:
    return frame.sort(frame.columns)


def _state(lake: Any, key: str) -> list[tuple[int, int, int, str | None]]:
    return [(r.start, r.end, r.seq, r.version) for r in lake.catalog.state([key]).get(key, [])]


def _files(lake: Any, key: str) -> int:
    from lakehouse.maintenance import table_ref
    from lakehouse.storage import get_maintenance

    ref = table_ref(lake, key)
    return len(get_maintenance(ref.format).live_files(ref))


def appended(fmt: str) -> list[Any]:
    """A daily asset appended to several times per partition (many small files) and a
    downstream aggregate."""
    import polars as pl

    import lakehouse as lh

    @lh.asset(
        partitions=lh.daily(start="2024-01-01", end=f"2024-01-{DAYS + 1:02d}"),
        partition_column="day",
        write="append",
        code_version="1",
        format=fmt,
    )
    def events(ctx: lh.Context) -> pl.DataFrame:
        days = pl.date_range(
            ctx.partition.start.date(), ctx.partition.end.date(), "1d", closed="left", eager=True
        )
        return (
            pl.DataFrame({"day": days})
            .join(pl.DataFrame({"n": list(range(50))}), how="cross")
            .with_columns(run=pl.lit(ctx.run_id))
        )

    @lh.asset(code_version="1", format=fmt)
    def per_day(events: pl.LazyFrame) -> pl.LazyFrame:
        return events.group_by("day").agg(pl.len().alias("rows"))

    return [events, per_day]


def overwritten(fmt: str) -> list[Any]:
    import polars as pl

    import lakehouse as lh

    @lh.asset(code_version="1", format=fmt)
    def snapshot(ctx: lh.Context) -> pl.DataFrame:
        return pl.DataFrame({"run": [ctx.run_id], "x": [1]})

    return [snapshot]


# --------------------------------------------------------------------------- optimize


@pytest.mark.parametrize("fmt", FORMATS)
def test_optimize_compacts_without_changing_content_or_staleness(tmp_path: Path, fmt: str) -> None:
    import polars as pl

    import lakehouse as lh

    lake = lh.Lakehouse(str(tmp_path / "wh"), assets=appended(fmt))
    for _ in range(3):
        lake.materialize(partitions="all", force=True)
    before = _sorted(lake.read("events"))
    files_before = _files(lake, "events")
    assert files_before >= 3 * DAYS
    state_before = _state(lake, "events")
    assert lake.plan().height == 0

    dry = lake.optimize(dry_run=True)
    row = dry.row(by_predicate=pl.col("asset") == "events", named=True)
    assert row["action"] == "would compact" and row["files_after"] < row["files_before"]
    assert (
        _state(lake, "events") == state_before
        and lake.table("events").version == row["version_before"]
    )

    out = lake.optimize()
    row = out.row(by_predicate=pl.col("asset") == "events", named=True)
    assert row["action"] == "compacted"
    files_after = _files(lake, "events")
    assert files_after == row["files_after"]
    assert (
        files_after <= DAYS if fmt == "delta" else files_after == 1
    )  # iceberg: days regrouped by month
    assert _sorted(lake.read("events")).equals(before)
    # not a new data version: same sequence numbers, the read version moved to the compacted one
    state_after = _state(lake, "events")
    assert [(a, b, s) for a, b, s, _ in state_after] == [(a, b, s) for a, b, s, _ in state_before]
    assert {v for *_, v in state_after} == {lake.table("events").version}
    assert lake.plan().height == 0
    # readers never need the pre-compaction files: vacuum them all, then read and recompute
    lake.vacuum(retain="0s")
    assert _sorted(lake.read("events")).equals(before)
    lake.materialize("per_day", force=True)
    assert lake.read("per_day")["rows"].to_list() == [150] * DAYS
    # later single-partition writes still work on the compacted (and regrouped) layout
    lake.materialize("events", partitions="2024-01-02", force=True)
    counts = dict(lake.read("events").group_by("day").len().iter_rows())
    assert sorted(counts.values()) == [150, 150, 150, 200]
    assert lake.optimize()["action"].to_list()[0] in ("compacted", "nothing to do")


def test_optimize_zorder_and_partitions_on_delta(tmp_path: Path) -> None:
    import lakehouse as lh
    from lakehouse.errors import ConfigError

    lake = lh.Lakehouse(str(tmp_path / "wh"), assets=appended("delta"))
    for _ in range(3):
        lake.materialize(partitions="all", force=True)
    out = lake.optimize("events", partitions="2024-01-01..2024-01-02")
    assert out["action"].to_list() == ["compacted"]
    assert _files(lake, "events") == 2 + 3 * (DAYS - 2)
    out = lake.optimize("events", zorder="n")
    assert out["action"].to_list() == ["compacted"] and _files(lake, "events") == DAYS
    with pytest.raises(ConfigError, match=r"'events'.*zorder column 'nope'"):
        lake.optimize("events", zorder=["nope"])
    assert lake.plan().height == 0


# ----------------------------------------------------------------------------- vacuum


@pytest.mark.parametrize("fmt", FORMATS)
def test_vacuum_keeps_current_pinned_and_recent_versions(tmp_path: Path, fmt: str) -> None:
    import lakehouse as lh
    from lakehouse.maintenance import table_ref
    from lakehouse.storage import get_maintenance

    lake = lh.Lakehouse(str(tmp_path / "wh"), assets=overwritten(fmt))
    runs = []
    for _ in range(4):
        lake.materialize(force=True)
        runs.append((lake.table("snapshot").version, lake.read("snapshot")["run"].item()))
    (v0, r0), (v1, r1), (v2, _), (v3, r3) = runs
    assert lake.pin("snapshot", v1, reason="quarter close") == v1
    assert lake.pins()["version"].to_list() == [v1]

    kept = lake.vacuum(retain="1h")  # everything is younger than an hour
    assert kept["files_removed"].to_list() == [0]
    assert lake.read("snapshot", version=v0)["run"].item() == r0

    dry = lake.vacuum(retain="0s", dry_run=True)
    assert dry["files_removed"].item() > 0 and dry["bytes_removed"].item() > 0
    assert dry["action"].item() == "would remove"
    assert lake.read("snapshot", version=v0)["run"].item() == r0  # nothing removed yet

    ref = table_ref(lake, "snapshot")
    from lakehouse.storage.files import list_files

    sizes = {
        f.uri: f.size
        for f in list_files(ref.uri if fmt == "delta" else _location(lake), ref.storage_options)
    }
    done = lake.vacuum(retain="0s")
    assert done["files_removed"].item() == dry["files_removed"].item()
    gone = {
        u: s
        for u, s in sizes.items()
        if u
        not in {
            f.uri
            for f in list_files(ref.uri if fmt == "delta" else _location(lake), ref.storage_options)
        }
    }
    assert (
        len(gone) == done["files_removed"].item()
        and sum(gone.values()) == done["bytes_removed"].item()
    )
    # the current and the pinned versions survive; the others are gone
    assert lake.read("snapshot")["run"].item() == r3
    assert lake.read("snapshot", version=v1)["run"].item() == r1
    for v in (v0, v2):
        with pytest.raises(Exception):  # noqa: B017 - Delta: files gone; Iceberg: snapshot expired
            lake.read("snapshot", version=v)
    if fmt == "iceberg":
        assert sorted(v for v, _ in get_maintenance("iceberg").versions(ref)) == sorted([v1, v3])
    assert lake.unpin("snapshot") == 1 and lake.pins().height == 0
    lake.vacuum(retain="0s")
    with pytest.raises(Exception):  # noqa: B017
        lake.read("snapshot", version=v1)
    assert lake.read("snapshot")["run"].item() == r3


def _location(lake: Any) -> str:
    from lakehouse.storage.iceberg import IcebergFormat

    return IcebergFormat()._require(lake.table_ref(lake._spec("snapshot"))).location()


def test_bad_retention_and_unknown_pins(tmp_path: Path) -> None:
    import lakehouse as lh
    from lakehouse.errors import ConfigError, UnknownAssetError

    lake = lh.Lakehouse(str(tmp_path / "wh"), assets=overwritten("delta"))
    lake.materialize()
    with pytest.raises(ConfigError, match="retain='a week'"):
        lake.vacuum(retain="a week")
    with pytest.raises(UnknownAssetError, match=r"'snapshot'.*no readable version 99"):
        lake.pin("snapshot", 99)


# -------------------------------------------------------------------------- lifecycle


def two_step(fmt: str) -> tuple[Any, Any]:
    import polars as pl

    import lakehouse as lh

    @lh.asset(code_version="1", format=fmt)
    def raw() -> pl.DataFrame:
        return pl.DataFrame({"k": [1, 2, 3]})

    @lh.asset(code_version="1", format=fmt)
    def derived(raw: pl.LazyFrame) -> pl.LazyFrame:
        return raw.with_columns(double=pl.col("k") * 2)

    return raw, derived


@pytest.mark.parametrize("fmt", FORMATS)
def test_removed_asset_is_orphaned_until_dropped(tmp_path: Path, fmt: str) -> None:
    import polars as pl

    import lakehouse as lh
    from lakehouse.errors import DefinitionError

    raw, derived = two_step(fmt)
    wh = str(tmp_path / "wh")
    full = lh.Lakehouse(wh, assets=[raw, derived])
    full.materialize()
    with pytest.raises(DefinitionError, match=r"'raw'.*derived") as err:
        full.drop("raw")
    assert "remove" in str(err.value.hint)

    lake = lh.Lakehouse(wh, assets=[raw])  # derived was removed from the code
    st = lake.status()
    row = st.row(by_predicate=pl.col("asset") == "derived", named=True)
    assert row["stale"] is None and row["reason"] == "orphaned" and row["rows"] == 3
    assert lake.plan().height == 0
    assert lake.history("derived").height == 1
    assert sorted(lake.read("derived")["double"].to_list()) == [2, 4, 6]  # still readable
    assert lake.read("raw").height == 3

    preview = lake.drop("derived", dry_run=True)
    assert preview["table"] and preview["files_removed"] >= 1
    assert lake.status().filter(pl.col("asset") == "derived").height == 1

    done = lake.drop("derived")
    assert done["records"]["lh_materializations"] == 1 and done["files_removed"] >= 1
    assert lake.status()["asset"].to_list() == ["raw"]
    if fmt == "delta":
        assert not (tmp_path / "wh" / "derived").exists()
    else:
        from lakehouse.storage.iceberg import IcebergFormat

        assert not IcebergFormat().exists(full.table_ref(full._spec("derived")))
    # putting it back recomputes it from scratch
    again = lh.Lakehouse(wh, assets=[raw, derived])
    assert again.plan()["reason"].to_list() == ["never_materialized"]
    again.materialize()
    assert sorted(again.read("derived")["double"].to_list()) == [2, 4, 6]


@pytest.mark.parametrize("fmt", FORMATS)
def test_rename_adopts_table_and_history(tmp_path: Path, fmt: str) -> None:
    import polars as pl

    import lakehouse as lh

    wh = str(tmp_path / "wh")

    def orders_v1() -> list[Any]:
        @lh.asset(name="orders", code_version="1", format=fmt)
        def make_orders(ctx: lh.Context) -> pl.DataFrame:
            return pl.DataFrame({"id": [1, 2], "run": [ctx.run_id] * 2})

        @lh.asset(code_version="1", format=fmt, deps=["orders"])
        def report() -> pl.DataFrame:
            return pl.DataFrame({"ok": [True]})

        return [make_orders, report]

    def orders_v2() -> list[Any]:
        @lh.asset(name="sales", previous_names=["orders"], code_version="1", format=fmt)
        def make_orders(ctx: lh.Context) -> pl.DataFrame:
            return pl.DataFrame({"id": [1, 2], "run": [ctx.run_id] * 2})

        @lh.asset(code_version="1", format=fmt, deps=["sales"])
        def report() -> pl.DataFrame:
            return pl.DataFrame({"ok": [True]})

        return [make_orders, report]

    first = lh.Lakehouse(wh, assets=orders_v1())
    first.materialize()
    run = first.read("orders")["run"][0]

    lake = lh.Lakehouse(wh, assets=orders_v2())
    assert (
        lake.plan().height == 0
    )  # adopted, not recomputed (and report's input follows the rename)
    assert lake.read("sales")["run"].to_list() == [run, run]
    assert lake.history("sales").height == 1
    assert "orders" not in lake.status()["asset"].to_list()
    if fmt == "delta":
        assert (tmp_path / "wh" / "sales" / "_delta_log").is_dir()
        assert not (tmp_path / "wh" / "orders").exists()
    lake.materialize("sales", force=True)
    assert lake.read("sales")["run"][0] != run
    assert lake.history("sales").height == 2


@pytest.mark.parametrize("fmt", FORMATS)
def test_wipe_marks_partitions_missing(tmp_path: Path, fmt: str) -> None:
    import polars as pl

    import lakehouse as lh
    from lakehouse.errors import ConfigError

    @lh.asset(
        partitions=lh.daily(start="2024-01-01", end=f"2024-01-{DAYS + 1:02d}"),
        partition_column="day",
        code_version="1",
        format=fmt,
    )
    def days(ctx: lh.Context) -> pl.DataFrame:
        d = pl.date_range(
            ctx.partition.start.date(), ctx.partition.end.date(), "1d", closed="left", eager=True
        )
        return pl.DataFrame({"day": d}).join(pl.DataFrame({"v": [1, 2]}), how="cross")

    @lh.asset(code_version="1", format=fmt)
    def total(days: pl.LazyFrame) -> pl.LazyFrame:
        return days.select(pl.len())

    lake = lh.Lakehouse(str(tmp_path / "wh"), assets=[days, total])
    lake.materialize()
    with pytest.raises(ConfigError, match=r"'days'.*partitions="):
        lake.wipe("days")
    out = lake.wipe("days", partitions="2024-01-02..2024-01-03")
    assert out["rows"] == 4 and out["count"] == 2
    left = lake.read("days")["day"].cast(pl.String).unique().sort().to_list()
    assert left == ["2024-01-01", "2024-01-04"]
    plan = lake.plan()
    assert plan.filter(pl.col("asset") == "days")["reason"].to_list() == ["partition_missing"]
    assert plan.filter(pl.col("asset") == "days")["count"].to_list() == [2]
    assert plan.filter(pl.col("asset") == "total")["reason"].to_list() == ["upstream_stale"]
    lake.materialize()
    assert lake.read("days").height == 2 * DAYS and lake.plan().height == 0


# -------------------------------------------------------------------------- property


@pytest.mark.slow
def test_optimize_never_changes_rows_or_plan_property(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    import lakehouse as lh

    @settings(
        max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(
        st.lists(
            st.sampled_from(["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04", "all"]),
            min_size=1,
            max_size=6,
        )
    )
    def check(writes: list[str]) -> None:
        lake = lh.Lakehouse(str(tmp_path_factory.mktemp("prop")), assets=appended("delta"))
        for w in writes:
            lake.materialize("events", partitions=w, force=True)
        before = _sorted(lake.read("events"))
        plan = lake.plan()
        lake.optimize()
        lake.vacuum(retain="0s")
        assert _sorted(lake.read("events")).equals(before)
        assert lake.plan().equals(plan)
        lake.close()

    check()


# ------------------------------------------------------------------------------ CLI


PROJECT = """
import polars as pl
import lakehouse as lh

@lh.asset(write="append", code_version="1")
def logs(ctx: lh.Context) -> pl.DataFrame:
    return pl.DataFrame({"run": [ctx.run_id]})
"""

REMOVED = """
import polars as pl
import lakehouse as lh

@lh.asset(code_version="1")
def other() -> pl.DataFrame:
    return pl.DataFrame({"x": [1]})
"""


def _cli(*argv: str, stdin: str = "") -> tuple[int, str, str]:
    import sys

    from lakehouse.cli import main

    out, err = io.StringIO(), io.StringIO()
    old = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        code = main(list(argv), stdout=out, stderr=err)
    finally:
        sys.stdin = old
    return code, out.getvalue(), err.getvalue()


def test_cli_optimize_vacuum_and_drop(tmp_path: Path) -> None:
    project = tmp_path / "project.py"
    project.write_text(PROJECT)
    wh = str(tmp_path / "wh")
    for _ in range(3):
        assert _cli("materialize", "-p", str(project), "-w", wh, "--force")[0] == 0
    log = tmp_path / "wh" / "logs" / "_delta_log"
    versions = sorted(os.listdir(log))

    code, out, _ = _cli("optimize", "-p", str(project), "-w", wh, "--dry-run")
    assert code == 0 and "would compact" in out and "dry run" in out
    assert sorted(os.listdir(log)) == versions
    code, out, _ = _cli("optimize", "-p", str(project), "-w", wh, "--json")
    doc = json.loads(out)
    assert (
        code == 0
        and doc["assets"][0]["action"] == "compacted"
        and doc["assets"][0]["files_after"] == 1
    )

    code, out, _ = _cli("vacuum", "-p", str(project), "-w", wh, "--retain", "0s", "--dry-run")
    assert code == 0 and "would remove 3 file(s)" in out
    code, out, _ = _cli("vacuum", "-p", str(project), "-w", wh, "--retain", "0s", "--json")
    assert code == 0 and json.loads(out)["assets"][0]["files_removed"] == 3
    code, _, err = _cli("vacuum", "-p", str(project), "-w", wh, "--retain", "soon")
    assert code == 2 and "retain='soon'" in err

    removed = tmp_path / "removed.py"
    removed.write_text(REMOVED)
    code, out, _ = _cli("status", "-p", str(removed), "-w", wh, "--json")
    rows = {r["asset"]: r for r in json.loads(out)["assets"]}
    assert rows["logs"]["reason"] == "orphaned" and rows["logs"]["stale"] is None
    code, _, err = _cli("drop", "logs", "-p", str(removed), "-w", wh, stdin="n\n")
    assert code == 1 and "aborted" in err and "[y/N]" in err
    assert (tmp_path / "wh" / "logs").exists()
    code, _, err = _cli("drop", "logs", "-p", str(removed), "-w", wh, "--json")
    assert code == 2 and "--yes" in err
    code, out, _ = _cli("drop", "logs", "-p", str(removed), "-w", wh, "--dry-run")
    assert code == 0 and "would drop 'logs'" in out and (tmp_path / "wh" / "logs").exists()
    code, out, _ = _cli("drop", "logs", "-p", str(removed), "-w", wh, stdin="y\n")
    assert code == 0 and "dropped 'logs'" in out and not (tmp_path / "wh" / "logs").exists()
    code, out, _ = _cli("drop", "nothing", "-p", str(removed), "-w", wh, "--yes")
    assert code == 2


# ------------------------------------------------------------------------ PostgreSQL


@pytest.mark.postgres
def test_pins_vacuum_and_erasure_with_a_postgres_catalog(
    tmp_path: Path, postgres_db_url: str
) -> None:
    import polars as pl

    import lakehouse as lh

    @lh.asset(code_version="1")
    def people(ctx: lh.Context) -> pl.DataFrame:
        return pl.DataFrame({"name": ["ann", "bob"], "run": [ctx.run_id] * 2})

    @lh.asset(code_version="1", erase_by=["name"])
    def greetings(people: pl.LazyFrame) -> pl.LazyFrame:
        return people.select("name", pl.lit("hi").alias("text"))

    lake = lh.Lakehouse(str(tmp_path / "wh"), assets=[people, greetings], catalog=postgres_db_url)
    lake.materialize()
    first = lake.table("people").version
    lake.pin("people", first, reason="keep")
    lake.materialize("people", force=True)
    lake.materialize()  # greetings catches up
    lake.vacuum(retain="0s")
    assert lake.read("people", version=first).height == 2
    out = lake.erase("people", where="name = 'bob'", reason="request")
    assert dict(zip(out["asset"], out["action"], strict=True)) == {
        "people": "deleted",
        "greetings": "erase_by",
    }
    assert lake.read("greetings")["name"].to_list() == ["ann"]
    assert lake.erasures()["status"].to_list() == ["complete"]
    assert lake.plan().height == 0


# --------------------------------------------------------------------------------- S3


@pytest.mark.s3
@pytest.mark.parametrize("fmt", FORMATS)
def test_optimize_vacuum_rename_and_drop_on_s3(tmp_path: Path, s3_bucket: Any, fmt: str) -> None:
    import uuid

    import polars as pl

    import lakehouse as lh

    wh = f"{s3_bucket.uri}/maint-{uuid.uuid4().hex[:8]}"
    opts = dict(s3_bucket.storage_options)

    def lake_of(assets: list[Any]) -> Any:
        return lh.Lakehouse(
            wh, assets=assets, storage_options=opts, local_dir=str(tmp_path / "state")
        )

    @lh.asset(name="logs", write="append", code_version="1", format=fmt)
    def logs(ctx: lh.Context) -> pl.DataFrame:
        return pl.DataFrame({"run": [ctx.run_id]})

    lake = lake_of([logs])
    for _ in range(3):
        lake.materialize(force=True)
    first = lake.history("logs")["version"][-1]
    lake.pin("logs", first, reason="keep")
    assert lake.optimize()["action"].to_list() == ["compacted"]
    assert _files(lake, "logs") == 1 and lake.plan().height == 0
    out = lake.vacuum(retain="0s")
    assert out["files_removed"].item() > 0 and out["bytes_removed"].item() > 0
    assert lake.read("logs").height == 3 and lake.read("logs", version=first).height == 1

    @lh.asset(name="events", previous_names=["logs"], write="append", code_version="1", format=fmt)
    def events(ctx: lh.Context) -> pl.DataFrame:
        return pl.DataFrame({"run": [ctx.run_id]})

    renamed = lake_of([events])
    assert renamed.plan().height == 0
    assert renamed.read("events").height == 3 and renamed.history("events").height == 3
    renamed.materialize(force=True)
    assert renamed.read("events").height == 4

    gone = lake_of([])
    assert gone.status()["reason"].to_list() == ["orphaned"]
    assert gone.drop("events")["files_removed"] > 0
    assert gone.status().height == 0
    keys = [o["Key"] for o in s3_bucket_objects(s3_bucket, wh)]
    assert not [k for k in keys if "/events/" in k or "/logs/" in k], keys


def s3_bucket_objects(bucket: Any, prefix_uri: str) -> list[dict[str, Any]]:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=bucket.endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    prefix = prefix_uri.split("/", 3)[3]
    return client.list_objects_v2(Bucket=bucket.name, Prefix=prefix).get("Contents", [])


@pytest.mark.parametrize("fmt", FORMATS)
def test_maintenance_leaves_tables_nested_below_a_table_alone(tmp_path: Path, fmt: str) -> None:
    """An asset ``sales`` and an asset ``sales/orders``: the second table lives inside the
    first one's folder, and no vacuum, erasure or drop of ``sales`` may touch it."""
    import polars as pl

    import lakehouse as lh

    @lh.asset(code_version="1", format=fmt)
    def sales(ctx: lh.Context) -> pl.DataFrame:
        return pl.DataFrame({"who": ["ann", "bob"], "run": [ctx.run_id] * 2})

    @lh.asset(namespace="sales", code_version="1", format=fmt)
    def orders(ctx: lh.Context) -> pl.DataFrame:
        return pl.DataFrame({"who": ["bob"], "run": [ctx.run_id]})

    wh = str(tmp_path / "wh")
    lake = lh.Lakehouse(wh, assets=[sales, orders])
    for _ in range(3):
        lake.materialize(force=True)
    versions = [v for v in lake.history("sales/orders")["version"].to_list()]
    runs = {v: lake.read("sales/orders", version=v)["run"].item() for v in versions}

    def intact() -> None:
        for v, run in runs.items():
            assert lake.read("sales/orders", version=v)["run"].item() == run

    lake.vacuum("sales", retain="0s")
    intact()
    lake.erase("sales", where=pl.col("who") == "bob", reason="r")
    assert lake.read("sales")["who"].to_list() == ["ann"]
    intact()
    lh_only_orders = lh.Lakehouse(wh, assets=[orders])
    lh_only_orders.drop("sales")
    intact()
    assert lh_only_orders.plan().height == 0
