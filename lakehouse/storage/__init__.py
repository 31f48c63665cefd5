"""Table formats and object storage (layer 2).

Each format implements :class:`TableFormat`; they exchange Arrow data with the
execution layer and never import the engines. :func:`get_format` returns the adapter
for a format name, importing its library only then.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import CommitConflictError, SchemaError, StorageError

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa
    import pyarrow.dataset as pads

    from ..assets import TableRef, WriteMode, WrittenFiles

#: Keys of the provenance stored in every table commit.
PROVENANCE_PREFIX = "lakehouse."


@dataclass(frozen=True)
class WriteResult:
    """What one committed write produced."""

    version: str
    seq: int
    rows: int
    schema_fp: str
    bytes: int | None = None
    #: every data file of ``version`` when the write replaced the whole table and a plain
    #: Parquet scan of them reads the version exactly (else ``None``): later steps of the
    #: same run read them without opening the table
    files: WrittenFiles | None = None


@dataclass(frozen=True)
class Staged:
    """Output written where readers cannot see it, waiting for its audit (write-audit-publish).

    A format that can stage implements ``stage(ref, data, *, mode, predicate, where,
    partition_by, schema_mode, stage_id) -> Staged``, ``publish(staged, provenance) ->
    WriteResult`` (ONE atomic commit), ``discard(staged)`` and ``clean_stages(ref, keep)``
    (remove stages of dead runs). Formats without ``stage`` are audited in memory before
    their ``write``; their ``write`` may accept ``before_commit=`` (called after the data
    files are written and before the commit).

    Attributes:
        ref: the target table.
        data: a readable reference to the staged data (a Delta stage table).
        stage_id: the id of the stage (the step id).
        rows: rows staged.
        schema_fp: fingerprint of the staged schema.
        token: format-private details.
    """

    ref: TableRef
    data: TableRef
    stage_id: str
    rows: int
    schema_fp: str
    token: Mapping[str, Any] = field(default_factory=dict)


class TableFormat(Protocol):
    """The seam every table format implements."""

    name: str

    def exists(self, ref: TableRef) -> bool: ...

    def current(self, ref: TableRef) -> tuple[str, int] | None:
        """``(version, seq)`` of the table's current version, or ``None`` if absent."""

    def schema(self, ref: TableRef) -> pa.Schema | None: ...

    def write(
        self,
        ref: TableRef,
        data: pa.Table | pa.RecordBatchReader,
        *,
        mode: WriteMode,
        predicate: str | None,
        partition_by: list[str],
        schema_mode: str,
        provenance: Mapping[str, str],
    ) -> WriteResult: ...

    def dataset(self, ref: TableRef) -> pads.Dataset: ...

    def read_arrow(self, ref: TableRef) -> pa.Table: ...

    def commits(self, ref: TableRef) -> list[dict[str, Any]]:
        """Every commit with its lakehouse provenance, oldest first."""


