"""Maintenance benchmark: files read by a full scan before and after ``optimize()``.

    python benchmarks/bench_maintenance.py [--days 365] [--formats delta,iceberg]
                                           [--layouts daily,monthly-append]

For each table format and layout, an asset of 1,000 rows a day is written by ``--days``
``materialize()`` calls, one per day - the small-commit pattern of a daily schedule.
Each step runs in a fresh process:

1. build the table (365 runs); layout ``daily``: 365 daily partitions written once each
   (the issue's table); ``monthly-append``: 12 monthly partitions, one small append a day;
2. count the data files a full scan of the current version reads (the fragments of the
   dataset lakehouse scans) and time the full read (best of three);
3. ``lake.optimize()`` (and check that nothing became stale);
4. count and time again; then ``vacuum(retain="0s")`` and read once more;
5. rewrite one partition (``materialize(partitions=..., force=True)``) on the new layout,
   time it against the same rewrite before ``optimize()`` (step 1's last run), and check
   the row count.

Target: files after / files before <= 0.1. Tiny time partitions are regrouped by
``optimize()``: Iceberg evolves the daily partition spec to monthly (one file per month);
a Delta partition is a folder, so the Delta table is rewritten without Hive partitioning,
rows sorted by the day column (one file: the table is far below delta-rs' 100 MB target).
The Delta row also checks that the relayout keeps single-day writes working: step 5
rewrites one day and reads the table again. With monthly partitions filled by daily
appends Iceberg compacts to one file per month (a ``month`` identity partition is not
coarsened) and Delta's monthly Hive partitions, tiny too, are regrouped into one file.
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

COMMON = textwrap.dedent("""
    import sys, time, json
    from datetime import date, timedelta
    import polars as pl
    import lakehouse as lh
    WH, FMT, DAYS, LAYOUT = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    end = date(2013, 1, 1) + timedelta(days=DAYS)
    TODAY = [date(2013, 1, 1)]  # the day a monthly-append run adds

    def make_rows(d0, d1):
        days = pl.date_range(d0, d1, "1d", closed="left", eager=True)
        n = pl.DataFrame({"n": pl.arange(0, 1000, eager=True)})
        return pl.DataFrame({"day": days}).join(n, how="cross").with_columns(v=pl.col("n") * 2)

    if LAYOUT == "daily":  # 365 daily partitions, each written once
        @lh.asset(partitions=lh.daily(start="2013-01-01", end=end.isoformat()),
                  partition_column="day", code_version="1", format=FMT)
        def events(ctx: lh.Context) -> pl.DataFrame:
            return make_rows(ctx.partition.start.date(), ctx.partition.end.date())
    else:  # monthly partitions (a "month" column), one small append a day
        last = end - timedelta(days=1)
        month_end = date(last.year + (last.month == 12), last.month % 12 + 1, 1)

        @lh.asset(partitions=lh.monthly(start="2013-01-01", end=month_end.isoformat()),
                  partition_column="month", write="append", code_version="1", format=FMT)
        def events(ctx: lh.Context) -> pl.DataFrame:
            d = TODAY[0]
            return make_rows(d, d + timedelta(days=1)).with_columns(month=pl.lit(d.replace(day=1)))

    lake = lh.Lakehouse(WH, assets=[events])

    def files_in_scan():
        from lakehouse.storage import get_format
        ref = lake.table_ref(lake._spec("events"), lake.table("events").version)
        return len(list(get_format(ref.format).dataset(ref).get_fragments()))
""")

BUILD = COMMON + textwrap.dedent("""
    t = time.perf_counter()
    for i in range(DAYS):
        d = date(2013, 1, 1) + timedelta(days=i)
        if LAYOUT == "daily":
            lake.materialize(partitions=d.isoformat())
        else:
            TODAY[0] = d
            lake.materialize(partitions=d.strftime("%Y-%m"), force=True)
    print(json.dumps({"seconds": time.perf_counter() - t}))
""")

COUNT = COMMON + textwrap.dedent("""
    n = files_in_scan()
    secs = []
    for _ in range(3):  # best of three full reads
        t = time.perf_counter(); rows = lake.read("events").height; secs.append(time.perf_counter() - t)
    assert rows == DAYS * 1000, rows
    secs = min(secs)
    print(json.dumps({"files": n, "scan_seconds": secs, "stale": lake.plan().height}))
""")

OPTIMIZE = COMMON + textwrap.dedent("""
    t = time.perf_counter(); out = lake.optimize(); secs = time.perf_counter() - t
    print(json.dumps({"seconds": secs, "rows": out.to_dicts(), "stale": lake.plan().height}))
