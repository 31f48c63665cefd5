"""Erasure that follows lineage: ``lake.erase()`` on Delta and Iceberg, local and S3.

The graph plants a distinctive string and a distinctive integer in one customer's rows,
spreads them through dependants of every kind (an ``erase_by`` dependant with a renamed
identity column, a second ``erase_by`` hop, an aggregate that must be recomputed, a
DuckDB asset downstream of it), leaves them in check samples, pins an old version and
compacts the tables. After ``erase()`` the test proves, without trusting lakehouse:

* every retained version of every asset reads back without a matching row;
* every file left in the warehouse - data files, Delta logs and checkpoints, Iceberg
  metadata, manifest lists and manifests - and the catalog database (with its WAL) holds
  neither value: not as raw bytes, not in decompressed Avro blocks, not in any Parquet
  cell or column statistic.

The same scan run BEFORE the erasure must find the values, so the scan itself is tested.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

STRING = "ERASE-ME-7Q4Z"
NUMBER = 987654321987
NEEDLES = (STRING.encode(), str(NUMBER).encode(), struct.pack("<q", NUMBER))
DAYS = 6

pytestmark = pytest.mark.slow


# ------------------------------------------------------------------------------ the graph


def build(fmt: str) -> list[Any]:
    import polars as pl

    import lakehouse as lh

    parts = lh.daily(start="2024-01-01", end=f"2024-01-{DAYS + 1:02d}")

    @lh.asset(
        partitions=parts,
        partition_column="day",
        code_version="1",
        format=fmt,
        checks=[lh.expect(pl.col("amount") < 10**9, severity="warn")],
    )
    def orders(ctx: lh.Context) -> pl.DataFrame:
        d = ctx.partition.start.date()
        planted = d.day in (3, 5)
        return pl.DataFrame(
            {
                "day": [d] * 3,
                "customer_id": [STRING if planted else "c-1", "c-2", "c-3"],
                "amount": [NUMBER if planted else 10, 20, 30],
                "note": [f"order of {d}", "x", "y"],
            }
        )

    @lh.asset(
        partitions=parts,
        partition_column="day",
        code_version="1",
        format=fmt,
        erase_by=["customer"],
    )
    def enriched(orders: pl.LazyFrame) -> pl.LazyFrame:
        return orders.select(
            "day",
            pl.col("customer_id").alias("customer"),
            "amount",
            (pl.col("amount") * 2).alias("double"),
        )

    @lh.asset(
        partitions=parts,
        partition_column="day",
        code_version="1",
        format=fmt,
        erase_by=["customer"],
    )
    def big(enriched: pl.LazyFrame) -> pl.LazyFrame:
        return enriched.filter(pl.col("double") > 30).select("day", "customer", "amount")

    @lh.asset(code_version="1", format=fmt)
    def totals(orders: pl.LazyFrame) -> pl.LazyFrame:
        return orders.group_by("customer_id").agg(pl.col("amount").sum(), pl.len().alias("n"))

    @lh.asset(engine="duckdb", code_version="1", format=fmt)
    def ranking(totals: Any) -> str:
        return "select customer_id, amount, n from totals order by amount desc"

    return [orders, enriched, big, totals, ranking]


ASSETS = ("orders", "enriched", "big", "totals", "ranking")


# ---------------------------------------------------------------------- independent checks


def _avro_blocks(data: bytes) -> Iterator[bytes]:
    """The decompressed data blocks of an Avro object container file."""

    def varint(buf: io.BytesIO) -> int:
        shift = result = 0
        while True:
            b = buf.read(1)
            if not b:
                raise EOFError
            result |= (b[0] & 0x7F) << shift
            shift += 7
            if not b[0] & 0x80:
                return (result >> 1) ^ -(result & 1)

    buf = io.BytesIO(data)
    assert buf.read(4) == b"Obj\x01"
    meta: dict[str, bytes] = {}
    while True:
        n = varint(buf)
        if n == 0:
            break
        if n < 0:
            varint(buf)
            n = -n
        for _ in range(n):
            key = buf.read(varint(buf)).decode()
            meta[key] = buf.read(varint(buf))
    sync = buf.read(16)
    codec = meta.get("avro.codec", b"null").decode()
    while True:
        try:
            varint(buf)
        except EOFError:
            return
        block = buf.read(varint(buf))
        if codec == "deflate":
            block = zlib.decompress(block, -15)
        elif codec == "zstandard":
            import zstandard

            block = zstandard.ZstdDecompressor().decompressobj().decompress(block)
        elif codec == "snappy":
            import cramjam

            block = bytes(cramjam.snappy.decompress_raw(block[:-4]))
        else:
            assert codec == "null", codec
        yield block
        assert buf.read(16) == sync


def _parquet_findings(data: bytes) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    found = []
    pf = pq.ParquetFile(pa.BufferReader(data))
    table = pf.read()
    text = json.dumps(table.to_pylist(), default=str)
    for needle in (STRING, str(NUMBER)):
        if needle in text:
            found.append(f"a cell holds {needle}")
    meta = pf.metadata
    for rg in range(meta.num_row_groups):
        for c in range(meta.num_columns):
            stats = meta.row_group(rg).column(c).statistics
            if (
                stats is not None
                and stats.has_min_max
                and {str(stats.min), str(stats.max)} & {STRING, str(NUMBER)}
            ):
                found.append(
                    "column statistics name the value "
                    f"({meta.row_group(rg).column(c).path_in_schema})"
                )
    return found


def findings(name: str, data: bytes) -> list[str]:
    """Why ``data`` (the bytes of the file ``name``) still holds an erased value."""
    found = [f"raw bytes hold {n!r}" for n in NEEDLES if n in data]
    if data[:4] == b"Obj\x01":
        for block in _avro_blocks(data):
            found.extend(f"an Avro block holds {n!r}" for n in NEEDLES if n in block)
    if name.endswith(".parquet") and data[:4] == b"PAR1":
        found.extend(_parquet_findings(data))
    if name.endswith(".gz"):
        import gzip

        found.extend(f"gzip content holds {n!r}" for n in NEEDLES if n in gzip.decompress(data))
    return found


def stored_files(env: Any) -> dict[str, bytes]:
    """Every file of the warehouse and of the catalog database, by name."""
    out: dict[str, bytes] = {}
    if env.storage == "s3":
        client = env.s3.client()
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=env.bucket, Prefix=env.prefix
        ):
            for obj in page.get("Contents", []):
                out[f"s3://{env.bucket}/{obj['Key']}"] = client.get_object(
                    Bucket=env.bucket, Key=obj["Key"]
                )["Body"].read()
    else:
        for root, _, files in os.walk(env.warehouse):
            for f in files:
                out[os.path.join(root, f)] = Path(root, f).read_bytes()
    for root, _, files in os.walk(env.local_dir):
        for f in files:
            path = os.path.join(root, f)
            if path not in out:
                out[path] = Path(path).read_bytes()
    return out


def leaks(env: Any) -> dict[str, list[str]]:
    return {name: f for name, data in stored_files(env).items() if (f := findings(name, data))}


def matching(frame: Any) -> int:
    """Rows of any asset's frame that hold either value in any column."""
    import polars as pl

    if frame.height == 0:
        return 0
    cond = pl.lit(False)
    for col, dtype in frame.schema.items():
        if dtype == pl.String:
            cond = cond | (pl.col(col) == STRING)
        elif dtype.is_integer():
            cond = cond | (pl.col(col) == NUMBER)
    return frame.filter(cond).height


