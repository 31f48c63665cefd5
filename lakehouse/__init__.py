"""lakehouse: declare data assets as Python functions; materialize only what is stale
into Delta Lake or Apache Iceberg tables, with lineage and partitions in a catalog.

``import lakehouse`` is light: Polars, DuckDB, deltalake, pyiceberg, pyarrow and
SQLAlchemy are imported only when first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._logging import install as _install_logging
from .assets import AssetSpec, Context, PartitionContext, WriteMode, asset, merge
from .checks import CheckResult, accepted_values, check, expect, not_null, row_count, unique
from .config import Settings
from .errors import (
    CatalogError,
    CheckFailedError,
    CommitConflictError,
    ConfigError,
    CycleError,
    DefinitionError,
    DuplicateAssetError,
    LakehouseError,
    LeaseError,
    MaterializeError,
    OutputError,
    PartitionError,
    SchemaError,
    StorageError,
    UnknownAssetError,
)
from .partitions import daily, hourly, monthly, multi, static, upstream, weekly
from .sources import delta_table, files, iceberg_table, source, sql_table

__version__ = "0.1.0"

_install_logging()  # log records carry run_id/asset/partition; silent unless logging is configured

# Public names whose modules import heavy packages: resolved on first access.
_LAZY = {
    "Lakehouse": ("lakehouse.api", "Lakehouse"),
    "RunResult": ("lakehouse.execution.result", "RunResult"),
    "TableInfo": ("lakehouse.api", "TableInfo"),
    "Lineage": ("lakehouse.api", "Lineage"),
    "DaskExecutor": ("lakehouse.execution.dask", "DaskExecutor"),
}

if TYPE_CHECKING:  # pragma: no cover
    from .api import Lakehouse, Lineage, TableInfo
    from .execution.dask import DaskExecutor
    from .execution.result import RunResult


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'lakehouse' has no attribute {name!r}")
    value = getattr(importlib.import_module(target[0]), target[1])
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "AssetSpec",
    "CatalogError",
    "CheckFailedError",
    "CheckResult",
    "CommitConflictError",
    "ConfigError",
    "Context",
    "CycleError",
    "DaskExecutor",
    "DefinitionError",
    "DuplicateAssetError",
    "Lakehouse",
    "LakehouseError",
    "LeaseError",
    "Lineage",
    "MaterializeError",
    "OutputError",
    "PartitionContext",
    "PartitionError",
    "RunResult",
    "SchemaError",
    "Settings",
    "StorageError",
    "TableInfo",
    "UnknownAssetError",
    "WriteMode",
    "__version__",
    "accepted_values",
    "asset",
    "check",
    "daily",
    "delta_table",
    "expect",
    "files",
    "hourly",
    "iceberg_table",
    "merge",
    "monthly",
    "multi",
    "not_null",
    "row_count",
    "source",
    "sql_table",
    "static",
    "unique",
    "upstream",
    "weekly",
]
