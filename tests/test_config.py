"""Settings: keyword arguments > LAKEHOUSE_* environment > lakehouse.toml / [tool.lakehouse]."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import lakehouse as lh
from lakehouse.config import Settings
from lakehouse.errors import ConfigError


def test_defaults_without_any_source() -> None:
    s = Settings.resolve(env={}, search_from=None)
    assert (s.warehouse, s.format, s.engine, s.executor, s.max_workers) == (
        "./lake",
        "delta",
        "polars",
        "serial",
        None,
    )
    assert s.catalog_url.startswith("sqlite:///") and s.catalog_url.endswith(
        "/lake/.lakehouse/catalog.db"
    )


def test_precedence_kwargs_over_env_over_file(tmp_path: Path) -> None:
    (tmp_path / "lakehouse.toml").write_text(
        'format = "iceberg"\nexecutor = "threads"\nmax_workers = 2\n'
    )
    env = {"LAKEHOUSE_EXECUTOR": "serial", "LAKEHOUSE_MAX_WORKERS": "3"}
    s = Settings.resolve(env=env, search_from=tmp_path, max_workers=5)
    assert s.format == "iceberg"  # only the file sets it
    assert s.executor == "serial"  # env beats the file
    assert s.max_workers == 5  # keyword beats env
    assert Settings.resolve(env=env, search_from=tmp_path).max_workers == 3
    # None keyword arguments do not override
    assert Settings.resolve(env=env, search_from=tmp_path, executor=None).executor == "serial"


def test_pyproject_tool_table_found_upwards_and_lakehouse_toml_wins(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n\n[tool.lakehouse]\nwarehouse = "wh"\n'
    )
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    s = Settings.resolve(env={}, search_from=deep)
    assert s.warehouse == str(tmp_path / "wh")  # relative to the file, not the working directory
    (tmp_path / "a" / "lakehouse.toml").write_text('[lakehouse]\nwarehouse = "s3://bucket/lake"\n')
    assert Settings.resolve(env={}, search_from=deep).warehouse == "s3://bucket/lake"


def test_pyproject_without_tool_table_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "lakehouse.toml").write_text('engine = "duckdb"\n')
    inner = tmp_path / "inner"
    inner.mkdir()
    (inner / "pyproject.toml").write_text('[project]\nname = "inner"\n')
    assert Settings.resolve(env={}, search_from=inner).engine == "duckdb"


def test_nothing_is_read_at_import_time(tmp_path: Path) -> None:
    (tmp_path / "lakehouse.toml").write_text('format = "parquet"\n')
    code = "import lakehouse, lakehouse.config; print('imported')"
    env = {**os.environ, "LAKEHOUSE_FORMAT": "csv", "PYTHONPATH": str(Path(lh.__file__).parents[1])}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert "imported" in proc.stdout
    # ... and resolving does read them, naming the winning source
    with pytest.raises(ConfigError, match="LAKEHOUSE_FORMAT"):
        Settings.resolve(env={"LAKEHOUSE_FORMAT": "csv"}, search_from=tmp_path)


@pytest.mark.parametrize(
    ("source", "key", "value", "expected"),
    [
        ("kw", "format", "csv", "keyword argument format="),
        ("env", "format", "csv", "environment variable LAKEHOUSE_FORMAT"),
        ("file", "format", '"csv"', "lakehouse.toml, key 'format'"),
        ("kw", "max_workers", 0, "keyword argument max_workers="),
        ("env", "max_workers", "many", "environment variable LAKEHOUSE_MAX_WORKERS"),
        ("file", "max_workers", "true", "lakehouse.toml, key 'max_workers'"),
        ("env", "storage_options", "{not json", "environment variable LAKEHOUSE_STORAGE_OPTIONS"),
        ("file", "storage_options", '"x"', "lakehouse.toml, key 'storage_options'"),
        ("env", "progress", "maybe", "environment variable LAKEHOUSE_PROGRESS"),
        ("file", "warehouse", "3", "lakehouse.toml, key 'warehouse'"),
        ("file", "concurrency", "-1", "lakehouse.toml, key 'concurrency'"),
    ],
)
def test_wrong_values_name_source_and_key(
    tmp_path: Path, source: str, key: str, value: object, expected: str
) -> None:
    env: dict[str, str] = {}
    kwargs: dict[str, object] = {}
    if source == "kw":
        kwargs[key] = value
    elif source == "env":
        env[f"LAKEHOUSE_{key.upper()}"] = str(value)
    else:
        (tmp_path / "lakehouse.toml").write_text(f"{key} = {value}\n")
    with pytest.raises(ConfigError) as info:
        Settings.resolve(env=env, search_from=tmp_path, **kwargs)
    text = str(info.value)
    assert expected in text
    assert (key if key != "concurrency" else "max_workers") in text
    assert info.value.hint  # says what to do
    assert isinstance(info.value, ValueError)


def test_unknown_keys_are_errors_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.lakehouse]\nwarehose = 'typo'\n")
    with pytest.raises(
        ConfigError, match=r"unknown setting 'warehose' in .*pyproject.toml \[tool.lakehouse\]"
    ):
        Settings.resolve(env={}, search_from=tmp_path)
    with pytest.raises(ConfigError, match="unknown setting 'colour'"):
        Settings.resolve(env={}, search_from=None, colour="red")
    with pytest.raises(ConfigError, match="unknown setting 'colour'"):
        lh.Lakehouse(str(tmp_path), colour="red")


def test_broken_toml_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "lakehouse.toml").write_text("format = \n")
    with pytest.raises(ConfigError, match=r"cannot parse .*lakehouse\.toml"):
        Settings.resolve(env={}, search_from=tmp_path)


def test_aliases_and_frozen() -> None:
    s = Settings.resolve(
        env={"LAKEHOUSE_CONCURRENCY": "4"}, search_from=None, catalog_url="sqlite:///x.db"
    )
    assert s.max_workers == 4 and s.concurrency == 4 and s.catalog_url == "sqlite:///x.db"
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.format = "iceberg"  # type: ignore[misc]
    assert s.replace(format="iceberg").format == "iceberg"
    with pytest.raises(ConfigError, match="replace"):
        s.replace(format="csv")
    with pytest.raises(ConfigError, match=r"Settings\(\.\.\.\)"):
        Settings(format="csv")


def test_lakehouse_uses_the_same_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "lakehouse.toml").write_text('warehouse = "wh"\nformat = "iceberg"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LAKEHOUSE_EXECUTOR", "threads")
    lake = lh.Lakehouse(assets=[])
    assert lake.settings.warehouse == str(tmp_path / "wh")
    assert (lake.settings.format, lake.settings.executor) == ("iceberg", "threads")
    assert lh.Lakehouse(assets=[], format="delta").settings.format == "delta"


def test_secrets_are_not_printed() -> None:
    s = Settings.resolve(
        env={},
        search_from=None,
        catalog="postgresql+psycopg://me:hunter2@db/lake",
        storage_options={"AWS_SECRET_ACCESS_KEY": "hunter2"},
    )
    assert "hunter2" not in repr(s)


@given(
    st.sampled_from(["1", "true", "TRUE", "yes", "on"]),
    st.sampled_from(["0", "false", "No", "off"]),
)
def test_progress_accepts_boolean_words(yes: str, no: str) -> None:
    assert Settings.resolve(env={"LAKEHOUSE_PROGRESS": yes}, search_from=None).progress is True
    assert Settings.resolve(env={"LAKEHOUSE_PROGRESS": no}, search_from=None).progress is False
