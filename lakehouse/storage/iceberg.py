"""Apache Iceberg tables through ``pyiceberg``.

Tables live in a pyiceberg catalog built from ``TableRef.catalog`` properties (default:
pyiceberg's SQL catalog in the same database as the lakehouse catalog). The namespace is
the asset's namespace (``default`` when it has none); the table is created at
``TableRef.uri`` for the default catalog, where the catalog decides otherwise.

* version = snapshot id (as text), seq = the snapshot's sequence number.
* Every write is ONE catalog commit (a pyiceberg transaction): schema change, delete and
  append snapshots become visible together. The provenance goes into the summary of each
  snapshot of the transaction, so :meth:`IcebergFormat.commits` can rebuild the catalog.
* Exact partition overwrite: the neutral partition predicate becomes an Iceberg
  expression used both to validate the rows first (pyiceberg's ``overwrite_filter``
  appends rows outside the filter silently) and as the ``overwrite_filter``.
* Partitioned assets get a partition spec from their partition definition: ``hour``,
  ``day`` (daily and weekly) or ``month`` transforms on a date/timestamp column, identity
  for static values and for string columns.
"""

from __future__ import annotations

import functools
import json
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from .._plugins import require
from ..errors import CommitConflictError, OutputError, PartitionError, SchemaError, StorageError
from . import PROVENANCE_PREFIX, WriteResult, check_schema, counted, schema_fingerprint
from .uri import redact

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa
    import pyarrow.dataset as pads

    from ..assets import TableRef, WriteMode
    from ..partitions import Predicate

#: Namespace of assets without one.
DEFAULT_NAMESPACE = "default"
#: Name the catalog is loaded under (matters for ``~/.pyiceberg.yaml`` / env config).
CATALOG_NAME = "lakehouse"
#: Catalog property (ours, stripped before pyiceberg sees it): ``warehouse`` puts each
#: table at ``TableRef.uri``; absent or ``catalog`` lets the catalog choose the location.
LOCATION_PROP = "lakehouse.location"

_TABLE_PROPERTIES = {
    "commit.retry.num-retries": "10",
    "commit.retry.min-wait-ms": "50",
    "commit.retry.max-wait-ms": "2000",
}

_lock = threading.Lock()
_catalogs: dict[tuple[tuple[str, str], ...], Any] = {}


def _pyiceberg() -> Any:
    return require("pyiceberg", "iceberg")


def _catalog(ref: TableRef) -> Any:
    """The pyiceberg catalog of ``ref`` (one per process and set of properties)."""
    props = {k: str(v) for k, v in ref.catalog.items()}
    key = tuple(sorted(props.items()))
    with _lock:  # parallel steps of one process open it once
        cat = _catalogs.get(key)
        if cat is None:
            cat = _catalogs[key] = _load_catalog(ref, props)
    return cat


def _load_catalog(ref: TableRef, props: dict[str, str]) -> Any:
    _pyiceberg()
    from pyiceberg.catalog import load_catalog

    clean = {k: v for k, v in props.items() if not k.startswith("lakehouse.")}
    name = clean.pop("name", CATALOG_NAME)
    if not clean:
        clean = {"type": "in-memory"}  # pragma: no cover - the api always gives properties
    uri = clean.get("uri", "")
    if clean.get("type", "sql") == "sql" and uri.startswith("sqlite:///"):
        from pathlib import Path

        path = uri[len("sqlite:///") :].split("?", 1)[0]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        if "timeout=" not in uri:  # wait for the lakehouse catalog's writers instead of failing
            clean["uri"] = uri + ("&" if "?" in uri else "?") + "timeout=60"
    for attempt in range(3):
        try:
            return load_catalog(name, **clean)
        except Exception as exc:
            # another process created the SQL catalog's tables between pyiceberg's check
            # and its CREATE TABLE: opening again finds them
            if attempt < 2 and "already exists" in str(exc):
                continue
            raise StorageError(
                f"cannot open the Iceberg catalog ({clean.get('type', 'sql')}): "
                f"{redact(f'{type(exc).__name__}: {exc}', props)}",
                asset=ref.asset,
                hint="check iceberg_catalog={...} (type, uri, warehouse) and that the catalog "
                "is reachable",
            ) from None
    raise AssertionError("unreachable")  # pragma: no cover


