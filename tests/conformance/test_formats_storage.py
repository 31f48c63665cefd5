"""One conformance suite over table format {delta, iceberg} x storage {local, s3}.

Every test runs in every cell (see ``conftest.py``): write modes, partitions and ranges,
schema modes, time travel, provenance, staleness after upstream rewrites, concurrent
appends from two processes, formats feeding each other, and reading back through an
independent path equal to what was written.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import lakehouse as lh
from lakehouse.errors import MaterializeError

from .conftest import Cell, same_rows

ROOT = Path(__file__).resolve().parents[2]
DAYS = lh.daily("2024-01-01", "2024-01-11")


def _version(lake: Any, name: str) -> str | None:
    return lake.table(name).version


def _plan_assets(lake: Any) -> dict[str, str]:
    return {r["asset"]: r["reason"] for r in lake.plan().iter_rows(named=True)}


# ------------------------------------------------------------------------- write modes


def test_overwrite_and_append_read_back_independently(cell: Cell) -> None:
    state = {"rows": [1, 2, 3]}

    @lh.asset(code_version="1")
    def snapshot() -> pl.DataFrame:
        return pl.DataFrame({"id": state["rows"], "name": [f"n{i}" for i in state["rows"]]})

    @lh.asset(write="append", code_version="1")
    def log() -> pl.DataFrame:
        return pl.DataFrame({"id": state["rows"]})

    lake = cell.lake([snapshot, log])
    lake.materialize()
    state["rows"] = [7, 8]
    lake.materialize(force=True)

    expected = pl.DataFrame({"id": [7, 8], "name": ["n7", "n8"]})
    assert same_rows(cell.read_independent(lake, "snapshot"), expected)
    assert same_rows(lake.read("snapshot"), expected)
    appended = pl.DataFrame({"id": [1, 2, 3, 7, 8]})
    assert same_rows(cell.read_independent(lake, "log"), appended)
    assert same_rows(lake.read("log"), appended)


def test_merge_updates_inserts_and_deletes_missing(cell: Cell) -> None:
    state: dict[str, Any] = {"ids": [1, 2, 3], "value": "old"}

    @lh.asset(write=lh.merge(on="id"), code_version="1")
    def dim() -> pl.DataFrame:
        return pl.DataFrame({"id": state["ids"], "v": [state["value"]] * len(state["ids"])})

    @lh.asset(write=lh.merge(on="id", delete_missing=True), code_version="1")
    def exact() -> pl.DataFrame:
        return pl.DataFrame({"id": state["ids"], "v": [state["value"]] * len(state["ids"])})

    lake = cell.lake([dim, exact])
    lake.materialize()
    state.update(ids=[3, 4], value="new")
    lake.materialize(force=True)

    merged = pl.DataFrame({"id": [1, 2, 3, 4], "v": ["old", "old", "new", "new"]})
    assert same_rows(cell.read_independent(lake, "dim"), merged)
    assert same_rows(
        cell.read_independent(lake, "exact"), pl.DataFrame({"id": [3, 4], "v": ["new", "new"]})
    )


# ------------------------------------------------------------------ partitions, ranges


def test_partition_range_overwrite_is_exact(cell: Cell) -> None:
    marker = {"v": "first"}

    @lh.asset(partitions=DAYS, partition_column="day", code_version="1")
    def events(ctx: lh.Context) -> pl.DataFrame:
        days = pl.date_range(
            ctx.partition.start.date(), ctx.partition.end.date(), closed="left", eager=True
        )
        return pl.DataFrame({"day": days, "tag": [marker["v"]] * len(days)})

    lake = cell.lake([events])
    lake.materialize()
    first = _version(lake, "events")
    commits_before = len(cell.commit_properties(lake, "events"))
    marker["v"] = "second"
    lake.materialize(partitions="2024-01-03..2024-01-04", force=True)

    got = cell.read_independent(lake, "events")
    assert got.height == 10
    changed = got.filter(pl.col("tag") == "second")["day"].sort().to_list()
    assert changed == [dt.date(2024, 1, 3), dt.date(2024, 1, 4)]
    assert same_rows(got, lake.read("events"))
    # the whole range is one table commit (Iceberg: one catalog commit)
    assert lake.history("events").height == 2
    assert _version(lake, "events") != first
    if cell.format == "delta":
        assert len(cell.commit_properties(lake, "events")) == commits_before + 1
    # older version still readable
    assert lake.read("events", version=first)["tag"].unique().to_list() == ["first"]


def test_static_partitions_overwrite_one_value(cell: Cell) -> None:
    marker = {"v": 1}

    @lh.asset(
        partitions=lh.static(["eu", "us", "apac"]), partition_column="region", code_version="1"
    )
    def sales(ctx: lh.Context) -> pl.DataFrame:
        return pl.DataFrame(
            {"region": list(ctx.partition.keys), "v": [marker["v"]] * len(ctx.partition.keys)}
        )

    lake = cell.lake([sales])
    lake.materialize()
    marker["v"] = 2
    lake.materialize(partitions="us", force=True)
    got = cell.read_independent(lake, "sales").sort("region")
    assert got.to_dicts() == [
        {"region": "apac", "v": 1},
        {"region": "eu", "v": 1},
        {"region": "us", "v": 2},
    ]


def test_rows_outside_the_partition_publish_nothing(cell: Cell) -> None:
    bad = {"on": False}

    @lh.asset(partitions=DAYS, partition_column="day", code_version="1")
    def events(ctx: lh.Context) -> pl.DataFrame:
        day = ctx.partition.start.date()
        days = [day, day + dt.timedelta(days=5)] if bad["on"] else [day]
        return pl.DataFrame({"day": days, "v": [1] * len(days)})

    lake = cell.lake([events])
    lake.materialize(partitions="2024-01-01")
    before = _version(lake, "events")
    bad["on"] = True
    with pytest.raises(MaterializeError) as info:
        lake.materialize(partitions="2024-01-02", force=True)
    text = str(info.value)
    assert "events" in text and "outside the partitions" in text and "2024-01-02" in text
    assert _version(lake, "events") == before
    assert cell.read_independent(lake, "events").height == 1


# ------------------------------------------------------------------------ schema modes


@pytest.mark.parametrize("mode", ["strict", "add_columns", "replace"])
def test_schema_modes(cell: Cell, mode: str) -> None:
    state = {"extra": False, "retype": False}

    def make() -> pl.DataFrame:
        df = pl.DataFrame({"id": [1, 2], "v": [1.5, 2.5]})
        if state["extra"]:
            df = df.with_columns(note=pl.lit("x"))
        if state["retype"]:
            df = df.with_columns(pl.col("v").cast(pl.String))
        return df

    asset = lh.asset(name="t", schema=mode, code_version="1")(lambda: make())
    lake = cell.lake([asset])
    lake.materialize()
    first = _version(lake, "t")
    state["extra"] = True
    if mode == "strict":
        with pytest.raises(MaterializeError, match="schema"):
            lake.materialize(force=True)
        assert _version(lake, "t") == first
        assert cell.read_independent(lake, "t").columns == ["id", "v"]
        return
    lake.materialize(force=True)
    got = cell.read_independent(lake, "t")
    assert set(got.columns) == {"id", "v", "note"} and got["note"].to_list() == ["x", "x"]
    state["retype"] = True  # a non-additive change: only 'replace' accepts it
    if mode == "add_columns":
        with pytest.raises(MaterializeError, match="schema"):
            lake.materialize(force=True)
        return
    lake.materialize(force=True)
    got = cell.read_independent(lake, "t")
    assert got.schema["v"] == pl.String and sorted(got["v"].to_list()) == ["1.5", "2.5"]


# ---------------------------------------------------------- time travel and provenance


def test_time_travel_by_version(cell: Cell) -> None:
    state = {"n": 1}

    @lh.asset(code_version="1")
    def t() -> pl.DataFrame:
        return pl.DataFrame({"n": [state["n"]] * state["n"]})

    lake = cell.lake([t])
    versions = []
    for n in (1, 2, 3):
        state["n"] = n
        lake.materialize(force=True)
        versions.append(_version(lake, "t"))
    assert len(set(versions)) == 3
    for n, version in zip((1, 2, 3), versions, strict=True):
        expected = pl.DataFrame({"n": [n] * n})
        assert same_rows(lake.read("t", version=version), expected)
        assert same_rows(cell.read_independent(lake, "t", version=version), expected)
    assert lake.history("t")["version"].to_list() == versions[::-1]


def test_provenance_in_table_commits_and_catalog(cell: Cell) -> None:
    @lh.asset(code_version="up-1")
    def up() -> pl.DataFrame:
        return pl.DataFrame({"x": [1, 2, 3]})

    @lh.asset(code_version="down-1")
    def down(up: pl.LazyFrame) -> pl.LazyFrame:
        return up.select(pl.col("x").sum())

    lake = cell.lake([up, down])
    result = lake.materialize()
    up_version = _version(lake, "up")
    props = cell.commit_properties(lake, "down")[-1]
    assert props["lakehouse.run_id"] == result.run_id
    assert props["lakehouse.asset"] == "down"
    assert props["lakehouse.code_version"] == "down-1"
    inputs = json.loads(props["lakehouse.inputs"])
    assert [i[:2] for i in inputs] == [["up", up_version]]
    prov = lake.provenance("down")
    row = prov.filter(pl.col("input") == "up").row(0, named=True)
    assert row["input_version"] == up_version and row["run_id"] == result.run_id
    # the adapter's own view of the commits carries the same provenance
    from lakehouse.storage import get_format

    ref = lake.table_ref(lake._spec("down"))
    commits = get_format(ref.format).commits(ref)
    assert commits[-1]["provenance"]["run_id"] == result.run_id
    assert commits[-1]["version"] == _version(lake, "down")


def test_staleness_after_upstream_rewrites(cell: Cell) -> None:
    code = {"up": "1"}
    data = {"x": 1}

    def make_up() -> pl.DataFrame:
        return pl.DataFrame({"x": [data["x"]]})

    def assets() -> list[Any]:
        up = lh.asset(name="up", code_version=code["up"])(lambda: make_up())

        @lh.asset(code_version="1")
        def down(up: pl.DataFrame) -> pl.DataFrame:
            return up.with_columns(y=pl.col("x") * 10)

        return [up, down]

    lake = cell.lake(assets())
    lake.materialize()
    assert lake.plan().height == 0
    # an upstream rewrite by another run (same code): the downstream is stale
    data["x"] = 2
    lake.materialize("up", force=True)
    assert _plan_assets(lake) == {"down": "upstream_changed"}
    lake.materialize()
    assert lake.plan().height == 0
    assert cell.read_independent(lake, "down")["y"].to_list() == [20]
    # a code change upstream: both run, the downstream because its upstream is stale
    code["up"] = "2"
    data["x"] = 3
    lake2 = cell.lake(assets())
    assert set(_plan_assets(lake2)) == {"up", "down"}
    lake2.materialize()
    assert cell.read_independent(lake2, "down")["y"].to_list() == [30]
    down_inputs = json.loads(cell.commit_properties(lake2, "down")[-1]["lakehouse.inputs"])
    assert down_inputs[0][1] == _version(lake2, "up")


# ------------------------------------------------------------- formats feeding formats


def test_formats_feed_each_other(cell: Cell) -> None:
    other = "iceberg" if cell.format == "delta" else "delta"
    data = {"x": [1, 2, 3]}

    up = lh.asset(name="up", format=cell.format, code_version="1")(
        lambda: pl.DataFrame({"x": data["x"]})
    )

    @lh.asset(format=other, code_version="1")
    def mid(up: pl.LazyFrame) -> pl.LazyFrame:
        return up.select(total=pl.col("x").sum())

    @lh.asset(format=cell.format, engine="duckdb", code_version="1")
    def top(mid: Any) -> str:
        return "select total * 2 as doubled from mid"

    lake = cell.lake([up, mid, top])
    lake.materialize()
    assert lake.table("mid").format == other and lake.table("top").format == cell.format
    assert cell.read_independent(lake, "top")["doubled"].to_list() == [12]
    data["x"] = [5]
    lake.materialize("up", force=True)
    assert _plan_assets(lake) == {"mid": "upstream_changed", "top": "upstream_stale"}
    lake.materialize()
    assert cell.read_independent(lake, "top")["doubled"].to_list() == [10]
    mid_inputs = json.loads(cell.commit_properties(lake, "mid")[-1]["lakehouse.inputs"])
    assert mid_inputs[0][:2] == ["up", _version(lake, "up")]


# ------------------------------------------------------------------ concurrent appends

WRITER = r"""
import json, os, sys
import pyarrow as pa
import lakehouse as lh
from lakehouse.assets import WriteMode
from lakehouse.storage import get_format

