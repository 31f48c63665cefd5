"""Two to four processes materializing overlapping selections of one lakehouse at once,
with the catalog on SQLite and on PostgreSQL.

Every asset function logs when it starts and ends computing which partitions; the test
checks that no partition was computed by two processes at the same time (leases), that
every run succeeded, that no catalog record was lost (each table commit is recorded once),
that the append-mode asset was appended once, and that no "database is locked" error
reached anyone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import json, os, sys, time
import polars as pl
import lakehouse as lh

FMT = os.environ["FMT"]
TRACE = os.environ["TRACE"]
SELECT = os.environ["SELECT"] or None

def trace(event, asset, start, end):
    with open(TRACE, "a") as f:
        f.write(json.dumps([event, os.getpid(), asset, start, end, time.time()]) + "\\n")

def computing(asset, ctx=None):
    if ctx is not None and ctx.partition is not None:
        r = ctx.partition.range.ranges
        return asset, r[0][0], r[-1][1]
    return asset, 0, 1

class Span:
    def __init__(self, *key): self.key = key
    def __enter__(self): trace("start", *self.key); time.sleep(0.15)
    def __exit__(self, *exc): trace("end", *self.key)

@lh.asset(code_version="1", format=FMT)
def c_src(ctx: lh.Context) -> pl.DataFrame:
    with Span(*computing("c_src")):
        return pl.DataFrame({"id": list(range(50))})

@lh.asset(partitions=lh.daily(start="2024-01-01", end="2024-01-21"), partition_column="day",
          max_partitions_per_run=5, code_version="1", format=FMT)
def c_days(ctx: lh.Context) -> pl.DataFrame:
    with Span(*computing("c_days", ctx)):
        days = pl.date_range(ctx.partition.start.date(), ctx.partition.end.date(), closed="left", eager=True)
        return pl.DataFrame({"day": days, "v": [1] * len(days)})

@lh.asset(write="append", code_version="1", format=FMT)
def c_append(c_src: pl.DataFrame, ctx: lh.Context) -> pl.DataFrame:
    with Span(*computing("c_append")):
        return c_src.with_columns(run=pl.lit(ctx.run_id))

@lh.asset(code_version="1", format=FMT)
def c_sum(c_days: pl.LazyFrame, c_append: pl.LazyFrame, ctx: lh.Context) -> pl.DataFrame:
    with Span(*computing("c_sum")):
        return pl.DataFrame({"days": [c_days.select(pl.len()).collect().item()],
                             "appended": [c_append.select(pl.len()).collect().item()]})

lake = lh.Lakehouse(os.environ["WH"], assets=[c_src, c_days, c_append, c_sum], catalog=os.environ["CATALOG"] or None,
                    executor=os.environ.get("EXECUTOR") or None)
go = float(os.environ["GO"])
time.sleep(max(0.0, go - time.time()))
res = lake.materialize(SELECT, raise_on_error=False)
print(json.dumps({"ok": res.ok, "rows": [(r["asset"], r["partitions"], r["status"], r["error"]) for r in res.rows]}))
"""

# every selection holds its upstreams (or is a root), so each run can succeed on its own
SCENARIOS = {
    "two": ["+c_sum", "+c_sum"],
    "three": ["c_days", "+c_append", "+c_sum"],
    "four": ["c_days", "+c_sum", "+c_append", "+c_sum"],
}