_namespaces: set[tuple[int, str]] = set()


def _ensure_namespace(cat: Any, namespace: str) -> None:
    """Create ``namespace`` once per process and catalog (it may exist already, or be
    created by another process at the same moment)."""
    key = (id(cat), namespace)
    if key in _namespaces:
        return
    with _lock:
        if key in _namespaces:
            return
        try:
            cat.create_namespace_if_not_exists(namespace)
        except Exception:
            if not cat.namespace_exists(namespace):
                raise
        _namespaces.add(key)


def identifier(ref: TableRef) -> tuple[str, str]:
    """The Iceberg identifier of an asset's table: ``(namespace, name)``.

    A nested asset namespace ``sales/eu`` becomes the one-level namespace ``sales_eu``
    (pyiceberg creates tables in one-level namespaces only); no namespace is ``default``.
    """
    ns = "_".join(p for p in (ref.namespace or "").split("/") if p) or DEFAULT_NAMESPACE
    return ns, ref.asset.rsplit("/", 1)[-1]


class IcebergFormat:
    """The :class:`~lakehouse.storage.TableFormat` for Apache Iceberg."""

    name = "iceberg"

    # -- opening -------------------------------------------------------------------------

    def _load(self, ref: TableRef) -> Any:
        """The pyiceberg Table, or ``None`` when it does not exist."""
        _pyiceberg()
        from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

        cat = _catalog(ref)
        try:
            return cat.load_table(identifier(ref))
        except (NoSuchTableError, NoSuchNamespaceError):
            return None
        except Exception as exc:
            raise StorageError(
                f"cannot open the Iceberg table {'.'.join(identifier(ref))}: "
                f"{self._text(exc, ref)}",
                asset=ref.asset,
                hint="check that the storage and the Iceberg catalog are reachable and the "
                "credentials are right",
            ) from None

    def _require(self, ref: TableRef) -> Any:
        tbl = self._load(ref)
        if tbl is None:
            raise StorageError(
                f"the Iceberg table {'.'.join(identifier(ref))} does not exist",
                asset=ref.asset,
                hint="materialize it first",
            )
        return tbl

    def native(self, ref: TableRef) -> Any:
        """The pyiceberg ``Table`` (for ``pl.scan_iceberg``); time travel is by ``ref.version``,
        which is checked to name one of its snapshots."""
        tbl = self._require(ref)
        if ref.version is not None:
            self._scan(ref, tbl)
        return tbl

    def exists(self, ref: TableRef) -> bool:
        return self._load(ref) is not None

    def current(self, ref: TableRef) -> tuple[str, int] | None:
        tbl = self._load(ref)
        snap = tbl.current_snapshot() if tbl is not None else None
        if snap is None:
            return None
        return str(snap.snapshot_id), int(snap.sequence_number or 0)

    def schema(self, ref: TableRef) -> pa.Schema | None:
        tbl = self._load(ref)
        return None if tbl is None else _arrow_schema(tbl.schema())

    # -- writing -------------------------------------------------------------------------

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
        before_commit: Callable[[], None] | None = None,
        where: Predicate | None = None,
    ) -> WriteResult:
        """Write ``data`` in ONE catalog commit; ``before_commit()`` runs once the data
        files are written, just before the commit (write-audit-publish fault point).

        ``where`` is the neutral partition predicate behind ``predicate``; without it, it
        is rebuilt from the provenance's partition ranges and checked to render the same.
        """
        import pyarrow as pa

        _pyiceberg()
        from pyiceberg.exceptions import TableAlreadyExistsError

        data = _prepare(data)
        props = {PROVENANCE_PREFIX + k: str(v) for k, v in provenance.items()}
        fingerprint = schema_fingerprint(data.schema)
        counter = [0]
        tbl = self._load(ref)
        if tbl is None:
            table = data if isinstance(data, pa.Table) else data.read_all()
            try:
                snap = self._create(ref, table, partition_by, props, before_commit)
                return WriteResult(
                    str(snap.snapshot_id),
                    int(snap.sequence_number or 0),
                    table.num_rows,
                    fingerprint,
                    _added_bytes(snap),
                )
            except TableAlreadyExistsError:
                data = table  # a concurrent writer created it first: write into it below
                tbl = self._require(ref)
        streamable = tbl.spec().is_unpartitioned() and (
            mode.kind == "append" or (mode.kind == "overwrite" and predicate is None)
        )
        if isinstance(data, pa.Table):
            counter[0] = data.num_rows
        elif streamable:
            data = counted(data, counter)  # pyiceberg streams into unpartitioned tables only
        else:
            data = data.read_all()
            counter[0] = data.num_rows

        old = _arrow_schema(tbl.schema())
        new = _as_iceberg_arrow(data.schema)
        full_overwrite = mode.kind == "overwrite" and predicate is None
        check_schema(ref.asset, old, new, schema_mode, full_overwrite=full_overwrite)
        changed = any(schema_diff_parts(old, new))
        neutral, where = where, None
        if predicate is not None:
            if neutral is None:
                neutral = self._neutral(ref, predicate, partition_by, provenance)
            where = _expression(neutral, tbl.schema())
            if mode.kind == "overwrite" and isinstance(data, pa.Table):
                _validate(data, where, tbl.schema(), ref, provenance)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "Delete operation did not match any records"
                txn = tbl.transaction()
                if changed:
                    _evolve(
                        txn,
                        data.schema,
                        old,
                        new,
                        replace=schema_mode == "replace" and full_overwrite,
                    )
                if mode.kind == "append":
                    txn.append(data, snapshot_properties=props)
                elif mode.kind == "merge":
                    if mode.delete_missing:
                        txn.delete(
                            where if where is not None else _always_true(),
                            snapshot_properties=props,
                        )
                    if data.num_rows:
                        txn.upsert(data, join_cols=list(mode.on), snapshot_properties=props)
                elif where is not None:
                    txn.overwrite(data, overwrite_filter=where, snapshot_properties=props)
                else:
                    txn.overwrite(data, snapshot_properties=props)
                if before_commit is not None:
                    before_commit()
                txn.commit_transaction()
        except Exception as exc:
            raise self._translate(exc, ref, predicate) from None
        snap = tbl.current_snapshot()  # the metadata our own commit returned: race-free
        if snap is None:  # pragma: no cover - a committed write always has a snapshot
            raise StorageError("the write left no snapshot", asset=ref.asset, hint="retry the run")
        return WriteResult(
            str(snap.snapshot_id),
            int(snap.sequence_number or 0),
            counter[0],
            fingerprint,
            _added_bytes(snap),
        )

    def _create(
        self,
        ref: TableRef,
        table: pa.Table,
        partition_by: list[str],
        props: dict[str, str],
        before_commit: Callable[[], None] | None = None,
    ) -> Any:
        """Create the table and write its first data in one catalog commit."""
        cat = _catalog(ref)
        ident = identifier(ref)
        location = ref.uri if ref.catalog.get(LOCATION_PROP) == "warehouse" else None
        try:
            _ensure_namespace(cat, ident[0])
            txn = cat.create_table_transaction(
                ident, schema=table.schema, location=location, properties=_TABLE_PROPERTIES
            )
            fields = _spec_fields(ref, partition_by, txn.table_metadata.schema())
            if fields:
                with txn.update_spec() as spec:
                    for column, transform, name in fields:
                        spec.add_field(column, transform, name)
            txn.append(table, snapshot_properties=props)
            if before_commit is not None:
                before_commit()
            created = txn.commit_transaction()
        except Exception as exc:
            from pyiceberg.exceptions import CommitFailedException, TableAlreadyExistsError

            if isinstance(exc, TableAlreadyExistsError):
                raise
            if isinstance(exc, CommitFailedException) and "already exists" in str(exc):
                # a concurrent writer created it between our check and our commit
                raise TableAlreadyExistsError(str(exc)) from None
            raise self._translate(exc, ref, None) from None
        # the metadata our own commit returned: its current snapshot is ours
        snap = created.current_snapshot()
        if snap is None:  # pragma: no cover - the append always adds a snapshot
            snap = self._require(ref).current_snapshot()
        return snap

    def _neutral(
        self, ref: TableRef, predicate: str, partition_by: list[str], provenance: Mapping[str, str]
    ) -> Predicate:
        """The neutral predicate behind ``predicate`` (rebuilt and checked to be identical)."""
        from ..partitions import RangeSet, predicate_sql
        from ..partitions import predicate as make_predicate

        defn = getattr(ref, "partitions", None)
        ranges = json.loads(provenance.get("partitions") or "[]")
        if defn is None or not ranges:
            raise PartitionError(
                "an Iceberg partition overwrite needs the asset's partition definition",
                asset=ref.asset,
                partition=provenance.get("partitions_text") or None,
                hint="pass TableRef(partitions=...) (Lakehouse.table_ref does)",
            )
        pred = make_predicate(defn, RangeSet((int(a), int(b)) for a, b in ranges), partition_by)
        if predicate_sql(pred) != predicate:
            raise PartitionError(
                f"the partition predicate {predicate!r} does not match the partitions written",
                asset=ref.asset,
                partition=provenance.get("partitions_text") or None,
                hint="this is a bug in lakehouse: please report it",
            )
        return pred

    def _translate(self, exc: BaseException, ref: TableRef, predicate: str | None) -> Exception:
        from pyiceberg.exceptions import CommitFailedException

        if isinstance(exc, (SchemaError, PartitionError, StorageError, OutputError)):
            return exc
        text = self._text(exc, ref)
        low = text.lower()
        if isinstance(exc, CommitFailedException) or "validation" in type(exc).__name__.lower():
            return CommitConflictError(
                f"a concurrent writer committed first: {text}",
                asset=ref.asset,
                hint="retry the run (retries=N)",
            )
        if "duplicate rows" in low:
            return OutputError(
                f"the output has duplicate keys, so it cannot be merged: {text}",
                asset=ref.asset,
                hint="make the merge key columns unique in the output",
            )
        if isinstance(exc, (ValueError, TypeError)) and (
            "schema" in low or "type" in low or "promot" in low
        ):
            return SchemaError(
                f"the Iceberg table rejected the output schema: {text}",
                asset=ref.asset,
                hint="use schema='add_columns' for additive changes, or schema='replace' "
                "with a full overwrite",
            )
        if isinstance(exc, OSError):
            return StorageError(
                f"cannot write the Iceberg table at {ref.uri}: {text}",
                asset=ref.asset,
                hint="check that the storage is reachable and writable",
            )
        return StorageError(
            f"writing the Iceberg table {'.'.join(identifier(ref))} failed: {text}",
            asset=ref.asset,
            hint="see the chained error above",
        )

    @staticmethod
    def _text(exc: BaseException, ref: TableRef) -> str:
        first = str(exc).splitlines()[0] if str(exc) else ""
        return redact(
            f"{type(exc).__name__}: {first}" if first else type(exc).__name__,
            ref.catalog,
            ref.storage_options,
        )

    # -- reading -------------------------------------------------------------------------

    def _scan(self, ref: TableRef, tbl: Any) -> Any:
        snapshot_id = int(ref.version) if ref.version is not None else None
        if snapshot_id is not None and tbl.snapshot_by_id(snapshot_id) is None:
            raise StorageError(
                f"the Iceberg table {'.'.join(identifier(ref))} has no snapshot {ref.version}",
                asset=ref.asset,
                hint="use a version listed by lake.history(name)",
            )
        return tbl.scan(snapshot_id=snapshot_id)

    def dataset(self, ref: TableRef) -> pads.Dataset:
        """A pyarrow dataset of one snapshot: the data files themselves when that is exact
        (no delete files, no renamed or retyped columns), else the scanned rows in memory."""
        import pyarrow.dataset as pads

        tbl = self._require(ref)
        scan = self._scan(ref, tbl)
        snap = (
            tbl.snapshot_by_id(scan.snapshot_id)
            if scan.snapshot_id is not None
            else tbl.current_snapshot()
        )
        schema = (
            tbl.schemas().get(snap.schema_id, tbl.schema()) if snap is not None else tbl.schema()
        )
        arrow_schema = _arrow_schema(schema)
        if snap is None:
            return pads.dataset(arrow_schema.empty_table())
        tasks = list(scan.plan_files())
        fs = _filesystem(tbl, tasks)
        if (
            fs is not None
            and _plain_history(tbl, schema)
            and not any(t.delete_files for t in tasks)
        ):
            from pyiceberg.io.pyarrow import PyArrowFileIO

            paths = [PyArrowFileIO.parse_location(t.file.file_path)[2] for t in tasks]
            return pads.dataset(paths, schema=arrow_schema, format="parquet", filesystem=fs)
        return pads.dataset(scan.to_arrow())

    def read_arrow(self, ref: TableRef) -> pa.Table:
        tbl = self._require(ref)
        return self._scan(ref, tbl).to_arrow()

    def commits(self, ref: TableRef) -> list[dict[str, Any]]:
        """One entry per commit of the main branch, oldest first.

        A lakehouse write can add several snapshots in one commit (delete + append); they
        carry the same step id and only the last, visible one is listed.
        """
        tbl = self._load(ref)
        if tbl is None or tbl.current_snapshot() is None:
            return []
        chain = []
        snap = tbl.current_snapshot()
        while snap is not None:
            chain.append(snap)
            snap = (
                tbl.snapshot_by_id(snap.parent_snapshot_id)
                if snap.parent_snapshot_id is not None
                else None
            )
        chain.reverse()
        out: list[dict[str, Any]] = []
        for i, s in enumerate(chain):
            extra = dict(s.summary.additional_properties or {}) if s.summary is not None else {}
            prov = {
                k[len(PROVENANCE_PREFIX) :]: v
                for k, v in extra.items()
                if k.startswith(PROVENANCE_PREFIX)
            }
            nxt = chain[i + 1] if i + 1 < len(chain) else None
            if nxt is not None and prov.get("step_id"):
                nxt_extra = (
                    dict(nxt.summary.additional_properties or {}) if nxt.summary is not None else {}
                )
                if nxt_extra.get(PROVENANCE_PREFIX + "step_id") == prov["step_id"]:
                    continue
            op = s.summary.operation.value if s.summary is not None else None
            out.append(
                {
                    "version": str(s.snapshot_id),
                    "seq": int(s.sequence_number or 0),
                    "timestamp": s.timestamp_ms,
                    "operation": op,
                    "provenance": prov,
                }
            )
        return out


