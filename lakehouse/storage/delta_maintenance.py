"""Maintenance of Delta tables: compaction, vacuum, row deletion, purge, drop, rename.

* **compact**: ``DeltaTable.optimize.compact`` (or ``z_order``) per partition filter; the
  commit moves data between files without changing it (``dataChange: false``).
* **relayout** (``compact`` with ``coarsen``): a table Hive-partitioned by one column whose
  partitions average less than :data:`SMALL_PARTITION_BYTES` is rewritten without Hive
  partitions, rows sorted by that column (file statistics keep data skipping exact), in
  ONE commit that fails rather than rebase over a concurrent one. A Delta partition is a
  folder, so this is the only way below one file per partition.
* **vacuum**: ``DeltaTable.vacuum`` with ``keep_versions`` for the versions the catalog
  still needs (pins, partition state, the current version).
* **delete_where**: rows are matched with a callable on Arrow data (any predicate the
  layer above can evaluate), the files holding matches are rewritten through a stage
  table and replaced in ONE commit whose log entry names files, never values (delta-rs'
  own ``delete`` writes its predicate text into the log).
* **purge** (erasure): delete every data file the current version does not reference,
  write a checkpoint at the current version and delete all older log files and
  checkpoints. Time travel before the purge ends for this table; the log keeps no
  statistics of deleted files. The checkpoint still lists recently removed file *paths*
  (no statistics), so values in partition paths are only as private as those paths.
"""

from __future__ import annotations

import math
import re
import time
import urllib.parse
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import StorageError
from . import PROVENANCE_PREFIX, MaintenanceResult, first_line, maintenance_error
from .delta import add_actions
from .files import delete_files, delete_tree, list_files, move_tree, nested_tables, outside

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

    from ..assets import TableRef
    from ..partitions import Predicate

#: delta-rs' default target size of optimized files.
TARGET_SIZE = 100 * 1024 * 1024
#: Hive partitions whose data averages less than this are merged by ``compact(coarsen=True)``
#: (the same threshold as Iceberg's partition coarsening).
SMALL_PARTITION_BYTES = 8 * 1024 * 1024
_LOG_FILE = re.compile(r"^(\d{20})\.(json|crc|checkpoint\.parquet|checkpoint\.\d+\.\d+\.parquet)$")


def _dl() -> Any:
    from .._plugins import require

    return require("deltalake", "delta")