def first_line(exc: BaseException) -> str:
    """The first line of an error's text (its type name when it has none), for messages."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def maintenance_error(
    exc: BaseException, ref: TableRef, what: str, *, table: str, conflict: bool, hint: str
) -> Exception:
    """The :class:`LakehouseError` for a failed maintenance operation on a table:
    ``conflict`` when a concurrent writer won (retryable), else a storage error."""
    if isinstance(exc, (StorageError, CommitConflictError)):
        return exc  # type: ignore[return-value]
    text = first_line(exc)
    if conflict:
        return CommitConflictError(
            f"a concurrent writer committed first while {what} the table: {text}",
            asset=ref.asset,
            hint="retry when no materialization writes this asset",
        )
    return StorageError(
        f"{what} {table} failed: {type(exc).__name__}: {text}", asset=ref.asset, hint=hint
    )


def get_format(name: str) -> TableFormat:
    """The adapter for ``name`` (``"delta"`` or ``"iceberg"``)."""
    if name == "delta":
        from .delta import DeltaFormat

        return DeltaFormat()
    if name == "iceberg":
        from .iceberg import IcebergFormat

        return IcebergFormat()
    raise ValueError(f"unknown table format {name!r}")


@dataclass(frozen=True)
class MaintenanceResult:
    """What one maintenance operation did (or would do, in a dry run) to one table.

    Attributes:
        version_before: the table version before the operation.
        version_after: the version it made (``None``: no commit).
        files_before: live data files before (optimize) / files looked at.
        files_after: live data files after (optimize; estimated in a dry run).
        files_removed: files deleted from storage (vacuum, purge, drop).
        bytes_removed: their size.
        rows: rows deleted (erasure, wipe).
        detail: format-specific notes.
    """

    version_before: str | None = None
    version_after: str | None = None
    files_before: int = 0
    files_after: int = 0
    files_removed: int = 0
    bytes_removed: int = 0
    rows: int = 0
    detail: str | None = None


class TableMaintenance(Protocol):
    """Maintenance operations of a table format (see ``lakehouse.maintenance``).

    ``get_maintenance(name)`` returns the adapter; the heavy libraries load only then.
    Versions are the format's own ids as text (Delta version, Iceberg snapshot id).
    """

    def versions(self, ref: TableRef) -> list[tuple[str, float]]:
        """``(version, commit time in epoch seconds)`` of every readable version, oldest first."""

    def live_files(self, ref: TableRef) -> list[dict[str, Any]]:
        """``{"path", "size", "partition"}`` of every data file of the current version."""

    def unchanged(self, ref: TableRef, since: str, until: str) -> bool:
        """Whether the versions after ``since`` up to ``until`` hold the same rows
        (only compaction, vacuum or lakehouse maintenance happened in between)."""

    def compact(
        self,
        ref: TableRef,
        *,
        where: Any,
        zorder: list[str] | None,
        dry_run: bool,
        properties: Mapping[str, str],
        coarsen: bool = True,
    ) -> MaintenanceResult:
        """Rewrite small data files (of the partitions ``where`` selects) into few large ones."""

    def vacuum(
        self, ref: TableRef, *, keep: set[str], older_than: float, dry_run: bool
    ) -> MaintenanceResult:
        """Remove files and versions older than ``older_than`` (epoch seconds), except
        what the versions in ``keep`` and the current version need."""

    def delete_where(
        self, ref: TableRef, match: Any, properties: Mapping[str, str]
    ) -> MaintenanceResult:
        """Delete the rows for which ``match(arrow_table)`` is true, in one commit."""

    def purge(
        self, ref: TableRef, *, keep: set[str], properties: Mapping[str, str]
    ) -> MaintenanceResult:
        """Physically remove every older version except ``keep`` (retention and pins
        overridden), and every file and log/metadata entry only they referenced."""

    def delete_partitions(
        self, ref: TableRef, where: Any, properties: Mapping[str, str]
    ) -> MaintenanceResult:
        """Delete every row of the partitions ``where`` (a neutral predicate) selects."""

    def drop(self, ref: TableRef) -> MaintenanceResult:
        """Delete the table and all its files."""

    def rename(self, old: TableRef, new: TableRef) -> None:
        """Move the table of ``old`` to where ``new`` says, history included."""


def get_maintenance(name: str) -> TableMaintenance:
    """The maintenance adapter for ``name`` (``"delta"`` or ``"iceberg"``)."""
    if name == "delta":
        from .delta_maintenance import DeltaMaintenance

        return DeltaMaintenance()
    if name == "iceberg":
        from .iceberg_maintenance import IcebergMaintenance

        return IcebergMaintenance()
    raise ValueError(f"unknown table format {name!r}")


def schema_fingerprint(schema: pa.Schema) -> str:
    """A short stable hash of an Arrow schema (names and normalized types)."""
    text = ";".join(f"{f.name}:{normalize_type(f.type)}" for f in schema)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def normalize_type(t: Any) -> str:
    """Arrow type text with storage variants (large_/view) folded together."""
    text = str(t)
    for a, b in (
        ("large_string", "string"),
        ("string_view", "string"),
        ("large_binary", "binary"),
        ("binary_view", "binary"),
        ("large_list", "list"),
        ("list_view", "list"),
        ("utf8", "string"),
        # the same instant: DuckDB says Etc/UTC, Delta and Iceberg store UTC
        ("tz=Etc/UTC", "tz=UTC"),
        ("tz=+00:00", "tz=UTC"),
    ):
        text = text.replace(a, b)
    return text


def schema_diff(old: pa.Schema, new: pa.Schema) -> tuple[list[str], list[str], list[str]]:
    """``(added, removed, changed)`` column descriptions between two schemas."""
    o = {f.name: normalize_type(f.type) for f in old}
    n = {f.name: normalize_type(f.type) for f in new}
    added = [f"+ {k}: {v}" for k, v in n.items() if k not in o]
    removed = [f"- {k}: {v}" for k, v in o.items() if k not in n]
    changed = [f"~ {k}: {o[k]} -> {n[k]}" for k in n if k in o and o[k] != n[k]]
    return added, removed, changed


_WIDENINGS = {
    ("int8", "int16"),
    ("int8", "int32"),
    ("int8", "int64"),
    ("int16", "int32"),
    ("int16", "int64"),
    ("int32", "int64"),
    ("float", "double"),
    ("halffloat", "float"),
    ("halffloat", "double"),
    ("date32[day]", "timestamp[us]"),
}


def check_schema(
    asset: str, old: pa.Schema | None, new: pa.Schema, mode: str, *, full_overwrite: bool
) -> None:
    """Raise :class:`SchemaError` when ``new`` differs from ``old`` in a way ``mode`` forbids.

    ``strict``: any difference. ``add_columns``: new columns and type widening allowed;
    removed columns must be absent from the output (they become null). ``replace``:
    anything, but only for a full overwrite.
    """
    if old is None:
        return
    added, removed, changed = schema_diff(old, new)
    if not (added or removed or changed):
        return
    diff = "\n    ".join(added + removed + changed)
    if mode == "replace" and full_overwrite:
        return
    if mode == "add_columns":
        o = {f.name: normalize_type(f.type) for f in old}
        n = {f.name: normalize_type(f.type) for f in new}
        bad = [k for k in n if k in o and o[k] != n[k] and (o[k], n[k]) not in _WIDENINGS]
        if not bad and not removed:
            return
        raise SchemaError(
            f"schema change not allowed by schema='add_columns':\n    {diff}",
            asset=asset,
            hint="only new columns and type widening are additive; use schema='replace' with "
            "a full overwrite",
        )
    raise SchemaError(
        f"the output schema differs from the table's (schema='{mode}'); nothing was "
        f"published:\n    {diff}",
        asset=asset,
        hint="keep the columns stable, or set schema='add_columns' (additive) or schema='replace'",
    )


def counted(reader: pa.RecordBatchReader, counter: list[int]) -> pa.RecordBatchReader:
    """Wrap a reader so the rows streamed through it are added to ``counter[0]``."""
    import pyarrow as pa

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in reader:
            counter[0] += batch.num_rows
            yield batch

    return pa.RecordBatchReader.from_batches(reader.schema, batches())
