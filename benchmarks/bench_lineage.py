"""Lineage overhead: what column lineage, OpenLineage events and telemetry cost a run.

A 40-asset project (30 Polars assets returning LazyFrames with joins, group-bys and
window functions; 10 DuckDB SQL assets with CTEs), 10,000 rows each, written to Delta.
Every measurement runs in a fresh process; the baselines run in the same invocation:

* first run with column lineage (computed for every asset) vs the same first run with the
  analysis switched off;
* a forced re-run (lineage already stored: the hot path) vs the same with it switched off;
* a forced re-run sending OpenLineage events to a file vs without OpenLineage;
* the analysis itself, per asset (in one process, after warm-up).

    python benchmarks/bench_lineage.py [--repeat 3]

Targets: first run <= 1.15x without analysis; hot path <= 1.05x; OpenLineage to a file
<= 10 ms per event to build and write (two events per step, on a background thread; on
these ~0.1 s steps the wall-time ratio is visible, on real steps it is noise).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from _common import compile_package

ROOT = Path(__file__).resolve().parents[1]
N_POLARS, N_SQL, ROWS = 30, 10, 10_000


def project_source() -> str:
    out = ["import polars as pl", "import lakehouse as lh", "",
           "@lh.asset(name='p0')",
           "def p0() -> pl.DataFrame:",
           f"    n = {ROWS}",
           "    return pl.DataFrame({'k': pl.arange(0, n, eager=True), 'g': pl.arange(0, n, eager=True) % 17,",
           "                         'v': pl.arange(0, n, eager=True) * 1.5})", ""]
    for i in range(1, N_POLARS):
        a, b = (i - 1), max(0, i - 2)
        if a == b:
            out += [f"@lh.asset(name='p{i}')", f"def p{i}(p{a}: pl.LazyFrame) -> pl.LazyFrame:",
                    f"    return p{a}.with_columns(v=pl.col('v') + {i})", ""]
            continue
        kind = i % 3
        if kind == 0:
            body = (f"p{a}.join(p{b}.select('k', w='v'), on='k', how='left')"
                    f".select('k', 'g', v=pl.col('v') + pl.col('w').fill_null(0))")
        elif kind == 1:
            body = (f"p{a}.with_columns(r=pl.col('v').rank().over('g')).filter(pl.col('r') > 0)"
                    ".select('k', 'g', 'v')")
        else:
            body = (f"p{a}.group_by('g').agg(s=pl.col('v').sum()).join(p{a}, on='g')"
                    ".select('k', 'g', v=pl.col('v') / pl.col('s'))")
        out += [f"@lh.asset(name='p{i}')", f"def p{i}(p{a}: pl.LazyFrame, p{b}: pl.LazyFrame) -> pl.LazyFrame:",
                f"    return {body}", ""]
    last = f"p{N_POLARS - 1}"
    for j in range(N_SQL):
        up = last if j == 0 else f"s{j - 1}"
        out += [f"@lh.asset(name='s{j}', engine='duckdb')", f"def s{j}({up}):",
                f"    return '''with t as (select k, g, v * 2 as v from {up} where v > -1)",
                "              select k, g, v + sum(v) over (partition by g) * 0 as v from t'''", ""]
    return "\n".join(out)


RUN = textwrap.dedent("""
    import sys, time, json, importlib.util
    import lakehouse as lh
    from lakehouse.execution import observe
    warehouse, project, mode, lineage, ol = sys.argv[1:6]
    if lineage == "off":
        observe.RunObserver.wants_lineage = lambda self, asset, cv: False
    spec = importlib.util.spec_from_file_location("bench_project", project)
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    kw = {"openlineage": {"transport": "file", "path": ol}} if ol != "-" else {}
    spent = [0.0, 0, 0.0]
    if ol != "-":
        t = time.perf_counter(); import openlineage.client; spent[2] = time.perf_counter() - t
        from lakehouse.execution import openlineage as olm
        real_emit = olm.OpenLineageEmitter._emit
        def timed_emit(self, build):
            t = time.perf_counter(); real_emit(self, build); spent[0] += time.perf_counter() - t; spent[1] += 1
        olm.OpenLineageEmitter._emit = timed_emit
    lake = lh.Lakehouse(warehouse, assets=mod, progress=False, **kw)
    t0 = time.perf_counter()
    res = lake.materialize(force=(mode == "forced"))
    seconds = time.perf_counter() - t0
    assert res.ok and len(res.materialized) == N_ASSETS, res
    stored = sum(1 for r in lake.catalog.rows("code_versions") if r["column_lineage"])
    print(json.dumps({"seconds": seconds, "stored": stored, "emit_ms": spent[0] / max(spent[1], 1) * 1000,
                      "import_ms": spent[2] * 1000}))
