"""Credentials never leak: a planted secret is absent from reprs, logs, the catalog
database files, table commits, lineage events and error messages, for Delta and Iceberg
tables on the local S3 server (whose credentials are not checked, so any secret works)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import lakehouse as lh

pytestmark = pytest.mark.s3

SECRET = "planted-S3cr3t-7f3a9c1e"
TOKEN = "planted-T0ken-42d8b6a0"


def _files_text(root: Path) -> bytes:
    out = b""
    for path in sorted(root.rglob("*")):
        if path.is_file():
            out += path.read_bytes()
    return out


def _check_clean(text: str | bytes, where: str) -> None:
    data = text.encode() if isinstance(text, str) else text
    for secret in (SECRET, TOKEN):
        assert secret.encode() not in data, f"secret found in {where}"


def test_planted_secret_appears_nowhere(
    s3_bucket: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    so = {**s3_bucket.storage_options, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_SESSION_TOKEN": TOKEN}
    events = tmp_path / "events.jsonl"

    @lh.asset(format="delta", code_version="1")
    def raw() -> pl.DataFrame:
        return pl.DataFrame({"x": [1, 2, 3]})

    @lh.asset(
        format="iceberg", code_version="1", partitions=lh.static(["a", "b"]), partition_column="k"
    )
    def refined(ctx: lh.Context, raw: pl.LazyFrame) -> pl.LazyFrame:
        return raw.join(pl.LazyFrame({"k": list(ctx.partition.keys)}), how="cross")

    @lh.asset(format="iceberg", code_version="1")
    def broken(raw: pl.DataFrame) -> pl.DataFrame:
        raise RuntimeError("boom")

    # lakehouse's own records at every level; libraries' at INFO and above (botocore's
    # DEBUG records print signed request headers, session token included, by design)
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="lakehouse")
    lake = lh.Lakehouse(
        f"s3://{s3_bucket.name}/secrets",
        assets=[raw, refined, broken],
        storage_options=so,
        local_dir=str(tmp_path / "state"),
        openlineage={"transport": "file", "path": str(events)},
    )
    with pytest.raises(lh.errors.MaterializeError) as info:
        lake.materialize(partitions="all")
    assert lake.read("refined").height == 6  # the secret was really used to write and read
    _check_clean(str(info.value), "the MaterializeError")
    for name in ("raw", "refined"):
        ref = lake.table_ref(lake._spec(name))
        assert SECRET in (ref.storage_options.values() if name == "raw" else ref.catalog.values())
        _check_clean(repr(ref), f"repr(TableRef {name})")
        _check_clean(repr(lake.table(name)), f"repr(lake.table({name!r}))")
        _check_clean(str(lake.history(name).to_dicts()), f"history({name})")
        _check_clean(str(lake.provenance(name).to_dicts()), f"provenance({name})")
        from lakehouse.storage import get_format

        _check_clean(str(get_format(ref.format).commits(ref)), f"commits of {name}")
    _check_clean(repr(lake), "repr(Lakehouse)")
    _check_clean(repr(lake.settings), "repr(Settings)")
    _check_clean(lake._repr_html_(), "Lakehouse HTML")
    _check_clean(str(lake.status().to_dicts()), "status()")
    _check_clean(str(lake.lineage("refined")), "lineage()")

    # a storage error (missing bucket) names the asset, but not the secret
    bad = lh.Lakehouse(
        "s3://no-such-bucket-for-lakehouse/wh",
        assets=[raw],
        storage_options=so,
        local_dir=str(tmp_path / "state2"),
    )
    with pytest.raises(lh.errors.MaterializeError) as bad_info:
        bad.materialize()
    assert "raw" in str(bad_info.value)
    _check_clean(str(bad_info.value), "the storage error")
    bad.close()
    lake.close()

    _check_clean(_files_text(tmp_path / "state"), "the catalog database files")
    _check_clean(_files_text(tmp_path / "state2"), "the second catalog's files")
    assert events.exists() and events.stat().st_size > 0
    _check_clean(events.read_bytes(), "the OpenLineage events")
    _check_clean("\n".join(r.getMessage() for r in caplog.records), "log records")
    _check_clean(caplog.text, "formatted logs")
