"""The exception tree of lakehouse.

Every error raised on purpose by the library derives from :class:`LakehouseError`, and
also from the builtin exception it resembles, so ``except ValueError`` keeps working::

    LakehouseError (Exception)
    ├── ConfigError (ValueError)           bad settings, naming the source and the key
    ├── DefinitionError (ValueError)       a bad ``@lh.asset`` / ``@lh.source`` declaration
    │   ├── CycleError                     the graph has a cycle; names the path
    │   ├── UnknownAssetError (LookupError) an upstream or selection names no asset
    │   └── DuplicateAssetError            two definitions share one name
    ├── PartitionError (ValueError)        a key or range outside the definition
    ├── SchemaError (ValueError)           output schema change the schema mode forbids
    ├── OutputError (TypeError)            an asset returned something unusable
    ├── CheckFailedError                   a blocking data-quality check failed
    ├── StorageError (OSError)             storage unreachable or a table unreadable
    │   └── CommitConflictError            a concurrent writer won; retryable
    ├── CatalogError (RuntimeError)        catalog unreadable, corrupt or too new
    ├── LeaseError (RuntimeError)          another run holds the asset partitions
    └── MaterializeError (RuntimeError)    one or more assets failed in a run

Each message names the asset (and partition where there is one) and says what to do.
"""

from __future__ import annotations

from typing import Any


class LakehouseError(Exception):
    """Root of every error raised on purpose by lakehouse.

    Attributes:
        asset: the asset the error concerns, when there is one.
        partition: the partition key or range, when there is one.
        hint: what to do about it.
    """

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        asset: str | None = None,
        partition: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.asset = asset
        self.partition = partition
        self.hint = hint
        self.message = message
        super().__init__(self._format())

    def _format(self) -> str:
        where = []
        if self.asset:
            where.append(f"asset '{self.asset}'")
        if self.partition:
            where.append(f"partition {self.partition}")
        text = (", ".join(where) + ": " if where else "") + self.message
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text

    def __reduce__(self) -> tuple[Any, ...]:  # survive pickling across processes
        return (
            _rebuild,
            (type(self), self.message, self.asset, self.partition, self.hint, self.__dict__),
        )


def _rebuild(
    cls: type[LakehouseError],
    message: str,
    asset: str | None,
    partition: str | None,
    hint: str | None,
    state: dict[str, Any],
) -> LakehouseError:
    err = cls.__new__(cls)
    err.__dict__.update(state)
    Exception.__init__(err, LakehouseError._format(err))
    return err


class ConfigError(LakehouseError, ValueError):
    """A setting has a wrong value; the message names its source and key."""


class DefinitionError(LakehouseError, ValueError):
    """An asset or source declaration is invalid."""


class CycleError(DefinitionError):
    """The asset graph has a cycle."""


class UnknownAssetError(DefinitionError, LookupError):
    """An upstream, selection or lookup names an asset that does not exist."""


class DuplicateAssetError(DefinitionError):
    """Two definitions share one asset name."""


class PartitionError(LakehouseError, ValueError):
    """A partition key or range is outside the asset's definition."""


class SchemaError(LakehouseError, ValueError):
    """An output schema changed in a way the asset's schema mode forbids."""


class OutputError(LakehouseError, TypeError):
    """An asset function returned a value lakehouse cannot write."""


class CheckFailedError(LakehouseError):
    """A blocking data-quality check failed; nothing was published."""


class StorageError(LakehouseError, OSError):
    """Storage could not be reached, or a table could not be read or written."""


class CommitConflictError(StorageError):
    """A concurrent writer committed first; the step may be retried."""

    retryable = True


class CatalogError(LakehouseError, RuntimeError):
    """The catalog database is unreadable, corrupt, or from a newer lakehouse."""


class LeaseError(LakehouseError, RuntimeError):
    """Another live run holds the asset partitions this run wants to compute."""


class MaterializeError(LakehouseError, RuntimeError):
    """One or more assets failed during ``materialize()``.

    Attributes:
        result: the :class:`~lakehouse.api.RunResult` of the run.
        failures: ``{asset: error text}`` for every failed asset.
    """

    def __init__(
        self, message: str, *, result: Any = None, failures: dict[str, str] | None = None
    ) -> None:
        self.result = result
        self.failures = dict(failures or {})
        super().__init__(message)
