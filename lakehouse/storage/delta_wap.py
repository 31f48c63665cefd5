"""Write-audit-publish for Delta tables.

1. **Write**: the output goes into a *stage table*, a Delta table in the folder
   ``<table>/lakehouse-stage/<step id>/``. Readers of the target never see it: a Delta
   reader only reads the files its log lists.
2. **Audit**: the execution layer runs the asset's checks on the stage table.
3. **Publish**: ONE commit on the target adds the stage's data files (with their
   statistics) and removes the live files of the partitions being replaced. The data is
   not copied. When a file-level publish cannot express the write (merge, a schema change,
   a table partitioned differently), the stage is streamed through the normal writer
   instead, still in one commit.

After a publish the stage's own ``_delta_log`` is deleted; its data files are now the
target's (``vacuum`` removes them once they are no longer referenced, like any file).
A crash leaves a stage folder behind: :func:`clean_stages` (run by the next
``materialize()``) deletes the stages of dead runs, keeping the data files of stages that
were published.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import random
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..errors import CommitConflictError, StorageError
from . import (
    PROVENANCE_PREFIX,
    Staged,
    WriteResult,
    check_schema,
    counted,
    first_line,
    schema_fingerprint,
)
from .delta import add_actions, find_commit
from .uri import local_path

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

    from ..assets import TableRef, WriteMode
    from ..partitions import Predicate

#: Folder inside a table's directory that holds stage tables.
STAGE_DIR = "lakehouse-stage"


def _dl() -> Any:
    from .._plugins import require

    return require("deltalake", "delta")


def stage_uri(ref: TableRef, stage_id: str) -> str:
    return f"{ref.uri}/{STAGE_DIR}/{stage_id}"


def stage(
    fmt: Any,
    ref: TableRef,
    data: pa.Table | pa.RecordBatchReader,
    *,
    mode: WriteMode,
    predicate: str | None,
    where: Predicate | None,
    partition_by: list[str],
    schema_mode: str,
    stage_id: str,
) -> Staged:
    """Write ``data`` into a stage table next to ``ref``'s table (nothing visible yet).

    Raises:
        SchemaError: when the output schema is not allowed by ``schema_mode`` (checked
            before anything is written).
    """
    import pyarrow as pa

    dl = _dl()
    dt = fmt._open(ref)
    old_schema = _arrow_schema(dt) if dt is not None else None
    full_overwrite = mode.kind == "overwrite" and predicate is None
    check_schema(ref.asset, old_schema, data.schema, schema_mode, full_overwrite=full_overwrite)
    uri = stage_uri(ref, stage_id)
    counter = [0]
    if isinstance(data, pa.Table):
        counter[0] = data.num_rows
        payload: Any = data
    else:
        payload = counted(data, counter)
    try:
        dl.write_deltalake(
            uri,
            payload,
            mode="overwrite",
            partition_by=partition_by or None,
            storage_options=dict(ref.storage_options) or None,
        )
    except Exception as exc:
        raise StorageError(
            f"cannot write the stage of {ref.uri}: {type(exc).__name__}: {first_line(exc)}",
            asset=ref.asset,
            hint="check that the storage is reachable and writable",
        ) from exc
    token = {
        "mode": mode,
        "predicate": predicate,
        "where": where,
        "partition_by": list(partition_by),
        "schema_mode": schema_mode,
        "read_version": None if dt is None else int(dt.version()),
    }
    return Staged(
        ref=ref,
        data=replace(ref, uri=uri, version=None, location=None),
        stage_id=stage_id,
        rows=counter[0],
        schema_fp=schema_fingerprint(data.schema),
        token=token,
    )


def publish(fmt: Any, staged: Staged, provenance: Mapping[str, str]) -> WriteResult:
    """Make the staged data the table's new version in ONE commit."""
    dl = _dl()
    ref = staged.ref
    tok = staged.token
    mode: WriteMode = tok["mode"]
    opts = dict(ref.storage_options) or None
    props = dl.CommitProperties(
        custom_metadata={PROVENANCE_PREFIX + k: str(v) for k, v in provenance.items()}
    )
    sdt = dl.DeltaTable(staged.data.uri, storage_options=opts)
    dt = fmt._open(ref)
    fast = mode.kind in ("append", "overwrite") and (
        dt is None or _compatible(dt, sdt, tok["partition_by"])
    )
    if not fast:
        reader = _reader(sdt)
        target = (
            replace(ref, version=str(dt.version())) if dt is not None else ref
        )  # open it: schema mode
        result = fmt.write(
            target,
            reader,
            mode=mode,
            predicate=tok["predicate"],
            partition_by=tok["partition_by"],
            schema_mode=tok["schema_mode"],
            provenance=provenance,
        )
        _delete_tree(staged.data.uri, ref.storage_options)
        return WriteResult(result.version, result.seq, staged.rows, staged.schema_fp, result.bytes)
    from deltalake.transaction import create_table_with_add_actions

    adds = _adds(sdt, f"{STAGE_DIR}/{staged.stage_id}")
    try:
        if dt is None:
            try:
                create_table_with_add_actions(
                    ref.uri,
                    sdt.schema(),
                    adds,
                    mode="error",
                    partition_by=tok["partition_by"] or None,
                    storage_options=opts,
                    commit_properties=props,
                )
            except Exception as exc:
                dt = fmt._open(ref)
                if dt is None or not _compatible(dt, sdt, tok["partition_by"]):
                    raise
                _commit(dl, dt, sdt, adds, staged, props)
                del exc
        else:
            _commit(dl, dt, sdt, adds, staged, props)
    except (StorageError, CommitConflictError):
        raise
    except Exception as exc:
        text = first_line(exc)
        if isinstance(exc, dl.exceptions.CommitFailedError) or "conflict" in text.lower():
            raise CommitConflictError(
                f"a concurrent writer committed first: {text}",
                asset=ref.asset,
                hint="retry the run (retries=N)",
            ) from exc
        raise StorageError(
            f"publishing to the Delta table at {ref.uri} failed: {type(exc).__name__}: {text}",
            asset=ref.asset,
            hint="check that the storage is reachable and writable",
        ) from exc
    version = _our_version(fmt, ref, tok["read_version"], adds, staged.stage_id)
    _delete_tree(f"{staged.data.uri}/_delta_log", ref.storage_options)
    return WriteResult(
        str(version), version, staged.rows, staged.schema_fp, sum(a.size for a in adds)
    )


