"""Storage options: one place turns user options and AWS environment variables into
deltalake (object_store) options and pyiceberg FileIO properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lakehouse.storage.uri import delta_options, iceberg_properties, redact, secret_values

ALIASES = {
    "AWS_ACCESS_KEY_ID": [
        "AWS_ACCESS_KEY_ID",
        "aws_access_key_id",
        "s3.access-key-id",
        "access_key_id",
    ],
    "AWS_SECRET_ACCESS_KEY": [
        "AWS_SECRET_ACCESS_KEY",
        "aws_secret_access_key",
        "s3.secret-access-key",
    ],
    "AWS_REGION": ["AWS_REGION", "region", "s3.region", "AWS_DEFAULT_REGION"],
    "AWS_ENDPOINT_URL": ["AWS_ENDPOINT_URL", "endpoint_url", "s3.endpoint", "aws_endpoint"],
}
ICEBERG = {
    "AWS_ACCESS_KEY_ID": "s3.access-key-id",
    "AWS_SECRET_ACCESS_KEY": "s3.secret-access-key",
    "AWS_REGION": "s3.region",
    "AWS_ENDPOINT_URL": "s3.endpoint",
}

values = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=4, max_size=20)


@given(
    picks=st.fixed_dictionaries({k: st.sampled_from(v) for k, v in ALIASES.items()}),
    vals=st.fixed_dictionaries({k: values for k in ALIASES}),
)
def test_any_spelling_reaches_both_libraries(picks: dict[str, str], vals: dict[str, str]) -> None:
    opts = {picks[k]: vals[k] for k in ALIASES}
    d = delta_options("s3://bucket/wh", opts, env={})
    p = iceberg_properties("s3://bucket/wh", opts, env={})
    for canon in ALIASES:
        assert d[canon] == vals[canon]
        assert p[ICEBERG[canon]] == vals[canon]
    assert not any(k.startswith("s3.") for k in d)


@given(explicit=values, from_env=values)
def test_explicit_options_win_over_environment(explicit: str, from_env: str) -> None:
    env = {
        "AWS_SECRET_ACCESS_KEY": from_env,
        "AWS_REGION": "eu-west-1",
        "AWS_ENDPOINT_URL": "https://s3.example",
    }
    d = delta_options("s3://b/p", {"aws_secret_access_key": explicit}, env=env)
    p = iceberg_properties("s3://b/p", {"aws_secret_access_key": explicit}, env=env)
    assert d["AWS_SECRET_ACCESS_KEY"] == explicit == p["s3.secret-access-key"]
    assert d["AWS_REGION"] == "eu-west-1" == p["s3.region"]
    # pyiceberg ignores AWS_ENDPOINT_URL itself: the endpoint must be passed explicitly
    assert p["s3.endpoint"] == "https://s3.example"
    assert "AWS_ALLOW_HTTP" not in d  # https needs no opt-in


def test_http_endpoint_allows_http_and_defaults_region() -> None:
    d = delta_options("s3://b/p", {"endpoint": "http://127.0.0.1:9000"}, env={})
    p = iceberg_properties("s3://b/p", {"endpoint": "http://127.0.0.1:9000"}, env={})
    assert d["AWS_ALLOW_HTTP"] == "true"
    assert p["s3.region"] == "us-east-1"  # else pyiceberg asks AWS where the bucket is


def test_local_warehouses_get_no_cloud_options() -> None:
    env = {"AWS_SECRET_ACCESS_KEY": "sekret", "AWS_REGION": "eu-west-1"}
    assert delta_options("/tmp/lake", {}, env=env) == {}
    assert iceberg_properties("file:///tmp/lake", {"region": "x"}, env=env) == {}


def test_other_clouds_pass_through() -> None:
    opts = {
        "google_service_account": "/k.json",
        "gcs.project-id": "p",
        "azure_storage_account_name": "acct",
    }
    assert delta_options("gs://b/p", opts, env={}) == {
        "google_service_account": "/k.json",
        "azure_storage_account_name": "acct",
    }
    assert iceberg_properties("gs://b/p", opts, env={}) == {"gcs.project-id": "p"}


def test_unsafe_rename_is_never_added_and_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    assert "AWS_S3_ALLOW_UNSAFE_RENAME" not in delta_options("s3://b/p", {"region": "x"}, env={})
    with caplog.at_level("WARNING", logger="lakehouse"):
        out = delta_options("s3://b/p", {"AWS_S3_ALLOW_UNSAFE_RENAME": "true"}, env={})
    assert out["AWS_S3_ALLOW_UNSAFE_RENAME"] == "true"
    assert "may lose commits" in caplog.text


@given(secret=st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/+", min_size=8, max_size=40))
def test_redact_removes_secrets_and_url_passwords(secret: str) -> None:
    opts = {"AWS_SECRET_ACCESS_KEY": secret, "AWS_REGION": "us-east-1"}
    text = f"failed: key={secret} in region us-east-1 at postgresql://u:{secret}@h/db"
    out = redact(text, opts)
    assert secret not in out and "us-east-1" in out
    assert secret in secret_values({"uri": f"postgresql://u:{secret}@h/db"})
