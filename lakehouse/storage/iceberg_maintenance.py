"""Maintenance of Iceberg tables: compaction, snapshot expiry, row deletion, purge.

pyiceberg 0.12 has snapshot expiry (metadata only: it deletes no file) and no data-file
compaction or manifest rewrite, so this module builds them from pyiceberg's snapshot
producers:

* **compact**: the data files of each partition are read, concatenated (sorted by the
  ``zorder`` columns when given) and written again by pyiceberg's own writer, which
  bin-packs to the table's target file size; ONE ``overwrite`` snapshot swaps them.
  When partitions are tiny (a daily table of a few MB a day) and the spec uses an
  ``hour``/``day`` transform, the spec first evolves one step coarser (hour -> day,
  day -> month): Iceberg's hidden partitioning keeps every query, the lakehouse's
  partition overwrites and staleness as they were, and a full scan reads ~30x fewer
  files. Later partition overwrites rewrite the (small) coarse file they touch.
* **vacuum**: expire snapshots older than the retention that nobody keeps, then delete
  the files only they referenced (manifest lists, manifests, data files) and the
  metadata files older than the retention.
* **delete_where**: copy-on-write like pyiceberg's ``delete``, but rows are matched by a
  callable on Arrow data (any predicate the layer above can evaluate).
* **purge** (erasure): a snapshot whose manifests are rewritten with only live entries
  (the entries of deleted files carry their column bounds), expiry of every other
  snapshot not kept, and deletion of every file under the table's location that no kept
  snapshot references: old metadata JSON, manifest lists, manifests, data files.
"""

from __future__ import annotations

import itertools
import math
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from . import PROVENANCE_PREFIX, MaintenanceResult, maintenance_error
from .files import delete_files, delete_tree, list_files, nested_tables, outside

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

    from ..assets import TableRef
    from ..partitions import Predicate

#: Partitions whose data averages less than this are coarsened by ``compact``.
SMALL_PARTITION_BYTES = 8 * 1024 * 1024
_COARSER = {"hour": "day", "day": "month"}