# ------------------------------------------------------------------------------ helpers


def _added_bytes(snap: Any) -> int | None:
    """Bytes of the data files a snapshot added (its summary's ``added-files-size``)."""
    try:
        value = snap.summary.get("added-files-size") if snap.summary is not None else None
        return int(value) if value is not None else None
    except (AttributeError, TypeError, ValueError):
        return None


def schema_diff_parts(old: pa.Schema, new: pa.Schema) -> tuple[list[str], list[str], list[str]]:
    from . import schema_diff

    return schema_diff(old, new)


def _arrow_schema(schema: Any) -> pa.Schema:
    """An Iceberg schema as a plain Arrow schema (no field-id metadata)."""
    import pyarrow as pa
    from pyiceberg.io.pyarrow import schema_to_pyarrow

    out = schema_to_pyarrow(schema, include_field_ids=False)
    return pa.schema([pa.field(f.name, f.type, f.nullable) for f in out])


def _as_iceberg_arrow(schema: pa.Schema) -> pa.Schema:
    """``schema`` as it reads back from Iceberg (int8/16 -> int32, views -> large ...)."""
    import pyarrow as pa
    from pyiceberg.io.pyarrow import _ConvertToIcebergWithoutIDs, visit_pyarrow
    from pyiceberg.schema import Schema

    try:
        ice: Any = visit_pyarrow(schema, _ConvertToIcebergWithoutIDs())
    except (TypeError, ValueError) as exc:
        raise SchemaError(
            f"the output has a column type Iceberg cannot store: {exc}",
            hint="cast the column to a supported type (e.g. uint64 -> int64)",
        ) from None
    fields = [f for f in ice.fields]
    out = _arrow_schema(
        Schema(*[f.model_copy(update={"field_id": i + 1}) for i, f in enumerate(fields)])
    )
    return pa.schema([pa.field(f.name, f.type, True) for f in out])