class DeltaMaintenance:
    """The :class:`~lakehouse.storage.TableMaintenance` of Delta tables."""

    name = "delta"

    def _open(self, ref: TableRef, version: str | int | None = None) -> Any:
        from .delta import DeltaFormat

        return DeltaFormat()._open(ref, version)

    def _require(self, ref: TableRef) -> Any:
        dt = self._open(ref)
        if dt is None:
            raise StorageError(
                f"the Delta table at {ref.uri} does not exist",
                asset=ref.asset,
                hint="materialize it first",
            )
        return dt

    def _props(self, properties: Mapping[str, str]) -> Any:
        return _dl().CommitProperties(
            custom_metadata={PROVENANCE_PREFIX + k: str(v) for k, v in properties.items()}
        )

    # -- reading ------------------------------------------------------------------------

    def _log(self, ref: TableRef) -> dict[int, dict[str, Any]]:
        """``{version: {"json": StoredFile | None, "checkpoint": bool}}`` from a listing of
        ``_delta_log`` (``DeltaTable.history()`` lists with ``start-after``, which some
        S3-compatible servers do not answer)."""
        out: dict[int, dict[str, Any]] = {}
        root = f"{ref.uri.rstrip('/')}/_delta_log"
        for f in list_files(root, ref.storage_options):
            m = _LOG_FILE.match(f.uri[len(root) + 1 :])
            if not m:
                continue
            entry = out.setdefault(int(m.group(1)), {"json": None, "checkpoint": False})
            if m.group(2) == "json":
                entry["json"] = f
            elif m.group(2).startswith("checkpoint"):
                entry["checkpoint"] = True
        return out

    def versions(self, ref: TableRef) -> list[tuple[str, float]]:
        log = self._log(ref)
        if not log:
            return []
        checkpoints = [v for v, e in log.items() if e["checkpoint"]]
        first = 0 if 0 in log and log[0]["json"] is not None else min(checkpoints, default=min(log))
        out = []
        for v in sorted(log):
            if v < first:
                continue
            f = log[v]["json"]
            out.append((str(v), float(f.mtime or 0) if f is not None else 0.0))
        return out

    def unchanged(self, ref: TableRef, since: str, until: str) -> bool:
        """Whether the commits after version ``since`` up to ``until`` changed no data
        (compaction, vacuum, checkpoints) or were made by lakehouse maintenance."""
        import json

        from .files import filesystem

        try:
            a, b = int(since), int(until)
        except ValueError:
            return False
        if a == b:
            return True
        if a > b:
            return False
        root = f"{ref.uri.rstrip('/')}/_delta_log"
        fs, path = filesystem(root, ref.storage_options)
        for v in range(a + 1, b + 1):
            try:
                with fs.open_input_stream(f"{path}/{v:020d}.json") as stream:
                    lines = stream.read().decode().splitlines()
            except (FileNotFoundError, OSError):
                return False
            actions = [json.loads(line) for line in lines if line.strip()]
            if any(
                PROVENANCE_PREFIX + "maintenance" in (a.get("commitInfo") or {}) for a in actions
            ):
                continue
            if any((a.get("add") or a.get("remove") or {}).get("dataChange") for a in actions):
                return False
        return True

    def live_files(self, ref: TableRef) -> list[dict[str, Any]]:
        dt = self._open(ref, ref.version)
        return [] if dt is None else _live(dt)

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
        """Bin-pack small files per partition.

        With ``coarsen`` (the caller has checked that the table's partition column is the
        asset's time-partition column) and no ``where``, a table Hive-partitioned by one
        column whose partitions average less than :data:`SMALL_PARTITION_BYTES` is re-laid
        out instead: see :meth:`_relayout`.
        """
        dt = self._require(ref)
        before = str(dt.version())
        part_cols = list(dt.metadata().partition_columns)
        files = _live(dt)  # of the version opened: the relayout rewrites exactly it
        if coarsen and where is None and _small_partitions(files, part_cols):
            return self._relayout(ref, dt, files, part_cols[0], zorder, dry_run, properties)
        filters = _partition_filters(where, part_cols)
        in_scope = [f for f in files if _selected(f["partition"], where, part_cols)]
        estimate = _estimate(in_scope, part_cols, zorder is not None)
        n_after = len(files) - len(in_scope) + estimate
        if dry_run or estimate == len(in_scope):
            parts = {tuple(_text(f["partition"].get(c)) for c in part_cols) for f in in_scope}
            note = None
            if part_cols and len(parts) == len(in_scope) and zorder is None:
                note = "one file per partition already (a Delta file never spans two partitions)"
            return MaintenanceResult(
                before,
                None,
                len(files),
                n_after if dry_run else len(files),
                detail=note or (None if dry_run else "nothing to compact"),
            )
        props = self._props(properties)
        try:
            for flt in filters:
                if zorder:
                    dt.optimize.z_order(zorder, partition_filters=flt, commit_properties=props)
                else:
                    dt.optimize.compact(partition_filters=flt, commit_properties=props)
        except Exception as exc:
            raise _translate(exc, ref, "optimizing") from exc
        dt = self._require(ref)
        after = str(dt.version())
        return MaintenanceResult(
            before, after if after != before else None, len(files), len(self.live_files(ref))
        )

    def _relayout(
        self,
        ref: TableRef,
        dt: Any,
        files: list[dict[str, Any]],
        column: str,
        zorder: list[str] | None,
        dry_run: bool,
        properties: Mapping[str, str],
    ) -> MaintenanceResult:
        """Rewrite a table of tiny Hive partitions without Hive partitioning, in one commit.

        The rows go out partition by partition in the order of the partition value (sorted
        by ``zorder`` within a partition). A table that fits in one file
        (:data:`TARGET_SIZE`) is written as one in-memory chunk, which delta-rs keeps in
        order: one file sorted by ``column``. A larger one is streamed (memory holds one
        partition); delta-rs then writes with several threads, so each file holds a narrow
        range of ``column`` but neighbouring files' ranges may overlap a little. Either
        way the files' min/max statistics are exact, so predicate pushdown and data
        skipping stay correct.

        Schema, table properties and rows stay as they are; older versions keep reading
        their own files. Later writes of single partitions become predicate overwrites on
        an ordinary column (delta-rs still rejects rows outside the predicate). The commit
        is never rebased: a writer that committed meanwhile makes it fail
        (``CommitConflictError``), and a writer that read the old layout fails on the
        changed metadata instead of committing files partitioned the old way.
        """
        import pyarrow as pa

        dl = _dl()
        before = str(dt.version())
        parts: dict[Any, list[str]] = {}
        for f in files:
            parts.setdefault(_sort_key(f["partition"].get(column)), []).append(f["path"])
        total = sum(int(f["size"]) for f in files)
        note = (
            f"Hive partitioning by {column} removed ({len(parts)} partitions of "
            f"{total / len(parts) / 1024:.0f} KB on average); rows sorted by {column}"
        )
        if dry_run:
            estimate = max(1, math.ceil(total / TARGET_SIZE))
            return MaintenanceResult(before, None, len(files), estimate, detail=note)
        ds = dt.to_pyarrow_dataset()
        schema = ds.schema
        # paths as stored (``live`` and fragments both name a file as it is on storage,
        # partition values percent-escaped once)
        fragments = {frag.path: frag for frag in ds.get_fragments()}

        def partition(key: Any) -> pa.Table:
            tables = []
            for path in parts[key]:
                frag = fragments.get(path)
                if frag is None:  # a dataset naming files in full
                    frag = next((v for k, v in fragments.items() if k.endswith("/" + path)), None)
                if frag is None:
                    raise StorageError(
                        f"the data file {path} of {ref.uri} is not in the table's dataset",
                        asset=ref.asset,
                        hint="rerun optimize(); if it persists, use relayout=False",
                    )
                tables.append(frag.to_table(schema=schema))
            data = pa.concat_tables(tables)
            return data.sort_by([(c, "ascending") for c in zorder]) if zorder else data

        keys = sorted(parts)
        payload: Any
        if total <= TARGET_SIZE:  # one chunk: delta-rs writes it in order
            payload = pa.concat_tables([partition(k) for k in keys]).combine_chunks()
        else:
            payload = pa.RecordBatchReader.from_batches(
                schema, (b for k in keys for b in partition(k).to_batches())
            )
        props = dl.CommitProperties(
            custom_metadata={PROVENANCE_PREFIX + k: str(v) for k, v in properties.items()},
            max_commit_retries=0,
        )
        try:
            dl.write_deltalake(
                dt,
                payload,
                mode="overwrite",
                schema_mode="overwrite",
                partition_by=[],
                target_file_size=TARGET_SIZE,
                commit_properties=props,
            )
        except Exception as exc:
            raise _translate(exc, ref, "re-laying out") from exc
        after = str(self._require(ref).version())
        return MaintenanceResult(before, after, len(files), len(self.live_files(ref)), detail=note)

    # -- vacuum -------------------------------------------------------------------------

    def vacuum(
        self, ref: TableRef, *, keep: set[str], older_than: float, dry_run: bool
    ) -> MaintenanceResult:
        dt = self._require(ref)
        before = str(dt.version())
        available = {int(v) for v, _ in self.versions(ref)}
        keep_versions = sorted({int(v) for v in keep if str(v).isdigit() and int(v) in available})
        # whole hours (delta-rs' unit), rounded up: never less retention than asked for
        hours = max(0, math.ceil((time.time() - older_than) / 3600.0 - 0.01))
        kwargs = {
            "retention_hours": hours,
            "enforce_retention_duration": False,
            # orphans (not in the log) only with at least an hour of retention: an
            # in-flight stage of a running materialize is younger than that
            "full": hours >= 1,
            "keep_versions": keep_versions or None,
        }
        root = ref.uri.rstrip("/")
        try:
            # delta-rs lists what to delete; we delete it, leaving out other tables nested
            # below this one (delta-rs' full vacuum would take their files for orphans)
            paths = dt.vacuum(dry_run=True, **kwargs)
            sizes = {
                f.uri[len(root) + 1 :]: f.size for f in list_files(ref.uri, ref.storage_options)
            }
        except Exception as exc:
            raise _translate(exc, ref, "vacuuming") from exc
        nested = nested_tables(sizes)
        # delta-rs names files as they are on storage (partition values percent-escaped):
        # no unquoting, or a timestamp partition's files would never be found
        removed = [p for p in paths if outside(p, nested)]
        nbytes = sum(sizes.get(p, 0) for p in removed)
        if not dry_run and removed:
            delete_files((f"{root}/{p}" for p in removed), ref.storage_options)
        return MaintenanceResult(before, None, files_removed=len(removed), bytes_removed=nbytes)

    # -- erasure ------------------------------------------------------------------------

    def delete_where(
        self, ref: TableRef, match: Callable[[pa.Table], Any], properties: Mapping[str, str]
    ) -> MaintenanceResult:
        """Rewrite the files holding rows ``match`` selects, without those rows, in one commit."""
        import pyarrow as pa
        import pyarrow.compute as pc

        dl = _dl()
        from deltalake.transaction import RemoveAction

        from .delta_wap import STAGE_DIR, _adds, encode_partition_value, stage_uri

        dt = self._require(ref)
        before = str(dt.version())
        part_cols = list(dt.metadata().partition_columns)
        live = {f["path"]: f for f in self.live_files(ref)}
        ds = dt.to_pyarrow_dataset()
        kept: list[pa.Table] = []
        hit: list[str] = []
        deleted = 0
        for fragment in ds.get_fragments():
            table = fragment.to_table(schema=ds.schema)
            mask = pc.fill_null(match(table), False)
            n = int(pc.sum(mask).as_py() or 0)
            if not n:
                continue
            deleted += n
            hit.append(fragment.path)  # as stored, like the paths of live_files()
            rest = table.filter(pc.invert(mask))
            if rest.num_rows:
                kept.append(rest)
        if not hit:
            return MaintenanceResult(before, None, rows=0)
        stage_id = f"maintenance-{uuid.uuid4().hex[:12]}"
        suri = stage_uri(ref, stage_id)
        opts = dict(ref.storage_options) or None
        adds: list[Any] = []
        try:
            if kept:
                dl.write_deltalake(
                    suri,
                    pa.concat_tables(kept),
                    mode="overwrite",
                    partition_by=part_cols or None,
                    storage_options=opts,
                )
                adds = _adds(dl.DeltaTable(suri, storage_options=opts), f"{STAGE_DIR}/{stage_id}")
            now = int(time.time() * 1000)
            removes = []
            for path in hit:
                info = live.get(path)
                pv = {
                    k: encode_partition_value(v)
                    for k, v in ((info or {}).get("partition") or {}).items()
                }
                removes.append(
                    RemoveAction(path, True, now, int((info or {}).get("size") or 0), pv)
                )
            props = self._props({**properties, "step_id": stage_id})
            dt.create_write_transaction(
                removes + adds,
                mode="append",
                schema=dt.schema(),
                partition_by=part_cols or None,
                commit_properties=props,
            )
        except Exception as exc:
            delete_tree(suri, ref.storage_options)
            raise _translate(exc, ref, "deleting rows from") from exc
        delete_tree(f"{suri}/_delta_log", ref.storage_options)
        after = str(self._require(ref).version())
        return MaintenanceResult(
            before, after, files_before=len(hit), files_after=len(adds), rows=deleted
        )

    def purge(
        self, ref: TableRef, *, keep: set[str], properties: Mapping[str, str]
    ) -> MaintenanceResult:
        """Remove every version but the current one (``keep`` cannot be honoured: a Delta
        version is readable only with the whole log before it)."""
        dt = self._require(ref)
        current = int(dt.version())
        started = time.time()
        live = {f["path"] for f in self.live_files(ref)}
        root = ref.uri.rstrip("/")
        listing = list_files(ref.uri, ref.storage_options)
        rel = {f.uri[len(root) + 1 :]: f for f in listing}
        nested = nested_tables(rel)
        rel = {p: f for p, f in rel.items() if outside(p, nested)}  # another asset's table
        running_stages = {
            p.split("/")[1]
            for p in rel
            if p.startswith("lakehouse-stage/") and p.split("/")[2:3] == ["_delta_log"]
        }
        doomed = []
        for path, f in rel.items():
            if path.startswith("_delta_log/") or path in live:
                continue
            parts = path.split("/")
            if (
                parts[0] == "lakehouse-stage"
                and len(parts) > 2
                and parts[1] in running_stages
                and (f.mtime or 0) >= started - 3600
            ):
                continue  # a stage being written right now by a running materialize
            doomed.append(f)
        try:
            dt.create_checkpoint()
        except Exception as exc:
            raise _translate(exc, ref, "checkpointing") from exc
        for path, f in rel.items():
            if not path.startswith("_delta_log/"):
                continue
            m = _LOG_FILE.match(path.split("/", 1)[1])
            if m and int(m.group(1)) < current:
                doomed.append(f)
        delete_files((f.uri for f in doomed), ref.storage_options)
        return MaintenanceResult(
            str(current), None, files_removed=len(doomed), bytes_removed=sum(f.size for f in doomed)
        )

    def delete_partitions(
        self, ref: TableRef, where: Predicate, properties: Mapping[str, str]
    ) -> MaintenanceResult:
        from ..partitions import predicate_sql

        dt = self._require(ref)
        before = str(dt.version())
        try:
            res = dt.delete(predicate_sql(where), commit_properties=self._props(properties))
        except Exception as exc:
            raise _translate(exc, ref, "wiping partitions of") from exc
        after = str(self._require(ref).version())
        return MaintenanceResult(
            before, after if after != before else None, rows=int(res.get("num_deleted_rows") or 0)
        )

    # -- lifecycle ----------------------------------------------------------------------

    def drop(self, ref: TableRef) -> MaintenanceResult:
        dt = self._open(ref)
        before = None if dt is None else str(dt.version())
        files, nbytes = delete_tree(ref.uri, ref.storage_options)
        return MaintenanceResult(before, None, files_removed=files, bytes_removed=nbytes)

    def rename(self, old: TableRef, new: TableRef) -> None:
        if self._open(new) is not None:
            raise StorageError(
                f"a Delta table already exists at {new.uri}",
                asset=new.asset,
                hint=f"drop it first (lake.drop({new.asset!r})) or choose another name",
            )
        move_tree(old.uri, new.uri, old.storage_options)