def retained_versions(lake: Any, name: str) -> list[str]:
    from lakehouse.maintenance import table_ref
    from lakehouse.storage import get_maintenance

    ref = table_ref(lake, name)
    return [v for v, _ in get_maintenance(ref.format).versions(ref)]


# ---------------------------------------------------------------------------- environments


class Env:
    def __init__(
        self, fmt: str, storage: str, tmp_path: Path, s3: Any = None, bucket: Any = None
    ) -> None:
        self.format = fmt
        self.storage = storage
        self.local_dir = str(tmp_path / "state")
        self.s3 = s3
        if storage == "s3":
            self.bucket = bucket.name
            self.prefix = f"erase-{uuid.uuid4().hex[:8]}"
            self.warehouse = f"s3://{bucket.name}/{self.prefix}"
            self.options: dict[str, str] | None = dict(bucket.storage_options)
        else:
            self.warehouse = str(tmp_path / "wh")
            self.options = None

    def lake(self, assets: Any) -> Any:
        import lakehouse as lh

        return lh.Lakehouse(
            self.warehouse,
            assets=assets,
            format=self.format,
            storage_options=self.options,
            local_dir=self.local_dir,
        )


CELLS = [
    pytest.param(("delta", "local"), id="delta-local"),
    pytest.param(("iceberg", "local"), id="iceberg-local"),
    pytest.param(("delta", "s3"), id="delta-s3", marks=pytest.mark.s3),
    pytest.param(("iceberg", "s3"), id="iceberg-s3", marks=pytest.mark.s3),
]