#: How often a partition publish is rebased onto commits made meanwhile in other partitions.
_REBASES = 32


def _commit(dl: Any, dt: Any, sdt: Any, adds: list[Any], staged: Staged, props: Any) -> None:
    tok = staged.token
    mode: WriteMode = tok["mode"]
    removes: list[Any] = []
    if mode.kind == "overwrite":
        removes = _removes(dl, dt, tok["where"], tok["predicate"] is None)
    for attempt in range(_REBASES + 1):
        try:
            dt.create_write_transaction(
                removes + adds,
                mode="append",
                schema=sdt.schema(),
                partition_by=tok["partition_by"] or None,
                commit_properties=props,
            )
            return
        except dl.exceptions.CommitFailedError:
            # A file-level commit carries no read predicate, so delta-rs calls any concurrent
            # commit that removes files or sets metadata a conflict, even one in other
            # partitions (parallel chunks of one run, a table created meanwhile). Rebase
            # onto the newest version when the live files of the partitions replaced here
            # are unchanged in it (an append replaces nothing); otherwise another writer
            # replaced them too: conflict.
            full = mode.kind == "overwrite" and tok["where"] is None
            if attempt == _REBASES or full:
                raise
            dt = dl.DeltaTable(
                staged.ref.uri, storage_options=dict(staged.ref.storage_options) or None
            )
            if list(dt.metadata().partition_columns) != list(tok["partition_by"]):
                raise  # optimize() changed the layout meanwhile: a conflict, retried as one
            if mode.kind == "overwrite":
                now = _removes(dl, dt, tok["where"], False)
                if sorted(r.path for r in now) != sorted(r.path for r in removes):
                    raise
            time.sleep(
                random.uniform(0, 0.002) * min(attempt, 8)
            )  # at once first; then a little jitter


