"""In-process executors: threads, scheduling as upstreams complete, retries with backoff,
the first write of a new table, and errors that name the asset, partition and worker
(issue: scale out). The Dask executor has its own module, ``test_dask.py``."""

from __future__ import annotations

import importlib.util
import itertools
import textwrap
import types
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import lakehouse as lh
from lakehouse.errors import MaterializeError
from lakehouse.execution.local import ThreadExecutor
from lakehouse.execution.step import retryable


def build_module(tmp_path: Path, source: str, name: str) -> types.ModuleType:
    """Assets from source in a real module file (not on sys.path, as in a user project)."""
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


CHAINS = """
import time
import polars as pl
import lakehouse as lh

def stamp(name, seconds):
    t0 = time.time()
    time.sleep(seconds)
    return pl.DataFrame({"name": [name], "t0": [t0], "t1": [time.time()]})

@lh.asset
def slow_root():
    return stamp("slow_root", 1.5)

@lh.asset
def slow_child(slow_root: pl.DataFrame):
    return stamp("slow_child", 0.05)

@lh.asset
def fast_root():
    return stamp("fast_root", 0.05)

@lh.asset
def fast_child(fast_root: pl.DataFrame):
    return stamp("fast_child", 0.05)
"""


def stamps(lake: lh.Lakehouse, *names: str) -> dict[str, dict[str, float]]:
    return {n: lake.read(n).row(0, named=True) for n in names}


def test_independent_chains_run_as_upstreams_complete_not_level_by_level(tmp_path: Path) -> None:
    mod = build_module(tmp_path, CHAINS, "chains")
    lake = lh.Lakehouse(tmp_path / "lake", assets=mod, executor="threads", max_workers=2)
    assert lake.materialize().ok
    s = stamps(lake, "slow_root", "slow_child", "fast_root", "fast_child")
    # fast_child is on the second level; level by level it would start after slow_root ended
    assert s["fast_child"]["t0"] < s["slow_root"]["t1"]
    assert s["fast_child"]["t1"] < s["slow_root"]["t1"]
    assert s["slow_child"]["t0"] >= s["slow_root"]["t1"]


def test_serial_executor_runs_one_step_at_a_time(tmp_path: Path) -> None:
    mod = build_module(tmp_path, CHAINS, "chains_serial")
    lake = lh.Lakehouse(tmp_path / "lake", assets=mod)
    assert lake.materialize().ok
    s = sorted(
        stamps(lake, "slow_root", "slow_child", "fast_root", "fast_child").values(),
        key=lambda r: r["t0"],
    )
    for a, b in itertools.pairwise(s):
        assert a["t1"] <= b["t0"]


def test_threads_setting_builds_a_thread_pool_of_max_workers(tmp_path: Path) -> None:
    from lakehouse.execution.coordinator import make_executor

    lake = lh.Lakehouse(tmp_path / "lake", assets=[], executor="threads", max_workers=3)
    ex, owned = make_executor(lake)
    try:
        assert isinstance(ex, ThreadExecutor) and owned
        assert ex.name == "threads" and ex.max_parallel == 3
    finally:
        ex.close()


PIPELINE = """
import polars as pl
import lakehouse as lh

@lh.asset(partitions=lh.daily(start="2024-01-01", end="2024-01-13"), partition_column="day",
          max_partitions_per_run=2)
def events(ctx: lh.Context) -> pl.DataFrame:
    days = pl.date_range(ctx.partition.start, ctx.partition.end, closed="left", eager=True)
    n = len(days)
    return pl.DataFrame({"day": days.to_list() * 3,
                         "user": [u for u in range(3) for _ in range(n)],
                         "clicks": [d.day * (u + 1) for u in range(3) for d in days.to_list()]})

@lh.asset
def per_user(events: pl.LazyFrame) -> pl.LazyFrame:
    return events.group_by("user").agg(pl.col("clicks").sum()).sort("user")

@lh.asset(engine="duckdb")
def busiest_days(events):
    return "select day, sum(clicks) as clicks from events group by day order by clicks desc, day limit 3"

@lh.asset(engine="duckdb", partitions=lh.daily(start="2024-01-01", end="2024-01-13"), partition_column="day",
          max_partitions_per_run=3)
def daily_total(events):
    return "select day, sum(clicks)::BIGINT as clicks from events group by day"
"""


def read_all(lake: lh.Lakehouse, names: list[str]) -> dict[str, pl.DataFrame]:
    return {n: lake.read(n).sort(lake.read(n).columns) for n in names}