# ------------------------------------------------------------------------------ helpers


def _translate(exc: Exception, ref: TableRef, what: str) -> Exception:
    conflict = (
        isinstance(exc, _dl().exceptions.CommitFailedError) or "conflict" in first_line(exc).lower()
    )
    return maintenance_error(
        exc,
        ref,
        what,
        table=f"the Delta table at {ref.uri}",
        conflict=conflict,
        hint="check that the storage is reachable and writable",
    )


def _text(value: Any) -> str:
    from .delta_wap import encode_partition_value

    return str(encode_partition_value(value))


def _partition_filters(where: Predicate | None, part_cols: list[str]) -> list[Any]:
    """delta-rs partition filters (one conjunction each) for a neutral predicate."""
    if where is None:
        return [None]
    out: list[Any] = []
    for conj in where:
        flt: list[tuple[str, str, Any]] = []
        for clause in conj:
            if clause.column not in part_cols:
                return [None]  # not a partition column: compact the whole table
            if hasattr(clause, "values"):
                flt.append((clause.column, "in", [_text(v) for v in clause.values]))
            else:
                flt.append((clause.column, ">=", _text(clause.start)))
                flt.append((clause.column, "<", _text(clause.end)))
        out.append(flt)
    return out or [None]


def _selected(partition: Mapping[str, Any], where: Predicate | None, part_cols: list[str]) -> bool:
    if where is None:
        return True
    for conj in where:
        ok = True
        for clause in conj:
            if clause.column not in part_cols:
                return True
            value = partition.get(clause.column)
            if value is None:
                ok = False
            elif hasattr(clause, "values"):
                ok = ok and _text(value) in {_text(v) for v in clause.values}
            else:
                ok = ok and _text(clause.start) <= _text(value) < _text(clause.end)
        if ok:
            return True
    return False