def stage_and_publish(
    fmt: Any,
    ref: TableRef,
    data: pa.RecordBatchReader,
    *,
    mode: WriteMode,
    predicate: str | None,
    where: Predicate | None,
    partition_by: list[str],
    schema_mode: str,
    provenance: Mapping[str, str],
) -> WriteResult:
    """Write a stream into a table that may be created concurrently: stage it, then publish
    it (a publish that finds the table created meanwhile commits into it)."""
    import uuid

    stage_id = str(provenance.get("step_id") or uuid.uuid4().hex)
    staged = stage(
        fmt,
        ref,
        data,
        mode=mode,
        predicate=predicate,
        where=where,
        partition_by=partition_by,
        schema_mode=schema_mode,
        stage_id=stage_id,
    )
    try:
        return publish(fmt, staged, provenance)
    except Exception:
        # the commit may or may not have happened: keep the files only if it did
        clean_stages(fmt, ref, lambda sid: sid != stage_id)
        raise


def discard(fmt: Any, staged: Staged) -> None:
    """Delete a stage that will not be published (a blocking check failed); a table
    folder that holds nothing else (its first write failed) goes too."""
    _delete_tree(staged.data.uri, staged.ref.storage_options)
    local = local_path(staged.ref.uri)
    if local is not None:
        import os

        for folder in (f"{local}/{STAGE_DIR}", local):
            try:
                os.rmdir(folder)  # only when empty
            except OSError:
                break


def stage_ids(ref: TableRef) -> list[str]:
    """The stage folders present in ``ref``'s table directory."""
    return _list_dirs(f"{ref.uri}/{STAGE_DIR}", ref.storage_options)


def clean_stages(fmt: Any, ref: TableRef, keep: Callable[[str], bool]) -> list[str]:
    """Delete the stages of ``ref`` whose id ``keep`` rejects (their runs are dead).

    A stage that was published keeps its data files (the table reads them) and loses only
    its ``_delta_log``; an unpublished one is deleted whole. Returns the cleaned ids.
    """
    ids = [s for s in stage_ids(ref) if not keep(s)]
    if not ids:
        return []
    published = {c["provenance"].get("step_id") for c in fmt.commits(ref)}
    for sid in ids:
        uri = stage_uri(ref, sid)
        if sid in published:
            _delete_tree(f"{uri}/_delta_log", ref.storage_options)
        else:
            _delete_tree(uri, ref.storage_options)
    return ids


# ------------------------------------------------------------------------------ helpers


def _arrow_schema(dt: Any) -> pa.Schema:
    import pyarrow as pa

    return pa.schema(dt.schema().to_arrow())


def _fields(dt: Any) -> dict[str, str]:
    data = json.loads(dt.schema().to_json())
    return {f["name"]: json.dumps(f["type"], sort_keys=True) for f in data["fields"]}


def _compatible(dt: Any, sdt: Any, partition_by: list[str]) -> bool:
    """Whether the stage's files can join the table as they are."""
    return list(dt.metadata().partition_columns) == list(partition_by) and _fields(dt) == _fields(
        sdt
    )


def _reader(sdt: Any) -> pa.RecordBatchReader:
    import pyarrow as pa

    ds = sdt.to_pyarrow_dataset()
    return pa.RecordBatchReader.from_batches(ds.schema, ds.to_batches())


