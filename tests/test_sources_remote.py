"""Sources on real servers: files on the local S3 server (moto) and a SQL table on the real
PostgreSQL server started by the test run."""

from __future__ import annotations

import io
import uuid
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import lakehouse as lh


def ran(result: Any) -> set[str]:
    return {r["asset"] for r in result.rows if r["status"] == "materialized"}


# ---------------------------------------------------------------------------------- S3


def put(client: Any, bucket: str, key: str, **cols: list[Any]) -> None:
    buf = io.BytesIO()
    pl.DataFrame(cols).write_parquet(buf)
    client.put_object(Bucket=bucket, Key=key, Body=buf.getvalue())


@pytest.mark.s3
def test_files_on_s3_added_replaced_deleted(s3_server: Any, s3_bucket: Any, tmp_path: Path) -> None:
    client = s3_server.client()
    prefix = f"landing-{uuid.uuid4().hex[:6]}"
    put(client, s3_bucket.name, f"{prefix}/2024-01-01/a.parquet", id=[1, 2], amount=[1, 2])
    put(client, s3_bucket.name, f"{prefix}/2024-01-02/b.parquet", id=[3], amount=[3])
    days = lh.daily(start="2024-01-01", end="2024-01-04")
    orders = lh.files(
        f"s3://{s3_bucket.name}/{prefix}/{{day}}/*.parquet", name="orders", partitions=days
    )

    @lh.asset(partitions=days, partition_column="day")
    def per_day(orders: pl.LazyFrame) -> pl.DataFrame:
        return (
            orders.group_by("day")
            .agg(pl.col("amount").sum(), pl.len().cast(pl.Int64).alias("n"))
            .collect()
        )

    @lh.asset(write="append", ins={"orders": lh.upstream("orders", since_last_run=True)})
    def order_log(orders: pl.LazyFrame) -> pl.LazyFrame:
        return orders.select("id", "day")

    # the warehouse on S3 too: the lakehouse's storage options reach the source
    lake = lh.Lakehouse(
        s3_bucket.uri + f"/{prefix}",
        catalog=f"sqlite:///{tmp_path}/catalog.db",
        storage_options=s3_bucket.storage_options,
        assets=[orders, per_day, order_log],
    )
    lake.materialize()
    assert lake.read("per_day").sort("day").select("amount", "n").rows() == [(3, 2), (3, 1)]
    assert sorted(lake.read("order_log")["id"]) == [1, 2, 3]

    put(client, s3_bucket.name, f"{prefix}/2024-01-03/c.parquet", id=[4], amount=[40])  # added
    put(
        client, s3_bucket.name, f"{prefix}/2024-01-01/a.parquet", id=[1, 2], amount=[10, 20]
    )  # replaced
    obs = lake.observe()
    assert sorted(obs["partitions"]) == ["2024-01-01", "2024-01-03"] and obs["changed"].all()
    plan = lake.plan()
    assert dict(zip(plan["asset"], plan["reason"], strict=False)) == {
        "per_day": "source_changed",
        "order_log": "source_changed",
    }
    assert plan.filter(pl.col("asset") == "per_day")["partitions"].to_list() == [
        "2024-01-01, 2024-01-03"
    ]
    result = lake.materialize()
    assert ran(result) == {"per_day", "order_log"}
    assert lake.read("per_day").sort("day").select("amount", "n").rows() == [
        (30, 2),
        (3, 1),
        (40, 1),
    ]
    # the replaced file comes again (its new version), the added one once
    assert sorted(lake.read("order_log")["id"]) == [1, 1, 2, 2, 3, 4]

    client.delete_object(Bucket=s3_bucket.name, Key=f"{prefix}/2024-01-02/b.parquet")  # deleted
    lake.materialize()
    assert lake.read("per_day").sort("day").select("amount", "n").rows() == [(30, 2), (40, 1)]
    assert sorted(lake.read("order_log")["id"]) == [1, 1, 2, 2, 3, 4]  # nothing new to append
    assert lake.plan().height == 0
    # same content re-uploaded: same ETag, so nothing changes
    put(client, s3_bucket.name, f"{prefix}/2024-01-03/c.parquet", id=[4], amount=[40])
    assert not lake.observe()["changed"].any()


