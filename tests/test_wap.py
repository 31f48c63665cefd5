"""Write-audit-publish on Delta: stage tables, file-level publish, the rewrite fallback."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

import lakehouse as lh
from lakehouse import checks as lhchecks
from lakehouse.assets import TableRef, WriteMode
from lakehouse.partitions import RangeSet, predicate, predicate_sql
from lakehouse.storage.delta import DeltaFormat
from lakehouse.storage.delta_wap import STAGE_DIR, _adds, encode_partition_value, stage_ids

DATA: dict[str, Any] = {}


@pytest.fixture(autouse=True)
def _clean() -> Any:
    before = set(lhchecks.REGISTRY)
    DATA.clear()
    yield
    for key in set(lhchecks.REGISTRY) - before:
        lhchecks.REGISTRY.pop(key, None)


def _log_adds(uri: str) -> dict[str, dict[str, Any]]:
    out = {}
    for f in sorted((Path(uri) / "_delta_log").glob("*.json")):
        for line in f.read_text().splitlines():
            entry = json.loads(line)
            if "add" in entry:
                out[entry["add"]["path"]] = entry["add"]
    return out


@pytest.mark.parametrize(
    "column",
    [
        pa.array([dt.date(2024, 1, 1), dt.date(2024, 1, 2), None]),
        pa.array(
            [
                dt.datetime(2024, 1, 1, 1),
                dt.datetime(2024, 1, 1, 2, 30, 15, 123456),
                dt.datetime(2024, 1, 1, 3),
            ]
        ),
        pa.array(
            [dt.datetime(2024, 1, 1, 1, tzinfo=dt.timezone.utc)] * 2 + [None],
            type=pa.timestamp("us", tz="UTC"),
        ),
        pa.array(["a", "b c", "x/y=z%"]),
        pa.array([1, 2, None], type=pa.int32()),
        pa.array([True, False, None]),
    ],
)
def test_partition_values_and_stats_of_published_files_match_what_delta_writes(
    tmp_path: Path, column: Any
) -> None:
    table = pa.table(
        {
            "p": column,
            "v": [1, 2, 3],
            "s": ["x", None, "z"],
            "f": [1.5, float("nan"), 2.0],
            "d": [dt.date(2020, 1, 1)] * 3,
        }
    )
    uri = str(tmp_path / "stage")
    write_deltalake(uri, table, partition_by=["p"])
    logged = _log_adds(uri)
    adds = _adds(DeltaTable(uri), "prefix")
    assert len(adds) == len(logged) == len(set(c for c in column.to_pylist()))
    by_values = {json.dumps(a["partitionValues"], sort_keys=True): a for a in logged.values()}
    for add in adds:
        src = by_values[json.dumps(add.partition_values, sort_keys=True)]  # same partition strings
        assert add.size == src["size"]
        ours, theirs = json.loads(add.stats), json.loads(src["stats"])
        assert ours["numRecords"] == theirs["numRecords"]
        assert ours.get("nullCount", {}) == {
            k: v for k, v in theirs.get("nullCount", {}).items() if k in ours.get("nullCount", {})
        }
        for key in ("minValues", "maxValues"):  # every statistic we give equals delta-rs' own
            for col, value in ours.get(key, {}).items():
                assert theirs[key][col] == value, (key, col)


def test_encode_partition_value() -> None:
    assert encode_partition_value(dt.date(2024, 1, 2)) == "2024-01-02"
    assert (
        encode_partition_value(
            dt.datetime(2024, 1, 2, 3, tzinfo=dt.timezone(dt.timedelta(hours=2)))
        )
        == "2024-01-02 01:00:00.000000"
    )
    assert encode_partition_value(None) is None and encode_partition_value(False) == "false"


def _days(start: str, end: str) -> pl.Series:
    return pl.date_range(
        dt.date.fromisoformat(start), dt.date.fromisoformat(end), closed="left", eager=True
    )


@pytest.fixture
def ref(tmp_path: Path) -> TableRef:
    return TableRef(asset="t", format="delta", uri=str(tmp_path / "t"))


def _stage_publish(
    ref: TableRef,
    data: pa.Table,
    mode: WriteMode,
    rs: RangeSet | None,
    sid: str,
    schema_mode: str = "strict",
) -> Any:
    fmt = DeltaFormat()
    where = predicate(lh.daily(start="2024-01-01"), rs, "day") if rs is not None else None
    staged = fmt.stage(
        ref,
        data,
        mode=mode,
        predicate=predicate_sql(where) if where else None,
        where=where,
        partition_by=["day"] if "day" in data.column_names else [],
        schema_mode=schema_mode,
        stage_id=sid,
    )
    return fmt, staged, fmt.publish(staged, {"step_id": sid, "run_id": "r"})


def test_stage_is_invisible_until_published_and_publish_is_one_commit(ref: TableRef) -> None:
    data = pl.DataFrame({"day": _days("2024-01-01", "2024-01-05"), "v": [1, 2, 3, 4]}).to_arrow()
    fmt, _, first = _stage_publish(ref, data, WriteMode("overwrite"), RangeSet.of(0, 4), "s1")
    assert first.version == "0" and pl.read_delta(ref.uri).height == 4
    new = pl.DataFrame({"day": _days("2024-01-02", "2024-01-04"), "v": [20, 30]}).to_arrow()
    where = predicate(lh.daily(start="2024-01-01"), RangeSet.of(1, 3), "day")
    staged = fmt.stage(
        ref,
        new,
        mode=WriteMode("overwrite"),
        predicate=predicate_sql(where),
        where=where,
        partition_by=["day"],
        schema_mode="strict",
        stage_id="s2",
    )
    # staged: the table did not move, its readers do not see the new rows
    assert DeltaTable(ref.uri).version() == 0
    assert sorted(pl.read_delta(ref.uri)["v"].to_list()) == [1, 2, 3, 4]
    assert stage_ids(ref) == ["s1", "s2"]
    res = fmt.publish(staged, {"step_id": "s2", "run_id": "r"})
    assert res.version == "1" and res.rows == 2
    out = pl.read_delta(ref.uri).sort("day")
    assert out["v"].to_list() == [1, 20, 30, 4]  # exactly the two partitions replaced
    hist = DeltaTable(ref.uri).history()
    assert hist[0]["lakehouse.step_id"] == "s2" and len(hist) == 2
    # after the publish the stage keeps its data files (the table reads them), not its log
    assert not (Path(ref.uri) / STAGE_DIR / "s2" / "_delta_log").exists()
    assert any((Path(ref.uri) / STAGE_DIR / "s2").rglob("*.parquet"))
    # time travel still reads the first version
    assert sorted(pl.read_delta(ref.uri, version=0)["v"].to_list()) == [1, 2, 3, 4]


def test_append_and_full_overwrite(ref: TableRef) -> None:
    data = pa.table({"v": [1, 2]})
    fmt, _, _ = _stage_publish(ref, data, WriteMode("append"), None, "a1")
    _stage_publish(ref, pa.table({"v": [3]}), WriteMode("append"), None, "a2")
    assert sorted(pl.read_delta(ref.uri)["v"].to_list()) == [1, 2, 3]
    _stage_publish(ref, pa.table({"v": [9]}), WriteMode("overwrite"), None, "o1")
    assert pl.read_delta(ref.uri)["v"].to_list() == [9]
    assert DeltaTable(ref.uri).version() == 2


def test_merge_and_schema_changes_take_the_rewrite_path(ref: TableRef) -> None:
    _stage_publish(ref, pa.table({"id": [1, 2], "v": [1, 2]}), WriteMode("overwrite"), None, "m0")
    fmt, _, res = _stage_publish(
        ref, pa.table({"id": [2, 3], "v": [20, 30]}), WriteMode("merge", ("id",)), None, "m1"
    )
    assert pl.read_delta(ref.uri).sort("id")["v"].to_list() == [1, 20, 30]
    assert (
        res.rows == 2 and not (Path(ref.uri) / STAGE_DIR / "m1").exists()
    )  # streamed, then deleted
    _stage_publish(
        ref,
        pa.table({"id": [4], "v": [4], "extra": ["x"]}),
        WriteMode("append"),
        None,
        "m2",
        schema_mode="add_columns",
    )
    out = pl.read_delta(ref.uri).sort("id")
    assert out.columns == ["id", "v", "extra"] and out["extra"].to_list() == [None, None, None, "x"]
    with pytest.raises(lh.SchemaError, match="asset 't'"):
        _stage_publish(ref, pa.table({"id": ["a"]}), WriteMode("append"), None, "m3")
    assert DeltaTable(ref.uri).version() == 2 and "m3" not in stage_ids(ref)


S3_SCRIPT = """
import json, os, sys
import polars as pl
import lakehouse as lh