class IcebergMaintenance:
    """The :class:`~lakehouse.storage.TableMaintenance` of Iceberg tables."""

    name = "iceberg"

    def _fmt(self) -> Any:
        from .iceberg import IcebergFormat

        return IcebergFormat()

    def _require(self, ref: TableRef) -> Any:
        return self._fmt()._require(ref)

    @staticmethod
    def _props(properties: Mapping[str, str]) -> dict[str, str]:
        return {PROVENANCE_PREFIX + k: str(v) for k, v in properties.items()}

    # -- reading ------------------------------------------------------------------------

    def versions(self, ref: TableRef) -> list[tuple[str, float]]:
        tbl = self._fmt()._load(ref)
        if tbl is None:
            return []
        return sorted(
            ((str(s.snapshot_id), s.timestamp_ms / 1000.0) for s in tbl.snapshots()),
            key=lambda v: v[1],
        )

    def unchanged(self, ref: TableRef, since: str, until: str) -> bool:
        """Whether every snapshot after ``since`` up to ``until`` (on the main branch) was
        made by lakehouse maintenance (compaction, erasure, manifest rewrite)."""
        if str(since) == str(until):
            return True
        tbl = self._fmt()._load(ref)
        if tbl is None:
            return False
        snap = tbl.snapshot_by_id(int(until))
        while snap is not None and str(snap.snapshot_id) != str(since):
            extra = (
                dict(snap.summary.additional_properties or {}) if snap.summary is not None else {}
            )
            if PROVENANCE_PREFIX + "maintenance" not in extra:
                return False
            snap = (
                tbl.snapshot_by_id(snap.parent_snapshot_id)
                if snap.parent_snapshot_id is not None
                else None
            )
        return snap is not None

    def live_files(self, ref: TableRef) -> list[dict[str, Any]]:
        tbl = self._fmt()._load(ref)
        if tbl is None or tbl.current_snapshot() is None:
            return []
        snapshot_id = int(ref.version) if ref.version is not None else None
        return [
            {
                "path": t.file.file_path,
                "size": int(t.file.file_size_in_bytes),
                "partition": _partition_dict(tbl, t.file),
            }
            for t in tbl.scan(snapshot_id=snapshot_id).plan_files()
        ]

    # -- optimize -----------------------------------------------------------------------

    def compact(
        self,
        ref: TableRef,
        *,
        where: Predicate | None,
        zorder: list[str] | None,
        dry_run: bool,
        properties: Mapping[str, str],
        coarsen: bool = True,
    ) -> MaintenanceResult:
        from pyiceberg.expressions import AlwaysTrue

        from .iceberg import _expression

        tbl = self._require(ref)
        snap = tbl.current_snapshot()
        if snap is None:
            return MaintenanceResult(None, None, detail="empty table")
        before = str(snap.snapshot_id)
        all_tasks = list(tbl.scan().plan_files())
        row_filter = _expression(where, tbl.schema()) if where is not None else AlwaysTrue()
        tasks = (
            list(tbl.scan(row_filter=row_filter).plan_files()) if where is not None else all_tasks
        )
        if any(t.delete_files for t in tasks):
            return MaintenanceResult(
                before,
                None,
                len(all_tasks),
                len(all_tasks),
                detail="has delete files: not compacted",
            )
        target = _target_size(tbl)
        step = _coarsening(tbl, tasks) if coarsen and where is None else None
        groups: dict[Any, list[Any]] = {}
        for t in tasks:
            groups.setdefault((t.file.spec_id, _partition_key(t.file)), []).append(t)
        if step is not None:
            rewrite = [t for g in groups.values() for t in g]
            batches = _by_coarse_key(rewrite, step[0])
        else:
            rewrite, batches = [], []
            for g in groups.values():
                small = [t for t in g if t.file.file_size_in_bytes < target]
                if (zorder and g) or len(small) >= 2:
                    chosen = g if zorder else small
                    rewrite.extend(chosen)
                    batches.append(chosen)
        estimate = sum(
            max(1, math.ceil(sum(t.file.file_size_in_bytes for t in b) / target)) for b in batches
        )
        n_after = len(all_tasks) - len(rewrite) + estimate
        note = f"partition spec {step[1]} -> {step[0]}" if step is not None else None
        if dry_run or not rewrite:
            return MaintenanceResult(
                before,
                None,
                len(all_tasks),
                n_after if dry_run else len(all_tasks),
                detail=note if dry_run else "nothing to compact",
            )
        from pyiceberg.io.pyarrow import ArrowScan, _dataframe_to_data_files
        from pyiceberg.table.snapshots import Operation

        try:
            txn = tbl.transaction()
            if step is not None:
                _evolve_spec(txn, tbl, step[0])
            write_uuid = uuid.uuid4()
            counter = itertools.count(0)
            new_files: list[Any] = []
            for batch in batches:
                data = ArrowScan(
                    table_metadata=tbl.metadata,
                    io=tbl.io,
                    projected_schema=tbl.schema(),
                    row_filter=AlwaysTrue(),
                ).to_table(tasks=batch)
                if zorder:
                    data = data.sort_by([(c, "ascending") for c in zorder])
                if data.num_rows:
                    new_files.extend(
                        _dataframe_to_data_files(
                            table_metadata=txn.table_metadata,
                            df=data,
                            io=tbl.io,
                            write_uuid=write_uuid,
                            counter=counter,
                        )
                    )
            producer = _overwrite_files()(
                operation=Operation.OVERWRITE,
                transaction=txn,
                io=tbl.io,
                snapshot_properties=self._props(properties),
            )
            with producer:
                for t in rewrite:
                    producer.delete_data_file(t.file)
                for f in new_files:
                    producer.append_data_file(f)
            txn.commit_transaction()
        except Exception as exc:
            raise _translate(exc, ref, "compacting") from None
        tbl = self._require(ref)
        after = tbl.current_snapshot()
        n = len(list(tbl.scan().plan_files()))
        return MaintenanceResult(
            before,
            str(after.snapshot_id) if after is not None else None,
            len(all_tasks),
            n,
            detail=note,
        )

    # -- vacuum -------------------------------------------------------------------------

    def vacuum(
        self, ref: TableRef, *, keep: set[str], older_than: float, dry_run: bool
    ) -> MaintenanceResult:
        tbl = self._require(ref)
        snap = tbl.current_snapshot()
        before = str(snap.snapshot_id) if snap is not None else None
        cutoff_ms = older_than * 1000.0
        protected = {r.snapshot_id for r in tbl.metadata.refs.values()}
        kept_ids = {
            s.snapshot_id
            for s in tbl.snapshots()
            if s.timestamp_ms >= cutoff_ms
            or s.snapshot_id in protected
            or str(s.snapshot_id) in keep
        }
        expire = [s for s in tbl.snapshots() if s.snapshot_id not in kept_ids]
        old_meta = [
            m.metadata_file for m in tbl.metadata.metadata_log if m.timestamp_ms < cutoff_ms
        ]
        doomed = _unreferenced(
            tbl, expire, [s for s in tbl.snapshots() if s.snapshot_id in kept_ids]
        )
        doomed.extend(p for p in old_meta if p != tbl.metadata_location)
        sizes = {f.uri: f.size for f in list_files(tbl.location(), ref.storage_options)}
        doomed = [p for p in dict.fromkeys(doomed) if p in sizes]
        nbytes = sum(sizes[p] for p in doomed)
        if dry_run or (not expire and not doomed):
            return MaintenanceResult(
                before,
                None,
                files_removed=len(doomed),
                bytes_removed=nbytes,
                detail=f"{len(expire)} snapshot(s) expire",
            )
        try:
            if expire:
                tbl.maintenance.expire_snapshots().by_ids([s.snapshot_id for s in expire]).commit()
        except Exception as exc:
            raise _translate(exc, ref, "expiring snapshots of") from None
        delete_files(doomed, ref.storage_options)
        return MaintenanceResult(
            before,
            None,
            files_removed=len(doomed),
            bytes_removed=nbytes,
            detail=f"{len(expire)} snapshot(s) expired",
        )

    # -- erasure ------------------------------------------------------------------------

    def delete_where(
        self, ref: TableRef, match: Callable[[pa.Table], Any], properties: Mapping[str, str]
    ) -> MaintenanceResult:
        import pyarrow.compute as pc
        from pyiceberg.expressions import AlwaysTrue
        from pyiceberg.io.pyarrow import ArrowScan, _dataframe_to_data_files
        from pyiceberg.table.snapshots import Operation

        tbl = self._require(ref)
        snap = tbl.current_snapshot()
        if snap is None:
            return MaintenanceResult(None, None)
        before = str(snap.snapshot_id)
        deleted = 0
        replaced: list[tuple[Any, Any]] = []
        write_uuid = uuid.uuid4()
        counter = itertools.count(0)
        try:
            for task in tbl.scan().plan_files():
                data = ArrowScan(
                    table_metadata=tbl.metadata,
                    io=tbl.io,
                    projected_schema=tbl.schema(),
                    row_filter=AlwaysTrue(),
                ).to_table(tasks=[task])
                mask = pc.fill_null(match(data), False)
                n = int(pc.sum(mask).as_py() or 0)
                if not n:
                    continue
                deleted += n
                rest = data.filter(pc.invert(mask))
                new = (
                    list(
                        _dataframe_to_data_files(
                            table_metadata=tbl.metadata,
                            df=rest,
                            io=tbl.io,
                            write_uuid=write_uuid,
                            counter=counter,
                        )
                    )
                    if rest.num_rows
                    else []
                )
                replaced.append((task.file, new))
            if not replaced:
                return MaintenanceResult(before, None, rows=0)
            txn = tbl.transaction()
            producer = _overwrite_files()(
                operation=Operation.OVERWRITE,
                transaction=txn,
                io=tbl.io,
                snapshot_properties=self._props(properties),
            )
            with producer:
                for old, new in replaced:
                    producer.delete_data_file(old)
                    for f in new:
                        producer.append_data_file(f)
            txn.commit_transaction()
        except Exception as exc:
            raise _translate(exc, ref, "deleting rows from") from None
        after = self._require(ref).current_snapshot()
        return MaintenanceResult(
            before,
            str(after.snapshot_id),
            files_before=len(replaced),
            files_after=sum(len(n) for _, n in replaced),
            rows=deleted,
        )

    def seal(self, ref: TableRef, properties: Mapping[str, str]) -> str:
        """A new snapshot whose manifests list only the live files (no entries of deleted
        files, which keep those files' column bounds); returns its id."""
        tbl = self._require(ref)
        try:
            txn = tbl.transaction()
            with _rewrite_manifests(txn, tbl.io, self._props(properties)):
                pass
            txn.commit_transaction()
        except Exception as exc:
            raise _translate(exc, ref, "rewriting the manifests of") from None
        return str(self._require(ref).current_snapshot().snapshot_id)

    def purge(
        self, ref: TableRef, *, keep: set[str], properties: Mapping[str, str]
    ) -> MaintenanceResult:
        started = time.time()
        tbl = self._require(ref)
        if tbl.current_snapshot() is None:
            return MaintenanceResult(None, None)
        before = str(tbl.current_snapshot().snapshot_id)
        after = self.seal(ref, properties)
        tbl = self._require(ref)
        protected = {r.snapshot_id for r in tbl.metadata.refs.values()}
        kept = [
            s
            for s in tbl.snapshots()
            if str(s.snapshot_id) in keep
            or s.snapshot_id in protected
            or str(s.snapshot_id) == after
        ]
        expire = [s.snapshot_id for s in tbl.snapshots() if s not in kept]
        try:
            if expire:
                tbl.maintenance.expire_snapshots().by_ids(expire).commit()
        except Exception as exc:
            raise _translate(exc, ref, "expiring snapshots of") from None
        tbl = self._require(ref)
        needed = {tbl.metadata_location} | _reachable(tbl, tbl.snapshots())
        root = tbl.location().rstrip("/")
        listing = {f.uri[len(root) + 1 :]: f for f in list_files(root, ref.storage_options)}
        nested = nested_tables(listing)  # other tables below this one are not ours
        doomed = [
            f
            for rel, f in listing.items()
            if rel.split("/", 1)[0] in ("data", "metadata")
            and outside(rel, nested)
            and f.uri not in needed
            and (f.mtime is None or f.mtime < started)
        ]
        delete_files((f.uri for f in doomed), ref.storage_options)
        return MaintenanceResult(
            before, after, files_removed=len(doomed), bytes_removed=sum(f.size for f in doomed)
        )

    def delete_partitions(
        self, ref: TableRef, where: Predicate, properties: Mapping[str, str]
    ) -> MaintenanceResult:
        import warnings

        from .iceberg import _expression

        tbl = self._require(ref)
        snap = tbl.current_snapshot()
        before = str(snap.snapshot_id) if snap is not None else None
        rows_before = int((snap.summary or {}).get("total-records") or 0) if snap is not None else 0
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "Delete operation did not match any records"
                tbl.delete(
                    _expression(where, tbl.schema()), snapshot_properties=self._props(properties)
                )
        except Exception as exc:
            raise _translate(exc, ref, "wiping partitions of") from None
        snap = self._require(ref).current_snapshot()
        after = str(snap.snapshot_id) if snap is not None else None
        rows_after = int((snap.summary or {}).get("total-records") or 0) if snap is not None else 0
        return MaintenanceResult(
            before, after if after != before else None, rows=max(0, rows_before - rows_after)
        )

    # -- lifecycle ----------------------------------------------------------------------

    def drop(self, ref: TableRef) -> MaintenanceResult:
        from .iceberg import _catalog, identifier

        tbl = self._fmt()._load(ref)
        if tbl is None:
            return MaintenanceResult()
        before = (
            str(tbl.current_snapshot().snapshot_id) if tbl.current_snapshot() is not None else None
        )
        location = tbl.location()
        try:
            _catalog(ref).drop_table(identifier(ref))
        except Exception as exc:
            raise _translate(exc, ref, "dropping") from None
        files, nbytes = delete_tree(location, ref.storage_options)
        return MaintenanceResult(before, None, files_removed=files, bytes_removed=nbytes)

    def rename(self, old: TableRef, new: TableRef) -> None:
        from .iceberg import _catalog, identifier

        cat = _catalog(old)
        target = identifier(new)
        try:
            cat.create_namespace_if_not_exists(target[:-1])
            cat.rename_table(identifier(old), target)
        except Exception as exc:
            raise _translate(exc, old, "renaming") from None