@pytest.fixture(params=CELLS)
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Env:
    fmt, storage = request.param
    if storage == "s3":
        server = request.getfixturevalue("s3_server")
        bucket = request.getfixturevalue("s3_bucket")
        return Env(fmt, storage, tmp_path, server, bucket)
    return Env(fmt, storage, tmp_path)


def populate(env: Env) -> Any:
    lake = env.lake(build(env.format))
    for day in range(1, DAYS + 1):
        lake.materialize(partitions=f"2024-01-{day:02d}")
    return lake


# ------------------------------------------------------------------------------- the proof


def test_erase_leaves_no_trace_in_any_version_file_or_catalog(env: Env) -> None:
    import polars as pl

    lake = populate(env)
    pinned = retained_versions(lake, "orders")[-1]  # a version holding the planted rows
    lake.pin("orders", pinned, reason="audit snapshot")
    lake.optimize()
    assert matching(lake.read("orders", version=pinned)) == 2
    assert leaks(env), "the scan must see the planted values before the erasure"
    rows_before = {a: lake.read(a).height for a in ASSETS}
    assert matching(lake.read("totals")) == 1 and matching(lake.read("big")) == 2

    out = lake.erase(
        "orders",
        where=pl.col("customer_id") == STRING,
        reason="GDPR art. 17, request 42",
        who="dpo@example.com",
    )

    actions = dict(zip(out["asset"], out["action"], strict=True))
    assert actions == {
        "orders": "deleted",
        "enriched": "erase_by",
        "big": "erase_by",
        "totals": "recomputed",
        "ranking": "recomputed",
    }
    assert dict(zip(out["asset"], out["rows_deleted"], strict=True))["orders"] == 2
    # every retained version of every asset: no matching row
    for name in ASSETS:
        versions = retained_versions(lake, name)
        assert versions, name
        for v in versions:
            assert matching(lake.read(name, version=v)) == 0, (name, v)
    # no file, no log entry, no manifest, no statistic and no catalog page holds a value
    assert leaks(env) == {}
    # the rest of the data is intact and nothing is stale
    assert lake.read("orders").height == rows_before["orders"] - 2
    assert lake.read("enriched").height == rows_before["enriched"] - 2
    assert lake.read("totals").height == rows_before["totals"] - 1
    assert lake.plan().height == 0
    assert lake.materialize().rows and all(
        r["status"] == "skipped" for r in lake.materialize().rows
    )
    # the pin on a version holding the rows was overridden
    assert lake.pins().filter(pl.col("asset") == "orders").height == 0
    # the record: who, why, what, a hash of the predicate - and no value
    rec = lake.erasures()
    assert rec.height == 1
    row = rec.row(0, named=True)
    assert row["who"] == "dpo@example.com" and row["reason"] == "GDPR art. 17, request 42"
    assert row["status"] == "complete"
    assert set(row["assets"]) == set(ASSETS)
    assert row["files_removed"] > 0 and row["bytes_removed"] > 0
    expected = hashlib.sha256(
        ("polars:" + str(pl.col("customer_id") == STRING)).encode()
    ).hexdigest()
    assert row["predicate_hash"] == expected
    assert STRING not in json.dumps(row, default=str) and str(NUMBER) not in json.dumps(
        row, default=str
    )
    detail = json.loads(row["detail"])
    assert {a["asset"]: a["action"] for a in detail["assets"]}["totals"] == "recomputed"
    assert detail["pins_released"] == [{"asset": "orders", "version": pinned}]


