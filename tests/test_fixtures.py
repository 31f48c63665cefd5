"""The shared fixtures really start working servers (see conftest.py)."""

from __future__ import annotations

import pytest


@pytest.mark.s3
def test_s3_bucket_put_and_get(s3_bucket):
    import boto3

    assert len(s3_bucket.name) >= 3
    assert s3_bucket.uri == f"s3://{s3_bucket.name}/wh"
    so = s3_bucket.storage_options
    assert so["AWS_ENDPOINT_URL"] == s3_bucket.endpoint
    assert s3_bucket.endpoint.startswith("http://127.0.0.1:")
    client = boto3.client(
        "s3",
        endpoint_url=so["AWS_ENDPOINT_URL"],
        region_name=so["AWS_REGION"],
        aws_access_key_id=so["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=so["AWS_SECRET_ACCESS_KEY"],
    )
    client.put_object(Bucket=s3_bucket.name, Key="wh/hello.txt", Body=b"hello lakehouse")
    body = client.get_object(Bucket=s3_bucket.name, Key="wh/hello.txt")["Body"].read()
    assert body == b"hello lakehouse"
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=s3_bucket.name)["Contents"]]
    assert keys == ["wh/hello.txt"]


@pytest.mark.s3
def test_s3_bucket_is_fresh_per_module(s3_server, s3_bucket):
    client = s3_server.client()
    names = {b["Name"] for b in client.list_buckets()["Buckets"]}
    assert s3_bucket.name in names


@pytest.mark.postgres
def test_postgres_select_1(postgres_url):
    import sqlalchemy as sa

    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("select 1")).scalar_one() == 1
            assert conn.dialect.name == "postgresql"
    finally:
        engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("attempt", [1, 2])
def test_postgres_db_url_is_a_fresh_database_per_test(postgres_db_url, attempt):
    import sqlalchemy as sa

    engine = sa.create_engine(postgres_db_url)
    try:
        with engine.begin() as conn:
            # would fail on the second run if the database were shared between tests
            conn.execute(sa.text("create table marker (attempt int)"))
            conn.execute(sa.text("insert into marker values (:a)"), {"a": attempt})
            assert conn.execute(sa.text("select count(*) from marker")).scalar_one() == 1
            db = conn.execute(sa.text("select current_database()")).scalar_one()
            assert db == sa.make_url(postgres_db_url).database
    finally:
        engine.dispose()
