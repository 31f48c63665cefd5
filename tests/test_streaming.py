"""Assets larger than memory (issue: scale out): a LazyFrame, a DuckDB relation or a
RecordBatchReader returned by an asset is written batch by batch (partition validation,
staging, checks and publish included), never collected whole.

These are functional bounds with wide margins (a collected result needs at least the
whole result in memory), not performance targets; ``benchmarks/bench_memory.py`` measures
peak memory against Polars alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest

import lakehouse as lh

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("with_checks", [True, False], ids=["staged-and-audited", "direct-write"])
def test_a_record_batch_reader_is_written_without_holding_its_batches(tmp_path: Path, with_checks: bool) -> None:
    """Live Arrow memory while the write pulls batches stays far below the whole output."""
    import numpy as np
    import pyarrow.compute as pc

    batches, rows = 64, 400_000  # 64 x 12.8 MB = 820 MB in total
    schema = pa.schema([("day", pa.date32()), ("a", pa.int64()), ("b", pa.int64()), ("c", pa.float64())])
    live: list[int] = []
    day = np.datetime64("2024-01-01")

    def generate() -> Iterator[pa.RecordBatch]:
        rng = np.random.default_rng(7)
        for _ in range(batches):
            live.append(pa.total_allocated_bytes())
            # pc.* allocates from Arrow's memory pool, so the pool counts every live batch
            yield pa.record_batch([
                pa.array(np.full(rows, day)).cast(pa.date32()),
                pc.multiply(pa.array(rng.integers(0, 2**62, rows)), 1),
                pc.multiply(pa.array(rng.integers(0, 2**62, rows)), 1),
                pc.multiply(pa.array(rng.random(rows)), 1.0),
            ], schema=schema)

    @lh.asset(partitions=lh.daily(start="2024-01-01", end="2024-01-03"), partition_column="day",
              checks=[lh.not_null("a"), lh.row_count(min=1)] if with_checks else None)
    def wide(ctx: lh.Context) -> pa.RecordBatchReader:
        return pa.RecordBatchReader.from_batches(schema, generate())

    lake = lh.Lakehouse(tmp_path / "lake", assets=[wide])
    before = pa.total_allocated_bytes()
    result = lake.materialize(partitions="2024-01-01")
    assert result.ok and result.assets["rows"].to_list() == [batches * rows]
    assert len(live) == batches
    total = batches * rows * 32
    peak = max(live) - before
    assert peak < 0.4 * total, f"{peak / 2**20:.0f} MiB of {total / 2**20:.0f} MiB were held at once"
    assert lake.scan("wide").select(pl.len()).collect().item() == batches * rows


RUNNER = """
import json, resource, sys, tempfile
import polars as pl
import lakehouse as lh

kind, source, rows, with_checks = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "checks"

@lh.asset(engine="polars" if kind == "lazyframe" else "duckdb",
          checks=[lh.not_null("i"), lh.row_count(min=1)] if with_checks else None)
def big():
    if kind == "lazyframe":
        return pl.scan_parquet(source).with_columns(k=pl.col("i") % 10)
    return f"select i, i * 7 as j, hash(i) / 1e19 as r, i % 10 as k from range({rows}) t(i)"

base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
result = lh.Lakehouse(tempfile.mkdtemp(), assets=[big]).materialize()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"rows": result.assets["rows"].item(), "growth": peak - base}))
"""

ROWS = 60_000_000  # i, j, r, k: 32 bytes a row, 1.8 GiB when collected


@pytest.fixture(scope="module")
def big_parquet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import duckdb

    path = tmp_path_factory.mktemp("big") / "big.parquet"
    duckdb.sql(f"copy (select i, i * 7 as j, hash(i) / 1e19 as r from range({ROWS}) t(i)) "
               f"to '{path}' (format parquet, row_group_size 500000)")
    return path


@pytest.mark.parametrize(("kind", "checks"), [("lazyframe", "checks"), ("lazyframe", "none"),
                                              ("duckdb_relation", "none")])
def test_lazy_results_stream_into_the_table(tmp_path: Path, big_parquet: Path, kind: str, checks: str) -> None:
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(RUNNER))
    proc = subprocess.run([sys.executable, str(script), kind, str(big_parquet), str(ROWS), checks], capture_output=True,
                          text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["rows"] == ROWS
    collected = ROWS * 32
    assert out["growth"] < 0.5 * collected, (
        f"peak memory grew by {out['growth'] / 2**20:.0f} MiB for a {collected / 2**20:.0f} MiB result")
