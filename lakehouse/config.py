"""Settings: where a lakehouse lives and how it runs.

Every setting comes from the first of these sources that sets it (highest first):

1. keyword arguments (``lh.Lakehouse("./lake", format="iceberg")``, ``Settings.resolve(...)``);
2. ``LAKEHOUSE_*`` environment variables (``LAKEHOUSE_WAREHOUSE=s3://bucket/lake``);
3. a ``lakehouse.toml`` file, or the ``[tool.lakehouse]`` table of a ``pyproject.toml``,
   whichever is found first from the working directory upwards (in one folder,
   ``lakehouse.toml`` wins);
4. the defaults below.

Nothing is read at import time: :meth:`Settings.resolve` reads the environment and the
files when it is called (``lh.Lakehouse(...)`` calls it). A wrong value raises
:class:`~lakehouse.errors.ConfigError` naming the source and the key.

>>> s = Settings.resolve(warehouse="./lake", env={}, search_from=None)
>>> s.format, s.engine, s.executor
('delta', 'polars', 'serial')
>>> Settings.resolve(env={"LAKEHOUSE_FORMAT": "iceberg"}, search_from=None).format
'iceberg'
>>> Settings.resolve(env={"LAKEHOUSE_FORMAT": "csv"}, search_from=None)
Traceback (most recent call last):
...
lakehouse.errors.ConfigError: format='csv' from environment variable LAKEHOUSE_FORMAT is not valid
  hint: use one of delta, iceberg
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from .errors import ConfigError

_CHOICES = {
    "format": ("delta", "iceberg"),
    "engine": ("polars", "duckdb"),
    "executor": ("serial", "threads", "dask"),
}

#: Other spellings accepted for a setting, in every source.
ALIASES = {"concurrency": "max_workers", "catalog_url": "catalog"}

#: Settings holding a local path: relative values from a file are relative to that file
#: (so is ``project`` when it names a ``.py`` file).
_PATH_KEYS = ("warehouse", "local_dir")


@dataclass(frozen=True)
class Settings:
    """Where the lakehouse lives and how it runs (frozen).

    Build one with :meth:`resolve` to read the environment and project files too;
    ``Settings(...)`` itself uses only its arguments and the defaults.

    Attributes:
        warehouse: local path or URI (``file://``, ``s3://bucket/prefix`` ...).
        catalog: SQLAlchemy URL of the catalog (default: a SQLite file, see
            :attr:`catalog_url`); ``catalog_url`` is accepted as a key too.
        format: default table format of assets that do not set one.
        engine: default engine of assets that do not set one (informational).
        storage_options: credentials/endpoint for object storage (never printed).
        executor: ``serial``, ``threads`` or ``dask``.
        max_workers: parallelism for ``threads`` (``concurrency`` is accepted as a key).
        local_dir: where local state (SQLite catalog for a remote warehouse) lives.
        iceberg_catalog: pyiceberg catalog properties (default: a SQL catalog in the
            lakehouse's own catalog database).
        progress: show progress bars (default: on a terminal or in Jupyter, for runs
            longer than about a second).
        project: the module (``pkg.assets``) or ``.py`` file defining the assets; the
            ``lakehouse`` command line uses it when ``--project`` is not given.
        openlineage: send OpenLineage events for every asset step, e.g.
            ``{"transport": "file", "path": "events.jsonl"}`` or
            ``{"transport": "http", "url": "http://localhost:5000"}`` (see docs/lineage.md).
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
    project: str | None = None
    openlineage: Mapping[str, Any] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            checked = _coerce(f.name, value, "Settings(...)")
            if checked is not value and checked != value:
                object.__setattr__(self, f.name, checked)

    @property
    def concurrency(self) -> int | None:
        """Alias of :attr:`max_workers`."""
        return self.max_workers

    @property
    def is_local(self) -> bool:
        return "://" not in self.warehouse or self.warehouse.startswith("file://")

    @cached_property
    def warehouse_uri(self) -> str:
        """The warehouse as an absolute path (local) or URI (remote), without a trailing '/'.

        Resolved once: a later change of the working directory does not move the lakehouse.
        """
        if self.is_local:
            path = (
                self.warehouse[len("file://") :]
                if self.warehouse.startswith("file://")
                else self.warehouse
            )
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

        Args:
            env: the environment to read (default: ``os.environ``); ``{}`` reads none.
            search_from: the folder where the search for ``lakehouse.toml`` /
                ``pyproject.toml`` starts (default: the working directory); ``None``
                reads no file.
            **kwargs: settings; ``None`` values are ignored (they do not override).

        Raises:
            ConfigError: for an unknown key or a wrong value, naming its source.
        """
        names = {f.name for f in fields(cls)}
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        if search_from is not None:
            file_values, file_path, file_label = _file_settings(search_from)
        else:
            file_values, file_path, file_label = {}, None, ""
        for raw_key, value in file_values.items():
            key = _canonical(raw_key, names, file_label)
            if (
                file_path is not None
                and isinstance(value, str)
                and (
                    key in _PATH_KEYS or (key == "project" and value.split(":")[0].endswith(".py"))
                )
            ):
                path, colon, attr = value.partition(":") if key == "project" else (value, "", "")
                value = _relative_to(path, file_path.parent) + colon + attr
            values[key] = value
            sources[key] = f"{file_label}, key {raw_key!r}"
        environ = os.environ if env is None else env
        for name in sorted(names | set(ALIASES)):
            var = f"LAKEHOUSE_{name.upper()}"
            if var in environ:
                key = ALIASES.get(name, name)
                values[key] = environ[var]
                sources[key] = f"environment variable {var}"
        for raw_key, value in kwargs.items():
            key = _canonical(raw_key, names, "keyword arguments")
            if value is not None:
                values[key] = value
                sources[key] = f"keyword argument {raw_key}="
        return cls(**{k: _coerce(k, v, sources[k]) for k, v in values.items()})

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied (validated like keyword arguments)."""
        names = {f.name for f in fields(self)}
        clean = {_canonical(k, names, "replace()"): v for k, v in changes.items()}
        return replace(self, **{k: _coerce(k, v, f"replace({k}=...)") for k, v in clean.items()})

    def __repr__(self) -> str:
        return (
            f"Settings(warehouse={self.warehouse!r}, catalog={_mask(self.catalog_url)!r}, "
            f"format={self.format!r}, engine={self.engine!r}, executor={self.executor!r})"
        )


def _canonical(key: str, names: set[str], source: str) -> str:
    key = ALIASES.get(key, key)
    if key not in names:
        raise ConfigError(
            f"unknown setting {key!r} in {source}",
            hint=f"valid keys: {', '.join(sorted(names | set(ALIASES)))}",
        )
    return key


def _relative_to(value: str, folder: Path) -> str:
    if "://" in value and not value.startswith("file://"):
        return value
    raw = value[len("file://") :] if value.startswith("file://") else value
    path = Path(raw).expanduser()
    return str(path if path.is_absolute() else (folder / path).resolve())


def _mask(url: str) -> str:
    """``url`` with its password replaced by ``***``.

    >>> _mask("postgresql+psycopg://me:secret@db:5432/lake")
    'postgresql+psycopg://me:***@db:5432/lake'
    """
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
                f"{key}={value!r} from {source} is not valid",
                hint=f"use one of {', '.join(_CHOICES[key])}",
            )
        return value
    if key == "max_workers":
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ConfigError(
                f"max_workers={value!r} from {source} is not an integer", hint="e.g. 4"
            )
        try:
            n = int(value)
        except ValueError:
            raise ConfigError(
                f"max_workers={value!r} from {source} is not an integer", hint="e.g. 4"
            ) from None
        if n < 1:
            raise ConfigError(f"max_workers={value!r} from {source} must be >= 1", hint="e.g. 4")
        return n
    if key in ("storage_options", "iceberg_catalog"):
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise ConfigError(
                    f"{key} from {source} is not a JSON object",
                    hint='e.g. {"AWS_REGION": "eu-west-1"}',
                ) from None
        if not isinstance(value, Mapping):
            raise ConfigError(
                f"{key} from {source} must be a mapping", hint='e.g. {"AWS_REGION": "eu-west-1"}'
            )
        return {str(k): str(v) for k, v in value.items()}
    if key == "progress":
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, str):
            low = value.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
        raise ConfigError(
            f"progress={value!r} from {source} is not a boolean", hint="true or false"
        )
    if key == "openlineage":
        if value is None:
            return None
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise ConfigError(
                    f"openlineage from {source} is not a JSON object",
                    hint='e.g. {"transport": "file", "path": "lineage.jsonl"}',
                ) from None
        if not isinstance(value, Mapping) or "transport" not in value:
            raise ConfigError(
                f"openlineage={value!r} from {source} must be a mapping with a 'transport'",
                hint='e.g. {"transport": "http", "url": "http://localhost:5000"}',
            )
        return dict(value)
    if key in ("warehouse", "catalog", "local_dir", "project"):
        if value is None and key != "warehouse":
            return None
        if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
            raise ConfigError(
                f"{key}={value!r} from {source} must be a non-empty string", hint="a path or URL"
            )
        return str(value)
    return value


def _file_settings(start: str | Path) -> tuple[dict[str, Any], Path | None, str]:
    """The settings table of the nearest ``lakehouse.toml`` / ``pyproject.toml`` upwards."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # Python 3.10: the tomli backport, a dependency there
        import tomli as tomllib
    here = Path(start).resolve()
    for folder in (here, *here.parents):
        for name in ("lakehouse.toml", "pyproject.toml"):
            path = folder / name
            if not path.is_file():
                continue
            try:
                data = tomllib.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise ConfigError(
                    f"cannot parse {path}: {exc}", hint="fix the TOML syntax"
                ) from None
            if name == "pyproject.toml":
                section = data.get("tool", {}).get("lakehouse")
                if section is None:
                    continue
                label = f"{path} [tool.lakehouse]"
            else:
                section = data.get("lakehouse", data)
                label = str(path)
            if not isinstance(section, dict):
                raise ConfigError(
                    f"{label} is not a table of settings", hint='e.g. warehouse = "./lake"'
                )
            return dict(section), path, label
    return {}, None, ""