# ------------------------------------------------------------------------------ helpers


def _translate(exc: BaseException, ref: TableRef, what: str) -> Exception:
    from pyiceberg.exceptions import CommitFailedException

    conflict = isinstance(exc, CommitFailedException) or "validation" in type(exc).__name__.lower()
    return maintenance_error(
        exc,
        ref,
        what,
        table=f"the Iceberg table of {ref.uri}",
        conflict=conflict,
        hint="check that the storage and the Iceberg catalog are reachable",
    )


def _target_size(tbl: Any) -> int:
    from pyiceberg.table import TableProperties

    try:
        return int(
            tbl.properties.get(
                TableProperties.WRITE_TARGET_FILE_SIZE_BYTES,
                TableProperties.WRITE_TARGET_FILE_SIZE_BYTES_DEFAULT,
            )
        )
    except (TypeError, ValueError):
        return 512 * 1024 * 1024


def _partition_key(data_file: Any) -> tuple[Any, ...]:
    record = data_file.partition
    try:
        return tuple(record[i] for i in range(len(record)))
    except TypeError:
        return (str(record),)


def _partition_dict(tbl: Any, data_file: Any) -> dict[str, Any]:
    spec = tbl.specs().get(data_file.spec_id)
    if spec is None:
        return {}
    key = _partition_key(data_file)
    return {f.name: v for f, v in zip(spec.fields, key, strict=False)}