cfg = json.loads(sys.argv[1])
asset = lh.asset(name="log", write="append", code_version="1")(lambda: None)
lake = lh.Lakehouse(cfg["warehouse"], assets=[asset], format=cfg["format"],
                    storage_options=cfg["so"] or None, local_dir=cfg["local_dir"])
ref = lake.table_ref(lake._spec("log"))
fmt = get_format(ref.format)
who = cfg["who"]
for i in range(cfg["n"]):
    rows = pa.table({"writer": [who] * 3, "i": [i] * 3})
    fmt.write(ref, rows, mode=WriteMode("append"), predicate=None, partition_by=[],
              schema_mode="strict", provenance={"run_id": f"{who}-{i}", "step_id": f"{who}-{i}", "asset": "log"})
print("done", who)
"""


@pytest.mark.slow
def test_two_processes_append_without_losing_commits(cell: Cell) -> None:
    import pyarrow as pa

    from lakehouse.assets import WriteMode
    from lakehouse.storage import get_format

    asset = lh.asset(name="log", write="append", code_version="1")(lambda: None)
    lake = cell.lake([asset])
    ref = lake.table_ref(lake._spec("log"))
    fmt = get_format(ref.format)
    fmt.write(
        ref,
        pa.table({"writer": ["seed"], "i": [0]}),
        mode=WriteMode("append"),
        predicate=None,
        partition_by=[],
        schema_mode="strict",
        provenance={"run_id": "seed", "step_id": "seed"},
    )
    n = 6
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = []
    for who in ("a", "b"):
        cfg = {
            "warehouse": cell.warehouse,
            "format": cell.format,
            "so": cell.storage_options,
            "local_dir": cell.local_dir,
            "who": who,
            "n": n,
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", WRITER, json.dumps(cfg)],
                env=env,
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    for p in procs:
        _out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
    got = cell.read_independent(lake, "log")
    assert got.height == 1 + 2 * n * 3
    counts = got.group_by("writer").len().sort("writer")
    assert counts.to_dicts() == [
        {"writer": "a", "len": n * 3},
        {"writer": "b", "len": n * 3},
        {"writer": "seed", "len": 1},
    ]
    steps = [c["provenance"].get("step_id") for c in fmt.commits(ref)]
    assert sorted(s for s in steps if s) == sorted(
        ["seed"] + [f"{w}-{i}" for w in "ab" for i in range(n)]
    )