def test_threads_results_equal_serial(tmp_path: Path) -> None:
    names = ["events", "per_user", "busiest_days", "daily_total"]
    mod = build_module(tmp_path, PIPELINE, "pipeline_threads")
    serial = lh.Lakehouse(tmp_path / "serial", assets=mod)
    threads = lh.Lakehouse(tmp_path / "threads", assets=mod, executor="threads", max_workers=4)
    rs = serial.materialize(partitions="all")
    rt = threads.materialize(partitions="all")
    assert rs.ok and rt.ok
    assert sorted(rs.materialized) == sorted(rt.materialized)
    a, b = read_all(serial, names), read_all(threads, names)
    for n in names:
        assert a[n].equals(b[n]), n
    assert a["events"].height == 12 * 3
    assert serial.plan().height == 0 and threads.plan().height == 0


NEW_TABLE = """
import time
import polars as pl
import lakehouse as lh

@lh.asset(partitions=lh.daily(start="2024-01-01", end="2024-01-07"), partition_column="day",
          max_partitions_per_run=1, format={fmt!r})
def stamped(ctx: lh.Context) -> pl.DataFrame:
    t0 = time.time()
    time.sleep(0.3)
    return pl.DataFrame({{"day": [ctx.partition.start], "t0": [t0], "t1": [time.time()]}})

@lh.asset(partitions=lh.daily(start="2024-01-01", end="2024-01-07"), partition_column="day",
          max_partitions_per_run=1, format={fmt!r})
def streamed(ctx: lh.Context) -> pl.LazyFrame:  # a stream: written without collecting it
    return pl.LazyFrame({{"day": [ctx.partition.start] * 100, "n": list(range(100))}})

@lh.asset(partitions=lh.daily(start="2024-01-01", end="2024-01-07"), partition_column="day",
          max_partitions_per_run=1, write="append", format={fmt!r})
def appended(ctx: lh.Context) -> pl.DataFrame:
    return pl.DataFrame({{"day": [ctx.partition.start], "run": [ctx.run_id]}})
"""


@pytest.mark.parametrize("fmt", ["delta", "iceberg"])
def test_chunks_of_a_new_table_run_at_once_and_all_commit(tmp_path: Path, fmt: str) -> None:
    """Every chunk of a new table starts at once (none waits for the one that creates
    the table): the writers that lose the race to create it commit into it."""
    mod = build_module(tmp_path, NEW_TABLE.format(fmt=fmt), f"new_table_{fmt}")
    lake = lh.Lakehouse(tmp_path / "lake", assets=mod, executor="threads", max_workers=6)
    result = lake.materialize(partitions="all")
    assert result.ok, result.assets
    rows = lake.read("stamped").sort("day").rows(named=True)
    assert [r["day"].day for r in rows] == [1, 2, 3, 4, 5, 6]
    first = min(rows, key=lambda r: r["t1"])
    assert any(r["t0"] < first["t1"] for r in rows if r is not first)  # overlapped its create
    streamed = lake.read("streamed")
    assert streamed.height == 600 and streamed.group_by("day").len()["len"].to_list() == [100] * 6
    assert lake.read("appended").height == 6
    assert lake.plan().height == 0
    # the catalog's versions of every chunk are commits of the table
    history = {str(v) for v in lake.history("stamped")["version"].to_list()}
    state = lake.catalog.state(["stamped"])["stamped"]
    assert {r.version for r in state} <= history

    # the table exists now: every chunk may run at once, and nothing is lost or duplicated
    assert lake.materialize(partitions="all", force=True).ok
    rows = lake.read("stamped").sort("day").rows(named=True)
    assert [r["day"].day for r in rows] == [1, 2, 3, 4, 5, 6]
    assert any(a["t0"] < b["t1"] and b["t0"] < a["t1"] for a in rows for b in rows if a is not b)
    assert lake.read("streamed").height == 600 and lake.read("appended").height == 12


RETRIES = """
import time
from pathlib import Path
from typing import Any
import polars as pl
import lakehouse as lh

LOG = Path({log!r})

def attempt(name):
    with LOG.open("a") as f:
        f.write(f"{{name}} {{time.time()}}\\n")
    return sum(1 for line in LOG.read_text().splitlines() if line.split()[0] == name)

@lh.asset(retries=2)
def conflicted():
    n = attempt("conflicted")
    if n <= 2:
        raise lh.CommitConflictError("a concurrent writer committed first", asset="conflicted")
    return pl.DataFrame({{"attempts": [n]}})

@lh.asset(retries=1)
def timed_out():
    n = attempt("timed_out")
    if n == 1:
        raise TimeoutError("the object store did not answer in 30 s")
    return pl.DataFrame({{"attempts": [n]}})

@lh.asset(retries=3)
def bad_data():
    attempt("bad_data")
    raise ValueError("column 'amount' has text in it")

@lh.asset(retries=1)
def always_conflicts():
    attempt("always_conflicts")
    raise lh.CommitConflictError("a concurrent writer committed first", asset="always_conflicts")

@lh.asset
def quick_root():
    attempt("quick_root")
    return pl.DataFrame({{"x": [1]}})

@lh.asset
def quick_child(quick_root: pl.DataFrame):
    attempt("quick_child")
    return quick_root
"""


