"""Formats and storage benchmark: the 50-asset chain of diamonds and the 365-daily-partition
write, for Iceberg (local and S3) and Delta on S3, each against its own raw baseline on
the same storage (plain pyiceberg / plain deltalake), measured in the same run.

Every measurement runs in a fresh process. S3 is moto's server on 127.0.0.1, started by
this script. The graph is the one of ``bench_core.py`` (asset i has parent i - (i mod 3)
if i mod 3 in {1, 2}, parents i - 2 and i - 1 if i mod 3 = 0; 1,000 rows each); the
partition write is 365 days x 1,000 rows materialized as one range (one commit) against
one plain partitioned write.

    python benchmarks/bench_formats.py [--repeat 1] [--cases iceberg-local,iceberg-s3,delta-s3]

Targets: the ratios of Delta on local disk (graph <= 1.2x, 365 partitions <= 1.5x).
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import uuid
from pathlib import Path

from _common import compile_package

ROOT = Path(__file__).resolve().parents[1]
N = 50
DAYS = 365

COMMON = textwrap.dedent("""
    import json, sys, time
    from datetime import date, timedelta
    cfg = json.loads(sys.argv[1])
    N, DAYS = 50, 365
    def parents(i):
        if i == 0: return []
        if i % 3 in (1, 2): return [i - (i % 3)]
        return [i - 2, i - 1]
    so = cfg["so"]
    wh = cfg["warehouse"]
    def iceberg_catalog():
        from pyiceberg.catalog.sql import SqlCatalog
        props = {"uri": f"sqlite:///{cfg['state']}/raw.db", "warehouse": wh}
        if so:
            props.update({"s3.endpoint": so["AWS_ENDPOINT_URL"], "s3.access-key-id": so["AWS_ACCESS_KEY_ID"],
                          "s3.secret-access-key": so["AWS_SECRET_ACCESS_KEY"], "s3.region": so["AWS_REGION"],
                          "py-io-impl": "pyiceberg.io.fsspec.FsspecFileIO"})
        import os; os.makedirs(cfg["state"], exist_ok=True)
        cat = SqlCatalog("raw", **props)
        cat.create_namespace_if_not_exists("default")
        return cat
    def day_frame():
        import polars as pl
        days = pl.date_range(date(2023, 1, 1), date(2023, 1, 1) + timedelta(days=DAYS - 1), "1d", eager=True)
        return pl.DataFrame({"day": days}).join(
            pl.DataFrame({"n": pl.arange(0, 1000, eager=True)}), how="cross").with_columns(v=pl.col("n") * 2)
""")

RAW_GRAPH = COMMON + textwrap.dedent("""
    import polars as pl
    t0 = time.perf_counter()
    if cfg["format"] == "iceberg":
        cat = iceberg_catalog()
    for i in range(N):
        ps = parents(i)
        k = pl.arange(0, 1000, eager=True)
        if not ps:
            df = pl.DataFrame({"k": k, "v": k * i})
        else:
            v = None
            for p in ps:
                if cfg["format"] == "iceberg":
                    col = pl.from_arrow(cat.load_table(("default", f"a{p}")).scan(selected_fields=("v",)).to_arrow())["v"]
                else:
                    col = pl.read_delta(f"{wh}/a{p}", storage_options=so or None).select("v")["v"]
                v = col if v is None else v + col
            df = pl.DataFrame({"k": k, "v": v + i})
        if cfg["format"] == "iceberg":
            t = df.to_arrow()
            tbl = cat.create_table_if_not_exists(("default", f"a{i}"), schema=t.schema, location=f"{wh}/a{i}")
            tbl.overwrite(t)
        else:
            df.write_delta(f"{wh}/a{i}", mode="overwrite", storage_options=so or None)
    print(json.dumps({"seconds": time.perf_counter() - t0}))
""")

RAW_DAYS = COMMON + textwrap.dedent("""
    t = day_frame().to_arrow()
    t0 = time.perf_counter()
    if cfg["format"] == "iceberg":
        from pyiceberg.transforms import DayTransform
        cat = iceberg_catalog()
        tbl = cat.create_table(("default", "days"), schema=t.schema, location=f"{wh}/days")
        with tbl.update_spec() as spec:
            spec.add_field("day", DayTransform(), "day_day")
        tbl.append(t)
    else:
        from deltalake import write_deltalake
        write_deltalake(f"{wh}/days", t, partition_by=["day"], storage_options=so or None)
    print(json.dumps({"seconds": time.perf_counter() - t0}))
""")

LAKE_GRAPH = COMMON + textwrap.dedent("""
    import importlib.util
    import lakehouse as lh
    spec = importlib.util.spec_from_file_location("bench_project", cfg["project"])
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    lake = lh.Lakehouse(wh, assets=mod, format=cfg["format"], storage_options=so or None, local_dir=cfg["state"])
    t0 = time.perf_counter()
    res = lake.materialize()
    t1 = time.perf_counter()
    assert len(res.materialized) == N, res
    again = lake.materialize()
    t2 = time.perf_counter()
    assert again.materialized == []
    print(json.dumps({"seconds": t1 - t0, "noop": t2 - t1}))