def test_sql_predicate_and_dry_run(tmp_path: Path) -> None:
    env = Env("delta", "local", tmp_path)
    lake = populate(env)
    versions = {a: lake.table(a).version for a in ASSETS}
    plan = lake.erase(
        "orders", where=f"customer_id = '{STRING}'", reason="check first", dry_run=True
    )
    assert dict(zip(plan["asset"], plan["action"], strict=True)) == {
        "orders": "would delete",
        "enriched": "would erase by",
        "big": "would erase by",
        "totals": "would recompute",
        "ranking": "would recompute",
    }
    assert plan.filter(plan["asset"] == "orders")["rows_deleted"].item() == 2
    assert plan.filter(plan["asset"] == "enriched")["partitions"].item() == "2024-01-03, 2024-01-05"
    assert {a: lake.table(a).version for a in ASSETS} == versions  # nothing changed
    assert lake.erasures().height == 0
    lake.erase("orders", where=f"customer_id = '{STRING}'", reason="now")
    for name in ASSETS:
        assert matching(lake.read(name)) == 0
    assert (
        lake.erasures()["predicate_hash"].item()
        == hashlib.sha256(f"sql:customer_id = '{STRING}'".encode()).hexdigest()
    )


def test_only_partitions_that_consumed_the_rows_are_recomputed(tmp_path: Path) -> None:
    import polars as pl

    import lakehouse as lh

    env = Env("delta", "local", tmp_path)
    specs = build("delta")
    parts = lh.daily(start="2024-01-01", end=f"2024-01-{DAYS + 1:02d}")

    @lh.asset(partitions=parts, partition_column="day", code_version="1")
    def daily_sum(orders: pl.LazyFrame) -> pl.LazyFrame:  # no erase_by: recomputed per partition
        return orders.group_by("day").agg(pl.col("amount").sum())

    lake = env.lake([*specs, daily_sum])
    for day in range(1, DAYS + 1):
        lake.materialize(partitions=f"2024-01-{day:02d}")
    before = {
        r["partitions"]: r["version"]
        for r in lake.status("daily_sum", expand=True).iter_rows(named=True)
    }
    out = lake.erase("orders", where=pl.col("customer_id") == STRING, reason="r")
    assert (
        out.filter(pl.col("asset") == "daily_sum")["partitions"].item() == "2024-01-03, 2024-01-05"
    )
    history = lake.history("daily_sum")
    recomputed = history.filter(pl.col("run_id") == history["run_id"][0])
    assert sorted(recomputed["partitions"].to_list()) == ["2024-01-03", "2024-01-05"]
    assert lake.read("daily_sum").filter(pl.col("amount") > 10**9).height == 0
    assert len(before) == DAYS and lake.plan().height == 0


def test_append_dependant_without_erase_by_is_refused_before_anything_is_deleted(
    tmp_path: Path,
) -> None:
    import polars as pl

    import lakehouse as lh
    from lakehouse.errors import DefinitionError

    env = Env("delta", "local", tmp_path)

    @lh.asset(code_version="1", write="append")
    def audit_log(orders: pl.LazyFrame) -> pl.LazyFrame:
        return orders.select("customer_id", "amount")

    lake = env.lake([*build("delta"), audit_log])
    for day in range(1, DAYS + 1):
        lake.materialize(partitions=f"2024-01-{day:02d}")
    version = lake.table("orders").version
    with pytest.raises(DefinitionError, match="audit_log") as err:
        lake.erase("orders", where=pl.col("customer_id") == STRING, reason="r")
    assert "erase_by" in str(err.value)
    assert lake.table("orders").version == version
    assert matching(lake.read("orders")) == 2