def _live(dt: Any) -> list[dict[str, Any]]:
    """``{"path", "size", "partition"}`` of the data files of a loaded table version."""
    rows = add_actions(dt).to_pylist()
    return [
        {
            "path": urllib.parse.unquote(r["path"]),
            "size": int(r["size_bytes"]),
            "partition": dict(r.get("partition") or {}),
        }
        for r in rows
    ]


def _small_partitions(files: list[dict[str, Any]], part_cols: list[str]) -> bool:
    """Whether a table Hive-partitioned by ONE column has at least two partitions and
    they average less than :data:`SMALL_PARTITION_BYTES`."""
    if len(part_cols) != 1 or not files:
        return False
    parts = {_text(f["partition"].get(part_cols[0])) for f in files}
    total = sum(int(f["size"]) for f in files)
    return len(parts) >= 2 and total / len(parts) < SMALL_PARTITION_BYTES


def _sort_key(value: Any) -> tuple[int, Any]:
    """Partition values in their natural order (typed: dates, numbers), nulls last."""
    return (1, "") if value is None else (0, value)


def _estimate(files: list[dict[str, Any]], part_cols: list[str], rewrite_all: bool) -> int:
    """How many files ``files`` become after bin-packing (delta-rs: small files of a
    partition are merged when there are at least two of them)."""
    groups: dict[tuple[Any, ...], list[int]] = {}
    for f in files:
        key = tuple(_text(f["partition"].get(c)) for c in part_cols)
        groups.setdefault(key, []).append(int(f["size"]))
    total = 0
    for sizes in groups.values():
        small = [s for s in sizes if s < TARGET_SIZE]
        if rewrite_all:
            total += max(1, math.ceil(sum(sizes) / TARGET_SIZE))
        elif len(small) >= 2:
            total += (len(sizes) - len(small)) + max(1, math.ceil(sum(small) / TARGET_SIZE))
        else:
            total += len(sizes)
    return total