def _our_version(
    fmt: Any, ref: TableRef, read_version: int | None, adds: list[Any], stage_id: str
) -> int:
    """The version our publish became (concurrent writers may have committed around it).

    The first version after the one we read that lists one of our (unique) files is ours;
    this avoids ``history()``, which holds the GIL while it reads the log.
    """
    dl = _dl()
    latest = fmt._open(ref)
    last = int(latest.version())
    first = read_version + 1 if read_version is not None else 0
    if adds:
        mine = adds[0].path
        for v in range(first, last + 1):
            dtv = (
                latest
                if v == last
                else dl.DeltaTable(
                    ref.uri, version=v, storage_options=dict(ref.storage_options) or None
                )
            )
            paths = {
                urllib.parse.unquote(p)
                for p in add_actions(dtv).column("path").to_pylist()
            }
            if mine in paths:
                return v
    if first == last:
        return last
    return find_commit(latest, stage_id)


def encode_partition_value(value: Any) -> str | None:
    """A partition value as Delta writes it in ``partitionValues``."""
    if value is None:
        return None
    if isinstance(value, _dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(_dt.timezone.utc).replace(tzinfo=None)
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, _dt.date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("unicode_escape", "backslashreplace")
    return str(value)


def _stat(value: Any) -> Any:
    """A min/max statistic as Delta's JSON holds it, or ``...`` when it is better left out."""
    if isinstance(value, dict):
        inner = {k: _stat(v) for k, v in value.items()}
        return {k: v for k, v in inner.items() if v is not ...} or ...
    if isinstance(value, bool) or value is None:
        return ...
    if isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else ...
    if isinstance(value, _dt.datetime):
        return ...  # timestamp formats differ between writers: leave them out (no skipping)
    if isinstance(value, _dt.date):
        return value.isoformat()
    return ...


def _counts(value: Any) -> Any:
    if isinstance(value, dict):
        inner = {k: _counts(v) for k, v in value.items()}
        return {k: v for k, v in inner.items() if v is not ...} or ...
    return value if isinstance(value, int) and not isinstance(value, bool) else ...


def _adds(sdt: Any, prefix: str) -> list[Any]:
    """Add actions for the stage's data files, at their path inside the target table."""
    from deltalake.transaction import AddAction

    out = []
    for a in add_actions(sdt).to_pylist():
        stats: dict[str, Any] = {"numRecords": a.get("num_records")}
        for key, src in (("minValues", "min"), ("maxValues", "max")):
            v = _stat(a.get(src) or {})
            if v is not ...:
                stats[key] = v
        nulls = _counts(a.get("null_count") or {})
        if nulls is not ...:
            stats["nullCount"] = nulls
        pv = {k: encode_partition_value(v) for k, v in (a.get("partition") or {}).items()}
        path = f"{prefix}/{urllib.parse.unquote(a['path'])}"
        out.append(
            AddAction(
                path,
                int(a["size_bytes"]),
                pv,
                int(a["modification_time"]),
                True,
                json.dumps(stats, separators=(",", ":")),
            )
        )
    return out


def _matches(table: pa.Table, where: Predicate) -> Any:
    """A boolean mask: which rows (files, by partition values) the predicate selects."""
    import pyarrow as pa
    import pyarrow.compute as pc

    def lit(value: Any, typ: Any) -> Any:
        try:
            return pa.scalar(value).cast(typ)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, TypeError):
            return pa.scalar(value)

    mask = pa.array([False] * table.num_rows)
    for conj in where:
        m = pa.array([True] * table.num_rows)
        for clause in conj:
            col = table.column(clause.column)
            if hasattr(clause, "values"):
                e = pc.is_in(col, value_set=pa.array(list(clause.values)).cast(col.type))
            else:
                e = pc.and_(
                    pc.greater_equal(col, lit(clause.start, col.type)),
                    pc.less(col, lit(clause.end, col.type)),
                )
            m = pc.and_(m, pc.fill_null(e, False))
        mask = pc.or_(mask, m)
    return mask