def _prepare(data: pa.Table | pa.RecordBatchReader) -> pa.Table | pa.RecordBatchReader:
    """Cast types Iceberg does not take as they are: ns timestamps to us, view types to large."""
    import pyarrow as pa

    target = []
    changed = False
    for f in data.schema:
        t = f.type
        if pa.types.is_timestamp(t) and t.unit == "ns":
            t = pa.timestamp("us", t.tz)
        elif t == pa.string_view():
            t = pa.large_string()
        elif t == pa.binary_view():
            t = pa.large_binary()
        changed = changed or t != f.type
        target.append(pa.field(f.name, t, f.nullable))
    if not changed:
        return data
    schema = pa.schema(target)
    if isinstance(data, pa.Table):
        return data.cast(schema, safe=False)

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in data:
            yield batch.cast(schema, safe=False)

    return pa.RecordBatchReader.from_batches(schema, batches())


def _always_true() -> Any:
    from pyiceberg.expressions import AlwaysTrue

    return AlwaysTrue()


def _literal(value: Any, field_type: Any) -> Any:
    """A predicate value converted to what the Iceberg column compares with."""
    from datetime import date, datetime, timezone

    from pyiceberg.types import DateType, StringType, TimestampType, TimestamptzType

    if isinstance(field_type, StringType):
        if isinstance(value, datetime):
            if value.tzinfo is not None:
                value = value.astimezone(timezone.utc).replace(tzinfo=None)
            return value.isoformat(sep=" ")
        if isinstance(value, date):
            return value.isoformat()
        return str(value)
    if (
        isinstance(field_type, (TimestampType, TimestamptzType))
        and isinstance(value, date)
        and not isinstance(value, datetime)
    ):
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    if isinstance(field_type, DateType) and isinstance(value, datetime):
        return value.date()
    return value