@pytest.mark.s3
def test_delta_source_on_s3(s3_bucket: Any, tmp_path: Path) -> None:
    import pyarrow as pa
    from deltalake import write_deltalake

    uri = f"s3://{s3_bucket.name}/partner-{uuid.uuid4().hex[:6]}/events"
    so = s3_bucket.storage_options
    write_deltalake(uri, pa.table({"id": [1, 2]}), storage_options=so)
    events = lh.delta_table(uri, storage_options=so)

    @lh.asset(write="append", ins={"events": lh.upstream("events", since_last_run=True)})
    def events_copy(events: pl.LazyFrame) -> pl.LazyFrame:
        return events

    lake = lh.Lakehouse(tmp_path / "wh", assets=[events, events_copy])
    lake.materialize()
    write_deltalake(uri, pa.table({"id": [3]}), mode="append", storage_options=so)
    lake.materialize()
    assert sorted(lake.read("events_copy")["id"]) == [1, 2, 3]


# --------------------------------------------------------------------------- PostgreSQL


@pytest.mark.postgres
def test_sql_table_on_postgres_inserts_and_updates(postgres_db_url: str, tmp_path: Path) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(postgres_db_url)
    with engine.begin() as conn:
        conn.execute(sa.text("create schema shop"))
        conn.execute(
            sa.text(
                "create table shop.orders (id int primary key, status text, amount numeric(10, 2), "
                "updated_at timestamptz not null)"
            )
        )
        conn.execute(
            sa.text(
                "insert into shop.orders values "
                "(1, 'new', 10.50, '2024-05-01 10:00:00.123456+00'), "
                "(2, 'new', 20.00, '2024-05-01 10:00:01+00')"
            )
        )

    orders = lh.sql_table(postgres_db_url, "shop.orders", cursor="updated_at")
    batches: list[list[int]] = []

    @lh.asset(
        write=lh.merge(on="id"),
        ins={"orders": lh.upstream("orders", since_last_run=True)},
        code_version="1",
    )
    def orders_copy(orders: pl.DataFrame) -> pl.DataFrame:
        batches.append(sorted(orders["id"]))
        return orders

    @lh.asset
    def by_status(orders: pl.DataFrame) -> pl.DataFrame:
        return orders.group_by("status").agg(pl.len().cast(pl.Int64).alias("n")).sort("status")

    # the lakehouse catalog in the same PostgreSQL database
    lake = lh.Lakehouse(
        tmp_path / "wh", catalog=postgres_db_url, assets=[orders, orders_copy, by_status]
    )
    lake.materialize()
    assert lake.status().filter(pl.col("asset") == "orders")["version"].to_list() == [
        "2024-05-01T10:00:01+00:00"
    ]

    with engine.begin() as conn:
        conn.execute(
            sa.text("insert into shop.orders values (3, 'new', 5, '2024-05-01 11:00:00+00')")
        )
        conn.execute(
            sa.text(
                "update shop.orders set status = 'paid', updated_at = '2024-05-01 12:00:00+00' "
                "where id = 1"
            )
        )
    lake.observe()
    plan = lake.plan()
    assert set(plan["reason"]) == {"source_changed"}
    assert plan["cause"][0] == "2024-05-01T10:00:01+00:00 → 2024-05-01T12:00:00+00:00"
    lake.materialize()
    assert batches == [[1, 2], [1, 3]]  # only the inserted and the updated row
    copy = lake.read("orders_copy").sort("id")
    with engine.connect() as conn:
        truth = pl.read_database("select * from shop.orders order by id", conn)
    assert copy.select("id", "status").rows() == truth.select("id", "status").rows()
    assert lake.read("by_status").rows() == [("new", 2), ("paid", 1)]
    # no change: nothing observed as changed, nothing runs
    assert not lake.observe()["changed"].any()
    assert ran(lake.materialize()) == set()
    # forced with nothing new: an empty increment with the table's types, merged without change
    lake.materialize("orders_copy", force=True)
    assert batches[-1] == [] and lake.read("orders_copy").height == 3
    engine.dispose()


@pytest.mark.postgres
def test_sql_table_without_cursor_counts_rows(postgres_db_url: str, tmp_path: Path) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(postgres_db_url)
    with engine.begin() as conn:
        conn.execute(sa.text("create table tags (name text)"))
        conn.execute(sa.text("insert into tags values ('a')"))
    tags = lh.sql_table(postgres_db_url, "public.tags")
    lake = lh.Lakehouse(tmp_path / "wh", assets=[tags])
    assert lake.observe()["version"].to_list() == ["1 rows"]
    with engine.begin() as conn:
        conn.execute(sa.text("insert into tags values ('b')"))
    assert lake.observe()["version"].to_list() == ["2 rows"]
    missing = lh.sql_table(postgres_db_url, "public.nope", name="nope")
    lake2 = lh.Lakehouse(tmp_path / "wh2", assets=[missing])
    with pytest.raises(lh.StorageError, match="does not exist"):
        lake2.observe()
    engine.dispose()