def _removes(dl: Any, dt: Any, where: Predicate | None, everything: bool) -> list[Any]:
    """Remove actions for the live files being replaced: all of them, or those of the
    partitions ``where`` selects."""
    import pyarrow as pa
    from deltalake.transaction import RemoveAction

    live = add_actions(dt)
    if live.num_rows == 0:
        return []
    if not everything:
        if where is None:
            return []
        part = live.column("partition") if "partition" in live.column_names else None
        if part is None:
            raise StorageError(
                "the table is not partitioned; cannot replace single partitions",
                asset=None,
                hint="this is a bug in lakehouse: please report it",
            )
        flat = pa.table({f.name: part.combine_chunks().field(f.name) for f in part.type})
        live = live.filter(_matches(flat, where))
    now = int(time.time() * 1000)
    out = []
    for a in live.to_pylist():
        pv = {k: encode_partition_value(v) for k, v in (a.get("partition") or {}).items()}
        out.append(
            RemoveAction(urllib.parse.unquote(a["path"]), True, now, int(a["size_bytes"]), pv)
        )
    return out


# ----------------------------------------------------------------------- object store


def _fsspec(uri: str, options: Mapping[str, str]) -> tuple[Any, str] | None:
    """An fsspec filesystem for an object-store URI (s3fs for S3), if installed."""
    try:
        import fsspec
    except ImportError:
        return None
    scheme, rest = uri.split("://", 1)
    kwargs: dict[str, Any] = {}
    if scheme in ("s3", "s3a"):
        o = {k.upper(): v for k, v in options.items()}
        client: dict[str, Any] = {}
        if o.get("AWS_ENDPOINT_URL"):
            client["endpoint_url"] = o["AWS_ENDPOINT_URL"]
        if o.get("AWS_REGION"):
            client["region_name"] = o["AWS_REGION"]
        if o.get("AWS_ACCESS_KEY_ID"):
            kwargs.update(key=o["AWS_ACCESS_KEY_ID"], secret=o.get("AWS_SECRET_ACCESS_KEY"))
            if o.get("AWS_SESSION_TOKEN"):
                kwargs["token"] = o["AWS_SESSION_TOKEN"]
        if client:
            kwargs["client_kwargs"] = client
        scheme = "s3"
    try:
        fs = fsspec.filesystem(scheme, skip_instance_cache=True, **kwargs)
    except (ImportError, ValueError):
        return None
    return fs, rest


def _fs(uri: str, options: Mapping[str, str]) -> tuple[Any, str]:
    """A pyarrow filesystem and path for ``uri`` (fallback when fsspec is not installed)."""
    import pyarrow.fs as pafs

    local = local_path(uri)
    if local is not None:
        return pafs.LocalFileSystem(), local
    fs, path = pafs.FileSystem.from_uri(uri)
    return fs, path


def _list_dirs(uri: str, options: Mapping[str, str]) -> list[str]:
    import os

    local = local_path(uri)
    if local is not None:
        try:
            return sorted(e.name for e in os.scandir(local) if e.is_dir())
        except OSError:
            return []
    got = _fsspec(uri, options)
    if got is not None:
        fs, path = got
        try:
            return sorted(
                p.rstrip("/").rsplit("/", 1)[-1]
                for p in fs.ls(path, detail=False, refresh=True)
                if fs.isdir(p)
            )
        except (OSError, FileNotFoundError):
            return []
    import pyarrow.fs as pafs

    fs, path = _fs(uri, options)
    infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)


def _delete_tree(uri: str, options: Mapping[str, str]) -> None:
    """Delete a folder and everything in it (best effort: it only holds garbage)."""
    import shutil

    local = local_path(uri)
    if local is not None:
        shutil.rmtree(local, ignore_errors=True)
        return
    try:
        got = _fsspec(uri, options)
        if got is not None:
            fs, path = got
            if fs.exists(path):
                fs.rm(path, recursive=True)
            return
        fs, path = _fs(uri, options)
        fs.delete_dir(path)
    except (OSError, FileNotFoundError):
        pass