def _expression(pred: Predicate, schema: Any) -> Any:
    """The Iceberg expression of a neutral partition predicate (OR of ANDs)."""
    import pyiceberg.expressions

    ex: Any = pyiceberg.expressions  # the classes' pydantic signatures confuse type checkers
    ors: list[Any] = []
    for conj in pred:
        ands: list[Any] = []
        for clause in conj:
            try:
                ftype = schema.find_field(clause.column).field_type
            except ValueError:
                raise PartitionError(
                    f"the table has no partition column {clause.column!r}",
                    hint=f"return a column named {clause.column!r}",
                ) from None
            if hasattr(clause, "values"):
                values = [_literal(v, ftype) for v in clause.values]
                ands.append(ex.In(clause.column, values) if values else ex.AlwaysFalse())
            else:
                ands.append(
                    ex.And(
                        ex.GreaterThanOrEqual(clause.column, _literal(clause.start, ftype)),
                        ex.LessThan(clause.column, _literal(clause.end, ftype)),
                    )
                )
        ors.append(functools.reduce(ex.And, ands) if len(ands) > 1 else ands[0])
    if not ors:
        return ex.AlwaysFalse()
    return functools.reduce(ex.Or, ors) if len(ors) > 1 else ors[0]


def _validate(
    table: pa.Table, where: Any, schema: Any, ref: TableRef, provenance: Mapping[str, str]
) -> None:
    """Refuse rows outside the partitions being written (pyiceberg would append them)."""
    from pyiceberg.expressions.visitors import bind
    from pyiceberg.io.pyarrow import expression_to_pyarrow

    expr = expression_to_pyarrow(bind(schema, where, case_sensitive=True))
    inside = table.filter(expr).num_rows  # null partition values are dropped, so counted outside
    if inside != table.num_rows:
        raise PartitionError(
            f"the output has {table.num_rows - inside} row(s) outside the partitions being written "
            "(or with a null partition value); nothing was published",
            asset=ref.asset,
            partition=provenance.get("partitions_text") or None,
            hint="return only rows of ctx.partition",
        )