""")

VACUUM = COMMON + textwrap.dedent("""
    t = time.perf_counter(); out = lake.vacuum(retain="0s"); secs = time.perf_counter() - t
    rows = lake.read("events").height
    print(json.dumps({"seconds": secs, "files_removed": int(out["files_removed"].sum()),
                      "bytes_removed": int(out["bytes_removed"].sum()), "rows": rows}))
""")

REWRITE = COMMON + textwrap.dedent("""
    day = (date(2013, 1, 1) + timedelta(days=DAYS // 2)).isoformat()
    secs = []
    for _ in range(3):  # best of three single-day rewrites (the first also warms up)
        t = time.perf_counter()
        res = lake.materialize("events", partitions=day, force=True, raise_on_error=True)
        secs.append(time.perf_counter() - t)
    rows = lake.read("events").height
    assert rows == DAYS * 1000, rows
    print(json.dumps({"seconds": min(secs[1:]), "rows": rows, "files": files_in_scan(),
                      "stale": lake.plan().height}))
""")


def run(script: str, *args: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if proc.returncode != 0:
        raise SystemExit(f"benchmark step failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--formats", default="delta,iceberg")
    ap.add_argument("--layouts", default="daily,monthly-append")
    args = ap.parse_args()
    compile_package()
    days = str(args.days)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for layout, fmt in [
            (lay, f) for lay in args.layouts.split(",") for f in args.formats.split(",")
        ]:
            wh = f"{tmp}/{layout}-{fmt}"
            build = run(BUILD, wh, fmt, days, layout)
            before = run(COUNT, wh, fmt, days, layout)
            # a single-day rewrite before and after the new layout (daily layout only:
            # a forced run of an append asset would add rows)
            rw_before = run(REWRITE, wh, fmt, days, layout) if layout == "daily" else None
            opt = run(OPTIMIZE, wh, fmt, days, layout)
            after = run(COUNT, wh, fmt, days, layout)
            vac = run(VACUUM, wh, fmt, days, layout)
            rw_after = run(REWRITE, wh, fmt, days, layout) if layout == "daily" else None
            ratio = after["files"] / before["files"]
            name = f"{fmt} {layout}"
            results[name] = {
                "build_s": build["seconds"],
                "files_before": before["files"],
                "files_after": after["files"],
                "ratio": ratio,
                "scan_before_s": before["scan_seconds"],
                "scan_after_s": after["scan_seconds"],
                "optimize_s": opt["seconds"],
                "stale_after": opt["stale"],
                "vacuum_files": vac["files_removed"],
                "vacuum_bytes": vac["bytes_removed"],
                "optimize_detail": [r["detail"] for r in opt["rows"]],
            }
            if rw_before is not None and rw_after is not None:
                results[name].update(
                    rewrite_before_s=rw_before["seconds"],
                    rewrite_after_s=rw_after["seconds"],
                    files_after_rewrite=rw_after["files"],
                )
            what = (
                "single-day materializations"
                if layout == "daily"
                else "daily appends into monthly partitions"
            )
            print(f"{name}: {args.days} {what} in {build['seconds']:.1f} s")
            print(
                f"  files read by a full scan: {before['files']} -> {after['files']}  "
                f"ratio {ratio:.3f} (target <= 0.1: {'OK' if ratio <= 0.1 else 'MISSED'})"
            )
            print(
                f"  full scan: {before['scan_seconds'] * 1000:.0f} ms -> "
                f"{after['scan_seconds'] * 1000:.0f} ms  "
                f"ratio {after['scan_seconds'] / before['scan_seconds']:.2f}"
            )
            print(
                f"  optimize(): {opt['seconds']:.2f} s, stale before/after: "
                f"{before['stale']}/{opt['stale']} (must be equal)"
            )
            print(
                f"  vacuum(retain='0s'): {vac['files_removed']} files, "
                f"{vac['bytes_removed'] / 1e6:.1f} MB removed; table still reads {vac['rows']} rows"
            )
            for r in opt["rows"]:
                if r["detail"]:
                    print(f"  layout: {r['detail']}")
            if rw_before is not None and rw_after is not None:
                print(
                    f"  one-day rewrite: {rw_before['seconds'] * 1000:.0f} ms before -> "
                    f"{rw_after['seconds'] * 1000:.0f} ms after  ratio "
                    f"{rw_after['seconds'] / rw_before['seconds']:.2f}; files then "
                    f"{rw_after['files']}, rows {rw_after['rows']}, stale {rw_after['stale']}"
                )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
