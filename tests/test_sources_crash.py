"""Incremental loads survive crashes: a process killed between reading a source and
committing (or between the table commit and the catalog) neither skips nor doubles rows.

Each run is a separate Python process; ``LAKEHOUSE_FAULT=<point>:<asset>`` makes the step
SIGKILL its own process at ``before_write`` (data read, nothing written), ``after_files``
(data files written, not committed) or ``after_commit`` (table committed, catalog not yet
written: the next run adopts the commit, with the consumed position in its provenance).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest

ROOT = Path(__file__).resolve().parents[1]

PROJECT = textwrap.dedent("""
    import os
    import polars as pl
    import lakehouse as lh

    KIND, SRC = os.environ["SRC_KIND"], os.environ["SRC"]
    if KIND == "delta":
        events = lh.delta_table(SRC, name="events")
    elif KIND == "files":
        events = lh.files(SRC + "/*.parquet", name="events")
    else:
        events = lh.sql_table(SRC, "events", cursor="id")

    @lh.asset(write="append", ins={"events": lh.upstream("events", since_last_run=True)})
    def events_log(events: pl.LazyFrame) -> pl.LazyFrame:
        return events.select(pl.col("id").cast(pl.Int64))
""")

RUNNER = textwrap.dedent("""
    import importlib.util, sys
    import lakehouse as lh
    spec = importlib.util.spec_from_file_location("crash_project", sys.argv[1])
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    lake = lh.Lakehouse(sys.argv[2], assets=mod)
    result = lake.materialize()
    print(result.rows)
""")


class Source:
    """A source written by a plain library, outside the lakehouse."""

    def __init__(self, kind: str, root: Path) -> None:
        self.kind = kind
        self.root = root
        self.batch = 0
        if kind == "delta":
            self.uri = str(root / "events_delta")
        elif kind == "files":
            self.uri = str(root / "landing")
            (root / "landing").mkdir()
        else:
            self.uri = f"sqlite:///{root / 'ops.db'}"
            with sqlite3.connect(root / "ops.db") as con:
                con.execute("create table events (id integer primary key, payload text)")

    def add(self, ids: range) -> None:
        self.batch += 1
        if self.kind == "delta":
            from deltalake import write_deltalake

            write_deltalake(self.uri, pa.table({"id": list(ids)}), mode="append")
        elif self.kind == "files":
            pl.DataFrame({"id": list(ids)}).write_parquet(
                self.root / "landing" / f"batch-{self.batch:03}.parquet"
            )
        else:
            with sqlite3.connect(self.root / "ops.db") as con:
                con.executemany("insert into events values (?, ?)", [(i, f"p{i}") for i in ids])


def run(
    project: Path, warehouse: Path, source: Source, fault: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SRC_KIND": source.kind, "SRC": source.uri, "PYTHONPATH": str(ROOT)}
    env.pop("LAKEHOUSE_FAULT", None)
    if fault:
        env["LAKEHOUSE_FAULT"] = f"{fault}:events_log"
    return subprocess.run(
        [sys.executable, "-c", RUNNER, str(project), str(warehouse)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=str(ROOT),
    )


def log_ids(warehouse: Path) -> list[int]:
    from deltalake import DeltaTable

    return sorted(
        DeltaTable(str(warehouse / "events_log")).to_pyarrow_table().column("id").to_pylist()
    )


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["before_write", "after_files", "after_commit"])
@pytest.mark.parametrize("kind", ["delta", "files", "sql"])
def test_crash_between_read_and_commit_loses_and_doubles_nothing(
    tmp_path: Path, kind: str, fault: str
) -> None:
    project = tmp_path / "project.py"
    project.write_text(PROJECT)
    warehouse = tmp_path / "wh"
    source = Source(kind, tmp_path)
    source.add(range(0, 10))
    first = run(project, warehouse, source)
    assert first.returncode == 0, first.stderr
    assert log_ids(warehouse) == list(range(10))

    source.add(range(10, 20))
    source.add(range(20, 30))
    crashed = run(project, warehouse, source, fault=fault)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    committed = fault == "after_commit"
    assert log_ids(warehouse) == list(range(30 if committed else 10))

    source.add(range(30, 40))
    again = run(project, warehouse, source)
    assert again.returncode == 0, again.stderr
    assert log_ids(warehouse) == list(range(40))  # every row exactly once

    quiet = run(project, warehouse, source)  # nothing new: nothing runs, nothing appended
    assert quiet.returncode == 0, quiet.stderr
    assert "'materialized'" not in quiet.stdout
    assert log_ids(warehouse) == list(range(40))