def _spec_fields(ref: TableRef, partition_by: list[str], schema: Any) -> list[tuple[str, Any, str]]:
    """``(column, transform, name)`` of the partition spec for an asset's definition."""
    from pyiceberg.transforms import DayTransform, HourTransform, IdentityTransform, MonthTransform
    from pyiceberg.types import DateType, TimestampType, TimestamptzType

    defn = getattr(ref, "partitions", None)
    if not partition_by:
        return []
    dims: list[Any] = [d for _, d in getattr(defn, "dims", ())] or [defn]
    out: list[tuple[str, Any, str]] = []
    for column, dim in zip(
        partition_by, dims + [None] * (len(partition_by) - len(dims)), strict=False
    ):
        try:
            ftype = schema.find_field(column).field_type
        except ValueError:
            raise PartitionError(
                f"the output has no partition column {column!r}",
                asset=ref.asset,
                hint=f"return a column named {column!r} holding the partition value",
            ) from None
        gran = getattr(dim, "granularity", None)
        timelike = isinstance(ftype, (DateType, TimestampType, TimestamptzType))
        if gran is None or not timelike:
            out.append((column, IdentityTransform(), column))
        elif gran == "hourly" and not isinstance(ftype, DateType):
            out.append((column, HourTransform(), f"{column}_hour"))
        elif gran == "monthly":
            out.append((column, MonthTransform(), f"{column}_month"))
        else:
            out.append((column, DayTransform(), f"{column}_day"))
    return out