def _run_all(
    tmp: Path, catalog: str, selections: list[str], fmt: str = "delta", executor: str = ""
) -> list[subprocess.CompletedProcess[str]]:
    script = tmp / "conc.py"
    script.write_text(SCRIPT)
    go = time.time() + 4.0  # every process imports first, then all start together
    procs = []
    for i, sel in enumerate(selections):
        env = {
            **os.environ,
            "FMT": fmt,
            "TRACE": str(tmp / "trace.jsonl"),
            "SELECT": sel,
            "WH": str(tmp / "lake"),
            "CATALOG": catalog,
            "GO": str(go),
            "PYTHONPATH": str(ROOT),
            "EXECUTOR": executor if i % 2 else "",
            "LAKEHOUSE_LEASE_SECONDS": "20",
        }
        env.pop("LAKEHOUSE_FAULT", None)
        procs.append(
            subprocess.Popen(
                [sys.executable, str(script)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=600)
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return out


def _overlaps(trace: Path) -> list[Any]:
    """Pairs of computations of overlapping partitions by different processes at the same time."""
    spans: dict[tuple[int, str, int, int], list[float]] = {}
    for line in trace.read_text().splitlines():
        event, pid, asset, start, end, t = json.loads(line)
        spans.setdefault((pid, asset, start, end), []).append(t)
    items = [(k, min(v), max(v)) for k, v in spans.items()]
    bad = []
    for i, (ka, a0, a1) in enumerate(items):
        for kb, b0, b1 in items[i + 1 :]:
            same_asset = ka[1] == kb[1] and ka[0] != kb[0]
            if same_asset and ka[2] < kb[3] and kb[2] < ka[3] and a0 < b1 and b0 < a1:
                bad.append((ka, kb))
    return bad


def _check(
    tmp: Path, catalog: str, procs: list[subprocess.CompletedProcess[str]], fmt: str = "delta"
) -> None:
    import lakehouse as lh

    for p in procs:
        assert p.returncode == 0, p.stderr[-4000:]
        assert "database is locked" not in p.stderr.lower()
        res = json.loads(p.stdout.strip().splitlines()[-1])
        assert res["ok"], res
        assert {r[2] for r in res["rows"]} <= {"materialized", "skipped"}, res
    assert _overlaps(tmp / "trace.jsonl") == []

    # the final state, read back through a fresh lakehouse in this process
    @lh.asset(name="c_src", code_version="1", format=fmt)
    def c_src() -> None: ...

    @lh.asset(
        name="c_days",
        partitions=lh.daily(start="2024-01-01", end="2024-01-21"),
        partition_column="day",
        code_version="1",
        format=fmt,
    )
    def c_days() -> None: ...

    @lh.asset(name="c_append", write="append", code_version="1", format=fmt)
    def c_append(c_src: Any) -> None: ...

    @lh.asset(name="c_sum", code_version="1", format=fmt)
    def c_sum(c_days: Any, c_append: Any) -> None: ...

    lake = lh.Lakehouse(
        tmp / "lake", assets=[c_src, c_days, c_append, c_sum], catalog=catalog or None
    )
    days = lake.read("c_days")
    assert days.height == 20 and days["day"].n_unique() == 20  # nothing lost, nothing duplicated
    appended = lake.read("c_append")
    assert appended.height == 50 and appended["run"].n_unique() == 1  # appended exactly once
    assert lake.read("c_sum").rows() == [(20, 50)]
    assert not lake.status()["stale"].any()
    # no lost catalog record: every lakehouse commit of every table is recorded exactly once
    from lakehouse.storage import get_format

    for name in ("c_src", "c_days", "c_append", "c_sum"):
        ref = lake.table_ref(lake.graph.specs[name])
        commits = [c for c in get_format(ref.format).commits(ref) if c["provenance"].get("run_id")]
        recorded = [
            m
            for m in lake.catalog.materializations(name)
            if m["status"] in ("materialized", "adopted")
        ]
        assert sorted(str(c["version"]) for c in commits) == sorted(
            str(m["version"]) for m in {(m["version"], m["pstart"]): m for m in recorded}.values()
        ), name
    assert lake.catalog.unfinished_runs() == [] and lake.catalog.leases() == []
    lake.close()


@pytest.mark.slow
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_concurrent_runs_on_sqlite(tmp_path: Path, scenario: str) -> None:
    procs = _run_all(tmp_path, "", SCENARIOS[scenario], executor="threads")
    _check(tmp_path, "", procs)


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_concurrent_runs_on_postgres(tmp_path: Path, postgres_db_url: str, scenario: str) -> None:
    procs = _run_all(tmp_path, postgres_db_url, SCENARIOS[scenario], executor="threads")
    _check(tmp_path, postgres_db_url, procs)


@pytest.mark.slow
@pytest.mark.postgres
def test_concurrent_runs_of_iceberg_tables_on_postgres(
    tmp_path: Path, postgres_db_url: str
) -> None:
    procs = _run_all(tmp_path, postgres_db_url, SCENARIOS["three"], fmt="iceberg")
    _check(tmp_path, postgres_db_url, procs, fmt="iceberg")


@pytest.mark.slow
def test_concurrent_runs_of_iceberg_tables_on_sqlite(tmp_path: Path) -> None:
    procs = _run_all(tmp_path, "", SCENARIOS["three"], fmt="iceberg")
    _check(tmp_path, "", procs, fmt="iceberg")
