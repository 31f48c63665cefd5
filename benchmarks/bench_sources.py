"""Sources benchmark: what observing costs, and what an incremental load saves.

Every measurement runs in a fresh process; baselines run in the same invocation.

    python benchmarks/bench_sources.py [--files 2000] [--batches 200]

1. ``lake.observe()`` of a files source of N local files, first time (records the listing)
   and again with nothing changed (replays the stored listing, lists, compares), against a
   plain ``fsspec`` listing with details of the same glob (warm processes). Target:
   unchanged observe <= 4x the plain listing (it lists, replays the stored listing, hashes).
2. A no-op ``materialize()`` (nothing changed) of source -> asset, against a no-op
   ``materialize()`` of root asset -> asset: the cost of polling a source from cron.
   Target: <= 10 ms with a source.
3. After B landed batches (files of 10,000 rows), one more lands: ``materialize()`` of an
   append-only ``since_last_run`` asset against the same asset reading everything, and
   against plain Polars (read the new file, append it with ``write_delta``).
   Targets: incremental <= plain + 50 ms (observe, plan, catalog, write-audit-publish);
   the full re-read >= 5x slower than the incremental load at B = 200.

The targets are this project's own (the issue sets none).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from _common import compile_package

ROOT = Path(__file__).resolve().parents[1]

MAKE_FILES = textwrap.dedent("""
    import sys, polars as pl
    from pathlib import Path
    root, n, rows = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    root.mkdir(parents=True, exist_ok=True)
    start = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    for i in range(start, start + n):
        pl.DataFrame({"id": pl.arange(i * rows, (i + 1) * rows, eager=True),
                      "v": pl.arange(0, rows, eager=True) * 0.5}).write_parquet(root / f"f{i:06}.parquet")
""")

PLAIN_LIST = textwrap.dedent("""
    import sys, time, json, fsspec
    fs = fsspec.filesystem("file")
    fs.glob(sys.argv[1] + "/*.parquet", detail=True)   # warm
    times = []
    for _ in range(5):
        t = time.perf_counter(); found = fs.glob(sys.argv[1] + "/*.parquet", detail=True)
        times.append(time.perf_counter() - t)
    print(json.dumps({"seconds": sorted(times)[2], "files": len(found)}))
""")

OBSERVE = textwrap.dedent("""
    import sys, time, json
    import lakehouse as lh
    src = lh.files(sys.argv[1] + "/*.parquet", name="landing")
    lake = lh.Lakehouse(sys.argv[2], assets=[src])
    lake.catalog
    t = time.perf_counter(); frame = lake.observe(); first = time.perf_counter() - t
    times = []
    for _ in range(5):
        t = time.perf_counter(); frame = lake.observe(); times.append(time.perf_counter() - t)
    print(json.dumps({"first": first, "again": sorted(times)[2], "changed": bool(frame["changed"].any())}))
""")

NOOP = textwrap.dedent("""
    import sys, time, json
    import polars as pl
    import lakehouse as lh
    if sys.argv[3] == "source":
        up = lh.files(sys.argv[1] + "/*.parquet", name="up")
    else:
        @lh.asset(name="up", code_version="1")
        def up() -> pl.DataFrame:
            return pl.DataFrame({"id": [1]})
    @lh.asset(code_version="1")
    def down(up: pl.LazyFrame) -> pl.LazyFrame:
        return up.select("id")
    lake = lh.Lakehouse(sys.argv[2], assets=[up, down])
    runs = int(sys.argv[4])
    if runs == 0:
        lake.materialize(); print(json.dumps({})); raise SystemExit
    lake.materialize()   # warm: catalog open, fingerprints
    t = time.perf_counter()
    for _ in range(runs):
        r = lake.materialize()
    s = (time.perf_counter() - t) / runs
    assert not [x for x in r.rows if x["status"] == "materialized"], r.rows
    print(json.dumps({"seconds": s}))