def _coarsening(tbl: Any, tasks: list[Any]) -> tuple[str, str] | None:
    """``(coarser transform, current transform)`` when the table has ONE hour/day partition
    field and its partitions average less than :data:`SMALL_PARTITION_BYTES`."""
    spec = tbl.spec()
    if len(spec.fields) != 1 or not tasks:
        return None
    current = str(spec.fields[0].transform).lower()
    coarser = _COARSER.get(current)
    if coarser is None:
        return None
    parts = {_partition_key(t.file) for t in tasks}
    avg = sum(t.file.file_size_in_bytes for t in tasks) / max(1, len(parts))
    if len(parts) < 2 or avg >= SMALL_PARTITION_BYTES:
        return None
    return coarser, current


def _evolve_spec(txn: Any, tbl: Any, transform: str) -> None:
    from pyiceberg.transforms import DayTransform, MonthTransform

    field = tbl.spec().fields[0]
    source = tbl.schema().find_column_name(field.source_id)
    new: Any = DayTransform() if transform == "day" else MonthTransform()
    with txn.update_spec() as upd:
        upd.remove_field(field.name)
        upd.add_field(source, new, f"{source}_{transform}")


_SAFE_OVERWRITE: Any = None


def _overwrite_files() -> Any:
    """pyiceberg's overwrite snapshot producer, with manifest evaluators kept per thread.

    ``_OverwriteFiles`` looks for the entries of the files it deletes on pyiceberg's
    thread pool, and every thread shares one manifest evaluator per partition spec; the
    evaluator keeps the manifest it is visiting in an attribute, so another thread can
    swap it mid-visit. A manifest that holds a deleted file is then skipped and the commit
    fails with "Missing required files to delete" (seen in ``optimize()`` of a table of a
    few hundred daily appends: one manifest per day, a long partition predicate). Here
    each thread builds its own evaluator.
    """
    global _SAFE_OVERWRITE
    if _SAFE_OVERWRITE is None:
        import threading

        from pyiceberg.table.update.snapshot import _OverwriteFiles

        class _PerThreadEvaluators(_OverwriteFiles):  # type: ignore[misc]
            def _build_manifest_evaluator(self, spec_id: int) -> Callable[[Any], bool]:
                build = super()._build_manifest_evaluator
                local = threading.local()

                def evaluate(manifest: Any) -> bool:
                    fn = getattr(local, "fn", None)
                    if fn is None:
                        fn = local.fn = build(spec_id)
                    return bool(fn(manifest))

                return evaluate

        _SAFE_OVERWRITE = _PerThreadEvaluators
    return _SAFE_OVERWRITE