""")

LAKE_DAYS = COMMON + textwrap.dedent("""
    import polars as pl
    import lakehouse as lh
    frame = day_frame()
    @lh.asset(name="days", partitions=lh.daily("2023-01-01", "2024-01-01"), partition_column="day")
    def days(ctx):
        return frame.filter((pl.col("day") >= ctx.partition.start.date()) & (pl.col("day") < ctx.partition.end.date()))
    lake = lh.Lakehouse(wh, assets=[days], format=cfg["format"], storage_options=so or None, local_dir=cfg["state"])
    t0 = time.perf_counter()
    res = lake.materialize(partitions="all")
    t1 = time.perf_counter()
    assert res.ok and lake.read("days").height == DAYS * 1000
    print(json.dumps({"seconds": t1 - t0}))
""")


def parents(i: int) -> list[int]:
    if i == 0:
        return []
    if i % 3 in (1, 2):
        return [i - (i % 3)]
    return [i - 2, i - 1]


def project_source() -> str:
    lines = ["import polars as pl", "import lakehouse as lh", ""]
    for i in range(N):
        ps = parents(i)
        k = "pl.arange(0, 1000, eager=True)"
        if not ps:
            lines += [
                f"@lh.asset(name='a{i}')",
                f"def a{i}():",
                f"    return pl.DataFrame({{'k': {k}, 'v': {k} * {i}}})",
                "",
            ]
        else:
            args = ", ".join(f"a{p}: pl.LazyFrame" for p in ps)
            expr = " + ".join(f"a{p}.select('v').collect()['v']" for p in ps)
            lines += [
                f"@lh.asset(name='a{i}')",
                f"def a{i}({args}):",
                f"    return pl.DataFrame({{'k': {k}, 'v': ({expr}) + {i}}})",
                "",
            ]
    return "\n".join(lines)


def run(code: str, cfg: dict[str, object]) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(cfg)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=1800,
    )
    if out.returncode:
        raise SystemExit(out.stderr[-4000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


class S3:
    """moto's S3 server on a free port of 127.0.0.1."""

    def __enter__(self) -> S3:
        import boto3
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self.server.start()
        self.endpoint = f"http://127.0.0.1:{port}"
        self.options = {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }
        boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        ).create_bucket(Bucket="bench")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()


def measure(fmt: str, storage: str, s3: S3 | None, repeat: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {
        "raw_graph": [],
        "lake_graph": [],
        "noop": [],
        "raw_days": [],
        "lake_days": [],
    }
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            proj = Path(tmp) / "project.py"
            proj.write_text(project_source())

            def cfg(kind: str, proj: Path = proj) -> dict[str, object]:
                if storage == "s3":
                    assert s3 is not None
                    wh = f"s3://bench/{kind}-{uuid.uuid4().hex[:8]}"
                    so = s3.options
                else:
                    wh, so = f"{tmp}/{kind}", {}
                return {
                    "format": fmt,
                    "warehouse": wh,
                    "so": so,
                    "state": f"{tmp}/{kind}-state",
                    "project": str(proj),
                }

            out["raw_graph"].append(run(RAW_GRAPH, cfg("raw-graph"))["seconds"])
            lake = run(LAKE_GRAPH, cfg("lake-graph"))
            out["lake_graph"].append(lake["seconds"])
            out["noop"].append(lake["noop"])
            out["raw_days"].append(run(RAW_DAYS, cfg("raw-days"))["seconds"])
            out["lake_days"].append(run(LAKE_DAYS, cfg("lake-days"))["seconds"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--cases", default="iceberg-local,iceberg-s3,delta-s3")
    args = ap.parse_args()
    compile_package()
    cases = [tuple(c.split("-")) for c in args.cases.split(",") if c]
    med = statistics.median
    with S3() as s3:
        for fmt, storage in cases:
            r = measure(fmt, storage, s3 if storage == "s3" else None, args.repeat)
            raw = "plain pyiceberg" if fmt == "iceberg" else "plain deltalake/polars"
            print(f"== {fmt} on {storage} (baseline: {raw} on the same storage)")
            g, gb = med(r["lake_graph"]), med(r["raw_graph"])
            d, db = med(r["lake_days"]), med(r["raw_days"])
            print(
                f"  50-asset graph, first materialize: {g:7.3f} s vs {gb:7.3f} s   ratio {g / gb:.2f}x "
                "(target <= 1.2x)"
            )
            print(f"  50-asset graph, no-op materialize: {med(r['noop']) * 1000:7.1f} ms")
            print(
                f"  365 daily partitions, one range:   {d:7.3f} s vs {db:7.3f} s   ratio {d / db:.2f}x "
                "(target <= 1.5x)"
            )
            sys.stdout.flush()


if __name__ == "__main__":
    main()