""")

LOAD = textwrap.dedent("""
    import sys, time, json
    import polars as pl
    import lakehouse as lh
    src = lh.files(sys.argv[1] + "/*.parquet", name="landing")
    if sys.argv[3] == "incremental":
        @lh.asset(write="append", ins={"landing": lh.upstream("landing", since_last_run=True)}, code_version="1")
        def loaded(landing: pl.LazyFrame) -> pl.LazyFrame:
            return landing
    else:
        @lh.asset(code_version="1")
        def loaded(landing: pl.LazyFrame) -> pl.LazyFrame:
            return landing
    lake = lh.Lakehouse(sys.argv[2], assets=[src, loaded])
    t = time.perf_counter(); lake.materialize(); cold = time.perf_counter() - t   # all B batches
    rows, n = int(sys.argv[4]), int(sys.argv[5])
    times = []
    for k in range(5):   # one more file at a time; the median of five
        i = n + k
        pl.DataFrame({"id": pl.arange(i * rows, (i + 1) * rows, eager=True),
                      "v": pl.arange(0, rows, eager=True) * 0.5}).write_parquet(sys.argv[1] + f"/f{i:06}.parquet")
        t = time.perf_counter(); lake.materialize(); times.append(time.perf_counter() - t)
    print(json.dumps({"seconds": sorted(times)[2], "cold": cold, "height": lake.read("loaded").height}))
""")

PLAIN_APPEND = textwrap.dedent("""
    import sys, time, json, polars as pl
    pl.read_parquet(sys.argv[1]).write_delta(sys.argv[3], mode="append")   # warm: imports, first table
    times = []
    for _ in range(5):
        t = time.perf_counter()
        pl.read_parquet(sys.argv[2]).write_delta(sys.argv[3], mode="append")
        times.append(time.perf_counter() - t)
    print(json.dumps({"seconds": sorted(times)[2]}))
""")


def run(code: str, *args: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT
    )
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    lines = out.stdout.strip().splitlines()
    return json.loads(lines[-1]) if lines else {}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--rows", type=int, default=10_000)
    args = ap.parse_args()
    compile_package()
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        # 1. observing
        land = t / "many"
        run(MAKE_FILES, str(land), str(args.files), "10")
        plain = run(PLAIN_LIST, str(land))
        obs = run(OBSERVE, str(land), str(t / "obs"))
        print(
            f"observe {args.files} local files: plain fsspec listing {plain['seconds'] * 1000:.0f} ms, "
            f"first observe {obs['first'] * 1000:.0f} ms (cold process, records the listing), unchanged "
            f"observe {obs['again'] * 1000:.0f} ms (changed={obs['changed']}), "
            f"ratio {obs['again'] / plain['seconds']:.2f}x (target <= 4x)"
        )

        # 2. polling: no-op materialize with and without a source
        small = t / "small"
        run(MAKE_FILES, str(small), "5", "10")
        run(NOOP, str(small), str(t / "noop_src"), "source", "0")
        run(NOOP, str(small), str(t / "noop_root"), "root", "0")
        src = run(NOOP, str(small), str(t / "noop_src"), "source", "20")
        root = run(NOOP, str(small), str(t / "noop_root"), "root", "20")
        print(
            f"no-op materialize: root -> asset {root['seconds'] * 1000:.1f} ms, files source (5 files) -> asset "
            f"{src['seconds'] * 1000:.1f} ms (target <= 10 ms), ratio {src['seconds'] / root['seconds']:.2f}x"
        )

        # 3. incremental load vs full re-read vs plain Polars (warm processes)
        batches = t / "batches"
        run(MAKE_FILES, str(batches), str(args.batches), str(args.rows))
        run(MAKE_FILES, str(t / "plain_files"), "2", str(args.rows))
        plain_append = run(
            PLAIN_APPEND,
            str(t / "plain_files" / "f000000.parquet"),
            str(t / "plain_files" / "f000001.parquet"),
            str(t / "plain_delta"),
        )
        inc = run(
            LOAD, str(batches), str(t / "inc"), "incremental", str(args.rows), str(args.batches)
        )
        full = run(
            LOAD, str(batches), str(t / "full"), "full", str(args.rows), str(args.batches + 5)
        )
        assert inc["height"] == (args.batches + 5) * args.rows, inc
        print(
            f"one new file of {args.rows:,} rows after {args.batches} batches: plain read+append "
            f"{plain_append['seconds'] * 1000:.0f} ms, incremental materialize {inc['seconds'] * 1000:.0f} ms "
            f"(+{(inc['seconds'] - plain_append['seconds']) * 1000:.0f} ms over plain, target <= +50 ms; observing "
            f"{args.batches + 1} files and the catalog), full re-read materialize {full['seconds'] * 1000:.0f} ms "
            f"({full['seconds'] / inc['seconds']:.1f}x the incremental one, target >= 5x); first load of all batches "
            f"{inc['cold']:.2f} s (cold process)"
        )


if __name__ == "__main__":
    main()