def _by_coarse_key(tasks: list[Any], transform: str) -> list[list[Any]]:
    """Group the files of fine partitions by the coarse partition they fall into."""
    import datetime as _dt

    epoch = _dt.date(1970, 1, 1)
    groups: dict[Any, list[Any]] = {}
    for t in tasks:
        key = _partition_key(t.file)
        value = key[0] if key else None
        if isinstance(value, int):
            if transform == "month":  # the fine value is a day number
                d = epoch + _dt.timedelta(days=value)
                value = (d.year, d.month)
            else:  # day from an hour number
                value = value // 24
        groups.setdefault(value, []).append(t)
    return [groups[k] for k in sorted(groups, key=lambda k: (k is None, str(k)))]


def _reachable(tbl: Any, snapshots: Iterable[Any], *, live_only: bool = True) -> set[str]:
    """Every file the snapshots reference: manifest lists, manifests, data and delete files."""
    out: set[str] = set()
    seen_manifests: set[str] = set()
    for s in snapshots:
        out.add(s.manifest_list)
        for m in s.manifests(tbl.io):
            out.add(m.manifest_path)
            if m.manifest_path in seen_manifests:
                continue
            seen_manifests.add(m.manifest_path)
            for e in m.fetch_manifest_entry(tbl.io, discard_deleted=live_only):
                out.add(e.data_file.file_path)
    for stats in getattr(tbl.metadata, "statistics", None) or []:
        out.add(stats.statistics_path)
    return out