def test_failed_recompute_leaves_a_resumable_incomplete_erasure(tmp_path: Path) -> None:
    import polars as pl

    import lakehouse as lh
    from lakehouse.errors import MaterializeError

    env = Env("delta", "local", tmp_path)
    broken = {"on": False}

    @lh.asset(code_version="1")
    def fragile(orders: pl.LazyFrame) -> pl.LazyFrame:
        if broken["on"]:
            raise RuntimeError("downstream system unavailable")
        return orders.group_by("customer_id").agg(pl.col("amount").max())

    lake = env.lake([*build("delta"), fragile])
    for day in range(1, DAYS + 1):
        lake.materialize(partitions=f"2024-01-{day:02d}")
    broken["on"] = True
    with pytest.raises(MaterializeError, match="fragile"):
        lake.erase("orders", where=pl.col("customer_id") == STRING, reason="r")
    assert lake.erasures()["status"].to_list() == ["incomplete"]
    assert matching(lake.read("orders")) == 0
    assert matching(lake.read("fragile")) == 1  # not recomputed yet, and old versions kept
    broken["on"] = False
    lake.erase("orders", where=pl.col("customer_id") == STRING, reason="r (resumed)")
    assert matching(lake.read("fragile")) == 0
    assert lake.erasures()["status"].to_list() == ["complete", "incomplete"]
    for name in (*ASSETS, "fragile"):
        for v in retained_versions(lake, name):
            assert matching(lake.read(name, version=v)) == 0, (name, v)


def test_bad_predicates_name_the_asset_and_the_fix(tmp_path: Path) -> None:
    import polars as pl

    from lakehouse.errors import ConfigError

    lake = populate(Env("delta", "local", tmp_path))
    with pytest.raises(ConfigError, match=r"'orders'.*no_such_column") as err:
        lake.erase("orders", where=pl.col("no_such_column") == 1, reason="r")
    assert "customer_id" in str(err.value)  # the hint lists the columns
    with pytest.raises(ConfigError, match="reason"):
        lake.erase("orders", where=pl.col("customer_id") == "x", reason=" ")
    with pytest.raises(ConfigError, match="Polars expression or a SQL predicate"):
        lake.erase("orders", where=42, reason="r")


def test_erasure_property_random_placements(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Wherever one customer's rows sit (random days, random write history), erasing
    them leaves no row of that customer in any asset or retained version, keeps every
    other row, and leaves nothing stale."""
    import polars as pl
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    import lakehouse as lh

    @settings(
        max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(
        planted=st.sets(st.integers(1, 4), min_size=1, max_size=4),
        rewrites=st.lists(st.integers(1, 4), max_size=3),
        sql=st.booleans(),
    )
    def check(planted: set[int], rewrites: list[int], sql: bool) -> None:
        parts = lh.daily(start="2024-01-01", end="2024-01-05")

        @lh.asset(partitions=parts, partition_column="day", code_version="1")
        def people(ctx: lh.Context) -> pl.DataFrame:
            d = ctx.partition.start.date()
            who = ["zed" if d.day in planted else "amy", "bo"]
            return pl.DataFrame(
                {"day": [d, d], "who": who, "n": [NUMBER if who[0] == "zed" else 1, 2]}
            )

        @lh.asset(partitions=parts, partition_column="day", code_version="1", erase_by=["who"])
        def copy(people: pl.LazyFrame) -> pl.LazyFrame:
            return people.select("day", "who")

        @lh.asset(code_version="1")
        def counts(people: pl.LazyFrame) -> pl.LazyFrame:
            return people.group_by("who").agg(pl.col("n").sum())

        lake = lh.Lakehouse(str(tmp_path_factory.mktemp("erase")), assets=[people, copy, counts])
        lake.materialize(partitions="all")
        for day in rewrites:
            lake.materialize(partitions=f"2024-01-0{day}", force=True)
        others = {
            a: lake.read(a).filter(pl.col("who") != "zed").sort(lake.read(a).columns)
            for a in ("people", "copy", "counts")
        }
        where = "who = 'zed'" if sql else pl.col("who") == "zed"
        lake.erase("people", where=where, reason="property")
        for a in ("people", "copy", "counts"):
            for v in retained_versions(lake, a):
                assert lake.read(a, version=v).filter(pl.col("who") == "zed").height == 0, (a, v)
            current = lake.read(a)
            assert current.sort(current.columns).equals(others[a]), a
        assert lake.plan().height == 0
        lake.close()

    check()