""".replace("N_ASSETS", str(N_POLARS + N_SQL)))

ANALYSIS = textwrap.dedent("""
    import sys, time, json, importlib.util
    import polars as pl, duckdb
    import lakehouse as lh
    from lakehouse.engines.column_lineage import SourceTable, polars_lineage, sql_lineage, mark
    warehouse = sys.argv[1]
    # a join/window/group-by plan over two marked Delta scans, and a CTE + window query
    a = mark(pl.scan_delta(f"{warehouse}/p3"), "t:a")
    b = mark(pl.scan_delta(f"{warehouse}/p4"), "t:b")
    src = [SourceTable("p3", f"{warehouse}/p3", "a", "t:a"), SourceTable("p4", f"{warehouse}/p4", "b", "t:b")]
    q = (a.join(b.select("k", w="v"), on="k").with_columns(r=pl.col("v").rank().over("g"))
         .group_by("g").agg(s=pl.col("v").sum(), m=pl.col("w").mean()))
    sql = "with t as (select k, g, v * 2 as v from a where v > 1) select g, sum(v) over (partition by g) s from t"
    schemas = {"a": {"k": "BIGINT", "g": "BIGINT", "v": "DOUBLE"}}
    for _ in range(3):
        polars_lineage(q, src); sql_lineage(sql, schemas, {"a": "p3"})
    n = 50
    t0 = time.perf_counter()
    for _ in range(n):
        polars_lineage(q, src)
    t1 = time.perf_counter()
    for _ in range(n):
        sql_lineage(sql, schemas, {"a": "p3"})
    t2 = time.perf_counter()
    print(json.dumps({"polars_ms": (t1 - t0) / n * 1000, "sql_ms": (t2 - t1) / n * 1000}))
""")


def run(code: str, *args: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT,
                         timeout=1800)
    if out.returncode:
        raise SystemExit(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    compile_package()
    res: dict[str, list[float]] = {k: [] for k in ("first_on", "first_off", "hot_on", "hot_off", "hot_ol")}
    analysis: list[dict[str, float]] = []
    emit_ms: list[float] = []
    import_ms: list[float] = []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            proj = Path(tmp) / "project.py"
            proj.write_text(project_source())
            for flag in ("on", "off"):
                wh = f"{tmp}/lake-{flag}"
                r = run(RUN, wh, str(proj), "first", flag, "-")
                assert (r["stored"] > 0) == (flag == "on"), r
                res[f"first_{flag}"].append(r["seconds"])
            # the hot path: lineage already stored in lake-on; lake-off never computes it
            res["hot_on"].append(run(RUN, f"{tmp}/lake-on", str(proj), "forced", "on", "-")["seconds"])
            res["hot_off"].append(run(RUN, f"{tmp}/lake-off", str(proj), "forced", "off", "-")["seconds"])
            r = run(RUN, f"{tmp}/lake-on", str(proj), "forced", "on", f"{tmp}/events.jsonl")
            res["hot_ol"].append(r["seconds"])
            emit_ms.append(r["emit_ms"])
            import_ms.append(r["import_ms"])
            analysis.append(run(ANALYSIS, f"{tmp}/lake-on"))
    med = {k: statistics.median(v) for k, v in res.items()}
    n = N_POLARS + N_SQL
    print(f"{n} assets x {ROWS:,} rows, Delta, median of {args.repeat}")
    print(f"first run, lineage off (baseline):  {med['first_off']:.3f} s")
    print(f"first run, lineage computed:        {med['first_on']:.3f} s   ratio "
          f"{med['first_on'] / med['first_off']:.2f}x (target <= 1.15x)")
    print(f"forced re-run, lineage off:         {med['hot_off']:.3f} s")
    print(f"forced re-run, lineage stored:      {med['hot_on']:.3f} s   ratio "
          f"{med['hot_on'] / med['hot_off']:.2f}x (target <= 1.05x)")
    per_event = (med["hot_ol"] - med["hot_on"]) / (2 * n) * 1000
    print(f"forced re-run + OpenLineage (file): {med['hot_ol']:.3f} s   ratio "
          f"{med['hot_ol'] / med['hot_on']:.2f}x; wall time {per_event:.1f} ms more per event")
    print(f"  OpenLineage: {statistics.median(emit_ms):.2f} ms per event to build and write "
          f"(background thread; target <= 10 ms), client import {statistics.median(import_ms):.0f} ms once")
    print(f"analysis per asset: Polars plan {statistics.median(a['polars_ms'] for a in analysis):.2f} ms, "
          f"DuckDB SQL {statistics.median(a['sql_ms'] for a in analysis):.2f} ms")


if __name__ == "__main__":
    main()