def attempts(log: Path) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for line in log.read_text().splitlines():
        name, at = line.split()
        out.setdefault(name, []).append(float(at))
    return out


def test_retries_only_retryable_errors_with_backoff(tmp_path: Path) -> None:
    log = tmp_path / "attempts.log"
    mod = build_module(tmp_path, RETRIES.format(log=str(log)), "retries")
    lake = lh.Lakehouse(tmp_path / "lake", assets=mod)
    result = lake.materialize(raise_on_error=False)
    status = dict(zip(result.assets["asset"], result.assets["status"], strict=True))
    assert status == {
        "conflicted": "materialized",
        "timed_out": "materialized",
        "bad_data": "failed",
        "always_conflicts": "failed",
        "quick_root": "materialized",
        "quick_child": "materialized",
    }
    seen = attempts(log)
    assert len(seen["conflicted"]) == 3 and lake.read("conflicted")["attempts"].to_list() == [3]
    assert len(seen["timed_out"]) == 2
    assert len(seen["bad_data"]) == 1  # not retryable: retries=3 does not apply
    assert len(seen["always_conflicts"]) == 2  # one try plus retries=1
    gaps = [b - a for a, b in itertools.pairwise(seen["conflicted"])]
    assert gaps[0] >= 0.45 and gaps[1] >= 0.95  # exponential backoff: 0.5 s, then 1 s
    # the scheduler kept running other steps while a retry waited for its backoff
    assert seen["quick_child"][0] < seen["conflicted"][1]
    assert "CommitConflictError" not in result.failures["bad_data"]
    assert "column 'amount' has text in it" in result.failures["bad_data"]


def test_retryable_errors() -> None:
    assert retryable(lh.CommitConflictError("x"))
    assert retryable(TimeoutError("x"))
    assert retryable(ConnectionResetError("x"))
    wrapped = lh.StorageError("cannot write")
    wrapped.__cause__ = OSError("Generic S3 error: operation timed out")
    assert retryable(wrapped)
    assert not retryable(lh.StorageError("cannot write: access denied"))
    assert not retryable(ValueError("bad"))
    assert not retryable(lh.PartitionError("outside"))


FAILING = """
import polars as pl
import lakehouse as lh

@lh.asset(partitions=lh.daily(start="2024-01-01", end="2024-01-05"), partition_column="day",
          max_partitions_per_run=1)
def sometimes(ctx: lh.Context) -> pl.DataFrame:
    if ctx.partition.key == "2024-01-03":
        raise ValueError("the feed for this day is empty")
    return pl.DataFrame({"day": [ctx.partition.start], "n": [1]})
"""


def test_error_names_asset_partition_and_worker(tmp_path: Path) -> None:
    import os
    import socket

    mod = build_module(tmp_path, FAILING, "failing")
    lake = lh.Lakehouse(tmp_path / "lake", assets=mod, executor="threads", max_workers=2)
    with pytest.raises(MaterializeError) as err:
        lake.materialize(partitions="all")
    text = str(err.value)
    assert (
        "sometimes" in text
        and "partition 2024-01-03" in text
        and "the feed for this day is empty" in text
    )
    assert f"worker {socket.gethostname()}:{os.getpid()}" in text
    rows = err.value.result.rows
    assert sorted(r["status"] for r in rows) == [
        "failed",
        "materialized",
        "materialized",
        "materialized",
    ]
    assert lake.read("sometimes").height == 3


@pytest.mark.s3
@pytest.mark.parametrize("fmt", ["delta", "iceberg"])
def test_chunks_of_a_new_table_on_s3(tmp_path: Path, s3_bucket: Any, fmt: str) -> None:
    """The same race on object storage (conditional puts decide which create wins)."""
    import uuid

    mod = build_module(tmp_path, NEW_TABLE.format(fmt=fmt), f"new_table_s3_{fmt}")
    lake = lh.Lakehouse(
        f"{s3_bucket.uri}/new-{uuid.uuid4().hex[:8]}",
        assets=mod,
        storage_options=dict(s3_bucket.storage_options),
        local_dir=str(tmp_path / "state"),
        executor="threads",
        max_workers=6,
    )
    result = lake.materialize(partitions="all")
    assert result.ok, result.assets
    assert [d.day for d in lake.read("stamped").sort("day")["day"].to_list()] == [1, 2, 3, 4, 5, 6]
    assert lake.read("streamed").height == 600 and lake.read("appended").height == 6
    assert lake.plan().height == 0
