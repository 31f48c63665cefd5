"""Memory benchmark: assets larger than memory stream into Delta (TPC-H SF1).

Two queries over TPC-H SF1 (``lineitem``: 6 M rows, ``orders``: 1.5 M rows), generated
as Parquet with ``tpchgen-cli`` (``pip install tpchgen-cli``) into a cache folder:

* ``by_shipdate``: ``lineitem`` aggregated by ship date (2,526 rows out);
* ``joined``: ``lineitem`` joined with ``orders`` (6 M rows, 24 columns out).

Each query is measured in a fresh process, in the same invocation, three ways:

* lakehouse     an asset returning the ``pl.LazyFrame``; ``lake.materialize()`` (plan,
                write, catalog) into a Delta table;
* lakehouse_checked  the same asset with two checks (``not_null``, ``row_count``): the
                output is staged, audited by the checks and published;
* polars sink   Polars alone: ``lf.sink_delta(path)`` (the baseline);
* polars collect Polars alone, eagerly: ``lf.collect().write_delta(path)`` (for scale).

Peak RSS is the process's ``ru_maxrss`` (interpreter and imports included, the same for
every side).

    python benchmarks/bench_memory.py [--repeat 3] [--data ~/.cache/lakehouse-bench/tpch-sf1]

Target: lakehouse peak RSS <= 1.3x Polars alone (sink), for both queries.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import compile_package

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path.home() / ".cache" / "lakehouse-bench" / "tpch-sf1"

QUERIES = """
import polars as pl

def by_shipdate(data):
    li = pl.scan_parquet(f"{data}/lineitem.parquet")
    price = pl.col("l_extendedprice").cast(pl.Float64)
    disc = pl.col("l_discount").cast(pl.Float64)
    return (li.group_by("l_shipdate")
              .agg(sum_qty=pl.col("l_quantity").cast(pl.Float64).sum(),
                   sum_base_price=price.sum(),
                   sum_disc_price=(price * (1 - disc)).sum(),
                   avg_disc=disc.mean(),
                   count_order=pl.len().cast(pl.Int64))
              .sort("l_shipdate"))

def joined(data):
    li = pl.scan_parquet(f"{data}/lineitem.parquet")
    orders = pl.scan_parquet(f"{data}/orders.parquet")
    return li.join(orders, left_on="l_orderkey", right_on="o_orderkey")
"""

RUN = """
import json, resource, sys, time
side, query, data, out = sys.argv[1:5]
t0 = time.perf_counter()
import polars as pl
exec(open(sys.argv[5]).read())
make = globals()[query]
if side.startswith("lakehouse"):
    import lakehouse as lh
    checks = [lh.not_null("l_shipdate"), lh.row_count(min=1)] if side == "lakehouse_checked" else None
    asset = lh.asset(lambda: make(data), name=query, checks=checks)
    lake = lh.Lakehouse(out, assets=[asset])
    res = lake.materialize(progress=False)
    assert res.ok, res.failures
    rows = res.assets["rows"].item()
elif side == "polars_sink":
    make(data).sink_delta(f"{out}/{query}", mode="overwrite")
    rows = pl.scan_delta(f"{out}/{query}").select(pl.len()).collect().item()
elif side == "polars_collect":
    df = make(data).collect()
    df.write_delta(f"{out}/{query}", mode="overwrite")
    rows = df.height
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"peak": peak, "seconds": time.perf_counter() - t0, "rows": rows}))
"""

SIDES = ("polars_sink", "lakehouse", "lakehouse_checked", "polars_collect")


def ensure_data(path: Path) -> Path:
    if (path / "lineitem.parquet").exists() and (path / "orders.parquet").exists():
        return path
    exe = shutil.which("tpchgen-cli")
    if exe is None:
        raise SystemExit("tpchgen-cli is not installed: pip install tpchgen-cli")
    path.mkdir(parents=True, exist_ok=True)
    print(f"generating TPC-H SF1 lineitem and orders into {path} ...", flush=True)
    subprocess.run([exe, "parquet", "-s", "1", "--tables=lineitem,orders", f"--output-dir={path}"], check=True)
    return path


def measure(runner: Path, queries: Path, side: str, query: str, data: Path) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as out:
        proc = subprocess.run([sys.executable, str(runner), side, query, str(data), out, str(queries)],
                              capture_output=True, text=True, cwd=ROOT, timeout=1800,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    if proc.returncode:
        raise SystemExit(f"{side} {query} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = ap.parse_args()
    compile_package()
    data = ensure_data(args.data.expanduser())
    med = statistics.median
    mib = 2**20
    with tempfile.TemporaryDirectory() as tmp:
        runner = Path(tmp) / "run.py"
        runner.write_text(RUN)
        queries = Path(tmp) / "queries.py"
        queries.write_text(QUERIES)
        print(f"TPC-H SF1 at {data}; {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}")
        print(f"{'query':<12} {'side':<18} {'peak RSS':>10} {'seconds':>8} {'rows':>10}  ratio to polars sink")
        for query in ("by_shipdate", "joined"):
            results: dict[str, list[dict[str, float]]] = {s: [] for s in SIDES}
            for _ in range(args.repeat):
                for side in SIDES:
                    results[side].append(measure(runner, queries, side, query, data))
            base = med(r["peak"] for r in results["polars_sink"])
            counts = {int(r["rows"]) for rs in results.values() for r in rs}
            assert len(counts) == 1, f"{query}: sides disagree on the row count: {counts}"
            rows = counts.pop()
            for side in SIDES:
                peak = med(r["peak"] for r in results[side])
                secs = med(r["seconds"] for r in results[side])
                target = "  (target <= 1.3x)" if side.startswith("lakehouse") else ""
                print(f"{query:<12} {side:<18} {peak / mib:>7.0f} MiB {secs:>8.2f} {rows:>10}"
                      f"  {peak / base:.2f}x{target}")


if __name__ == "__main__":
    main()