def _evolve(
    txn: Any, data_schema: pa.Schema, old: pa.Schema, new: pa.Schema, *, replace: bool
) -> None:
    """Bring the table schema to the output's inside the write's transaction."""
    if not replace:
        with txn.update_schema() as upd:
            upd.union_by_name(data_schema)
        return
    old_types = {f.name: f.type for f in old}
    new_types = {f.name: f.type for f in new}
    gone = [n for n in old_types if n not in new_types or new_types[n] != old_types[n]]
    if gone:
        with txn.update_schema(allow_incompatible_changes=True) as upd:
            for name in gone:
                upd.delete_column(name)
    with txn.update_schema() as upd:
        upd.union_by_name(data_schema)


def _plain_history(tbl: Any, schema: Any) -> bool:
    """Whether every column of every older schema kept its name and type (files read by name)."""
    current = {f.field_id: (f.name, str(f.field_type)) for f in schema.fields}
    for old in tbl.schemas().values():
        for f in old.fields:
            if f.field_id in current and current[f.field_id] != (f.name, str(f.field_type)):
                return False
    return True


def _filesystem(tbl: Any, tasks: list[Any]) -> Any:
    """The pyarrow filesystem of the table's data files (pyarrow or fsspec FileIO)."""
    from pyiceberg.io.pyarrow import PyArrowFileIO

    io = tbl.io
    location = tasks[0].file.file_path if tasks else tbl.location()
    scheme, netloc, _ = PyArrowFileIO.parse_location(location)
    try:
        if isinstance(io, PyArrowFileIO):
            return io.fs_by_scheme(scheme, netloc)
        get_fs = getattr(io, "get_fs", None)
        if get_fs is not None:
            from pyarrow.fs import FSSpecHandler, PyFileSystem

            return PyFileSystem(FSSpecHandler(get_fs(scheme)))
    except Exception:
        return None  # fall back to scanning through pyiceberg
    return None