ROWS = json.loads(os.environ["ROWS"]) if os.environ.get("ROWS") else None

@lh.asset(name="s3_orders", code_version="1", checks=[lh.unique("id")],
          partitions=lh.static(["a", "b"]), partition_column="part")
def s3_orders(ctx):
    if ROWS:
        return pl.DataFrame(ROWS)
    return pl.DataFrame({"part": list(ctx.partition.keys), "id": [1, 2][: len(ctx.partition.keys)]})

lake = lh.Lakehouse(os.environ["WH"], assets=[s3_orders], storage_options=json.loads(os.environ["SO"]),
                    local_dir=os.environ["STATE"])
res = lake.materialize(force=bool(ROWS), raise_on_error=False)
print(json.dumps({"status": [r["status"] for r in res.rows], "ids": sorted(lake.read("s3_orders")["id"].to_list())}))
"""


@pytest.mark.s3
def test_materialize_publishes_into_a_delta_table_on_s3(s3_bucket: Any, tmp_path: Path) -> None:
    # the lakehouse runs in a child process: deltalake's history() holds the GIL while it
    # reads, which would starve the S3 server that runs in this (the test) process
    import os
    import subprocess
    import sys

    script = tmp_path / "s3_lake.py"
    script.write_text(S3_SCRIPT)
    env = {
        **os.environ,
        "WH": s3_bucket.uri + "/wap",
        "SO": json.dumps(s3_bucket.storage_options),
        "STATE": str(tmp_path / "state"),
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
    }

    def run(rows: Any = None) -> dict[str, Any]:
        proc = subprocess.run(
            [sys.executable, str(script)],
            env={**env, "ROWS": json.dumps(rows) if rows else ""},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout.strip().splitlines()[-1])

    assert run() == {"status": ["materialized"], "ids": [1, 2]}
    assert run({"part": ["a", "b"], "id": [7, 7]}) == {"status": ["check_failed"], "ids": [1, 2]}
    client = lh_s3_client(s3_bucket)
    keys = [
        o["Key"]
        for o in client.list_objects_v2(Bucket=s3_bucket.name, Prefix="wh/wap/s3_orders/").get(
            "Contents", []
        )
    ]
    stages = {k.split(f"{STAGE_DIR}/")[1].split("/")[0] for k in keys if f"/{STAGE_DIR}/" in k}
    assert len(stages) == 1  # the failed stage was deleted, the published one kept its files
    assert not any("_delta_log" in k for k in keys if f"/{STAGE_DIR}/" in k)
    assert run({"part": ["a", "b"], "id": [7, 8]}) == {"status": ["materialized"], "ids": [7, 8]}


def lh_s3_client(bucket: Any) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=bucket.endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
