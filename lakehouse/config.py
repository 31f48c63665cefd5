"""Settings: keyword arguments, then ``LAKEHOUSE_*`` environment variables, then
``[tool.lakehouse]`` in ``pyproject.toml`` or a ``lakehouse.toml``, found from the working
directory upwards. Nothing is read at import time.

>>> s = Settings.resolve(warehouse="./lake", env={}, search_from=None)
>>> s.format, s.engine, s.executor
('delta', 'polars', 'serial')
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .errors import ConfigError

_CHOICES = {
    "format": ("delta", "iceberg"),
    "engine": ("polars", "duckdb"),
    "executor": ("serial", "threads", "dask"),
}


@dataclass(frozen=True)
class Settings:
    """Where the lakehouse lives and how it runs.

    Attributes:
        warehouse: local path or URI (``file://``, ``s3://bucket/prefix`` ...).
        catalog: SQLAlchemy URL of the catalog (default: a SQLite file, see ``catalog_url``).
        format: default table format of assets that do not set one.
        engine: default engine of assets that do not set one (informational).
        storage_options: credentials/endpoint for object storage (never printed).
        executor: ``serial``, ``threads`` or ``dask``.
        max_workers: parallelism for ``threads``.
        local_dir: where local state (SQLite catalog for a remote warehouse) lives.
    """

    warehouse: str = "./lake"
    catalog: str | None = None
    format: str = "delta"
    engine: str = "polars"
    storage_options: Mapping[str, str] = field(default_factory=dict, repr=False)
    executor: str = "serial"
    max_workers: int | None = None
    local_dir: str | None = None
    iceberg_catalog: Mapping[str, str] = field(default_factory=dict, repr=False)
    progress: bool | None = None

    @property
    def is_local(self) -> bool:
        return "://" not in self.warehouse or self.warehouse.startswith("file://")

    @property
    def warehouse_uri(self) -> str:
        """The warehouse as an absolute path (local) or URI (remote), without a trailing '/'."""
        if self.is_local:
            path = self.warehouse[len("file://"):] if self.warehouse.startswith("file://") else self.warehouse
            return str(Path(path).expanduser().resolve())
        return self.warehouse.rstrip("/")

    @property
    def state_dir(self) -> Path:
        """Local folder for the embedded catalog."""
        if self.local_dir:
            return Path(self.local_dir).expanduser().resolve()
        if self.is_local:
            return Path(self.warehouse_uri) / ".lakehouse"
        safe = self.warehouse.replace("://", "_").replace("/", "_")
        return Path.home() / ".cache" / "lakehouse" / safe

    @property
    def catalog_url(self) -> str:
        """The catalog URL: explicit, or a SQLite file in :attr:`state_dir`."""
        if self.catalog:
            return self.catalog
        return f"sqlite:///{self.state_dir / 'catalog.db'}"

    @classmethod
    def resolve(
        cls,
        *,
        env: Mapping[str, str] | None = None,
        search_from: str | Path | None = ".",
        **kwargs: Any,
    ) -> Settings:
        """Settings from keyword arguments, environment and project files (highest first).

        Raises:
            ConfigError: for an unknown key or a wrong value, naming its source.
        """
        names = {f.name for f in fields(cls)}
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        file_values, file_name = _file_settings(search_from) if search_from is not None else ({}, "")
        for key, value in file_values.items():
            if key not in names:
                raise ConfigError(f"unknown setting {key!r} in {file_name}", hint=f"valid keys: {sorted(names)}")
            values[key] = value
            sources[key] = file_name
        environ = os.environ if env is None else env
        for name in names:
            var = f"LAKEHOUSE_{name.upper()}"
            if var in environ:
                values[name] = environ[var]
                sources[name] = f"environment variable {var}"
        for key, value in kwargs.items():
            if key not in names:
                raise ConfigError(f"unknown setting {key!r}", hint=f"valid keys: {sorted(names)}")
            if value is not None:
                values[key] = value
                sources[key] = "keyword argument"
        return cls(**{k: _coerce(k, v, sources[k]) for k, v in values.items()})

    def replace(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    def __repr__(self) -> str:
        return (
            f"Settings(warehouse={self.warehouse!r}, catalog={_mask(self.catalog_url)!r}, format={self.format!r}, "
            f"engine={self.engine!r}, executor={self.executor!r})"
        )


def _mask(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in creds else url
    return url


def _coerce(key: str, value: Any, source: str) -> Any:
    if key in _CHOICES:
        if not isinstance(value, str) or value not in _CHOICES[key]:
            raise ConfigError(
                f"{key}={value!r} from {source} is not valid", hint=f"use one of {', '.join(_CHOICES[key])}"
            )
        return value
    if key == "max_workers":
        try:
            n = int(value) if value is not None else None
        except (TypeError, ValueError):
            raise ConfigError(f"max_workers={value!r} from {source} is not an integer", hint="e.g. 4") from None
        if n is not None and n < 1:
            raise ConfigError(f"max_workers={value!r} from {source} must be >= 1", hint="e.g. 4")
        return n
    if key in ("storage_options", "iceberg_catalog"):
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise ConfigError(f"{key} from {source} is not a JSON object", hint='e.g. {"AWS_REGION": "eu-west-1"}') from None
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key} from {source} must be a mapping", hint='e.g. {"AWS_REGION": "eu-west-1"}')
        return {str(k): str(v) for k, v in value.items()}
    if key == "progress":
        if isinstance(value, str):
            low = value.lower()
            if low not in ("1", "0", "true", "false", "yes", "no"):
                raise ConfigError(f"progress={value!r} from {source} is not a boolean", hint="true or false")
            return low in ("1", "true", "yes")
        return bool(value) if value is not None else None
    if key in ("warehouse", "catalog", "local_dir"):
        if not isinstance(value, (str, os.PathLike)):
            raise ConfigError(f"{key}={value!r} from {source} must be a string", hint="a path or URL")
        return str(value)
    return value


def _file_settings(start: str | Path) -> tuple[dict[str, Any], str]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError:
            return {}, ""
    here = Path(start).resolve()
    for folder in (here, *here.parents):
        for name in ("lakehouse.toml", "pyproject.toml"):
            path = folder / name
            if not path.is_file():
                continue
            try:
                data = tomllib.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise ConfigError(f"cannot parse {path}: {exc}", hint="fix the TOML syntax") from None
            if name == "pyproject.toml":
                section = data.get("tool", {}).get("lakehouse")
                if section is None:
                    continue
                return dict(section), f"{path} [tool.lakehouse]"
            return dict(data.get("lakehouse", data)), str(path)
    return {}, ""