def _unreferenced(tbl: Any, expire: list[Any], kept: list[Any]) -> list[str]:
    """Files referenced by the snapshots in ``expire`` and by none in ``kept``."""
    if not expire:
        return []
    return sorted(_reachable(tbl, expire) - _reachable(tbl, kept))


def _rewrite_manifests(txn: Any, io: Any, properties: Mapping[str, str]) -> Any:
    """A snapshot producer that rewrites the current manifests with only live entries."""
    from pyiceberg.manifest import ManifestContent, ManifestEntry, ManifestEntryStatus
    from pyiceberg.table.snapshots import Operation
    from pyiceberg.table.update.snapshot import _FastAppendFiles

    class _RewriteManifests(_FastAppendFiles):
        def _existing_manifests(self) -> list[Any]:
            if self._parent_snapshot_id is None:
                return []
            parent = self._transaction.table_metadata.snapshot_by_id(self._parent_snapshot_id)
            if parent is None:
                return []
            groups: dict[int, list[Any]] = {}
            out: list[Any] = []
            for manifest in parent.manifests(io=self._io):
                if manifest.content != ManifestContent.DATA:
                    out.append(manifest)  # delete files: kept as they are (lakehouse writes none)
                    continue
                for e in manifest.fetch_manifest_entry(self._io, discard_deleted=True):
                    groups.setdefault(manifest.partition_spec_id, []).append(e)
            for spec_id, entries in sorted(groups.items()):
                with self.new_manifest_writer(self.spec(spec_id)) as writer:
                    for e in entries:
                        writer.add_entry(
                            ManifestEntry.from_args(
                                status=ManifestEntryStatus.EXISTING,
                                snapshot_id=e.snapshot_id,
                                sequence_number=e.sequence_number,
                                file_sequence_number=e.file_sequence_number,
                                data_file=e.data_file,
                            )
                        )
                out.append(writer.to_manifest_file())
            return out

    return _RewriteManifests(
        operation=Operation.OVERWRITE, transaction=txn, io=io, snapshot_properties=dict(properties)
    )
