"""Reading and observing external sources (layer 2 adapter).

The I/O behind :mod:`lakehouse.sources`: listing files through fsspec and scanning them
as a pyarrow dataset, the maximum of a cursor column through SQLAlchemy, the version of a
Delta table and the snapshot of an Iceberg table, and the *increments* between two
versions (Delta change data feed or added data files, Iceberg incremental append scan,
SQL cursor range) used by ``since_last_run`` inputs. Everything returns Arrow data or a
pyarrow dataset; nothing here writes a table or the catalog.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from .._plugins import require
from ..errors import StorageError
from . import PROVENANCE_PREFIX
from .delta import add_actions
from .uri import delta_options, redact, resolve, scheme

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa
    import pyarrow.dataset as pads

log = logging.getLogger("lakehouse")

_lock = threading.Lock()
_engines: dict[str, Any] = {}


# ------------------------------------------------------------------------------- files


@dataclass(frozen=True)
class FileEntry:
    """One listed file: its path (as the file system names it), size and change tag."""

    path: str
    size: int
    tag: str


def filesystem(path: str, options: Mapping[str, str] | None) -> Any:
    """The fsspec file system for ``path`` (S3 options in any spelling, see ``uri``)."""
    fsspec = require("fsspec", "sources")
    proto = scheme(path)
    if proto == "file":
        return fsspec.filesystem("file")
    if proto in ("s3", "s3a"):
        aws = resolve(path, options)
        kwargs: dict[str, Any] = {"use_listings_cache": False, "skip_instance_cache": True}
        if aws.get("AWS_ACCESS_KEY_ID"):
            kwargs["key"] = aws["AWS_ACCESS_KEY_ID"]
        if aws.get("AWS_SECRET_ACCESS_KEY"):
            kwargs["secret"] = aws["AWS_SECRET_ACCESS_KEY"]
        if aws.get("AWS_SESSION_TOKEN"):
            kwargs["token"] = aws["AWS_SESSION_TOKEN"]
        client: dict[str, str] = {}
        if aws.get("AWS_ENDPOINT_URL"):
            client["endpoint_url"] = aws["AWS_ENDPOINT_URL"]
        if aws.get("AWS_REGION"):
            client["region_name"] = aws["AWS_REGION"]
        if client:
            kwargs["client_kwargs"] = client
        return fsspec.filesystem("s3", **kwargs)
    return fsspec.filesystem(proto, **dict(options or {}))


def _tag(info: Mapping[str, Any]) -> str:
    for key in ("ETag", "etag", "md5", "checksum"):
        if info.get(key):
            return str(info[key]).strip('"')
    for key in ("mtime", "LastModified", "last_modified", "updated", "modified"):
        value = info.get(key)
        if value is not None:
            return value.isoformat() if hasattr(value, "isoformat") else repr(value)
    return ""


def list_files(asset: str, glob: str, options: Mapping[str, str] | None) -> list[FileEntry]:
    """Every file matching ``glob``, sorted by path.

    Raises:
        StorageError: the storage cannot be listed (names the source and the glob).
    """
    fs = filesystem(glob, options)
    try:
        fs.invalidate_cache()
        found = fs.glob(glob, detail=True)
    except FileNotFoundError:
        return []
    except Exception as exc:
        raise StorageError(
            f"cannot list {glob}: {redact(f'{type(exc).__name__}: {exc}', options)}",
            asset=asset,
            hint="check the path, that the storage is reachable, and storage_options=",
        ) from None
    out = [
        FileEntry(str(p), int(info.get("size") or 0), _tag(info))
        for p, info in found.items()
        if info.get("type", "file") != "directory"
    ]
    return sorted(out, key=lambda e: e.path)


def listing_version(entries: Sequence[FileEntry]) -> str:
    """The version of a listing: the file count and a hash of paths, sizes and tags."""
    if not entries:
        return "0 files"
    h = hashlib.sha256()
    for e in sorted(entries, key=lambda e: e.path):
        h.update(f"{e.path}\0{e.size}\0{e.tag}\n".encode())
    return f"{len(entries)} file{'s' if len(entries) != 1 else ''} {h.hexdigest()[:12]}"


def _file_format(fmt: str) -> Any:
    import pyarrow.dataset as pads

    if fmt == "csv":
        return pads.CsvFileFormat()
    if fmt == "json":
        return pads.JsonFileFormat()
    return pads.ParquetFileFormat()


def files_dataset(
    asset: str,
    glob: str,
    fmt: str,
    options: Mapping[str, str] | None,
    files: Sequence[tuple[str, Mapping[str, Any]]],
    schema_file: str | None,
    columns: Mapping[str, Any] | None = None,
) -> pads.Dataset:
    """A lazy pyarrow dataset over ``files`` (``(path, {partition column: value})``).

    Partition values become columns (unless a file has a column of that name). With no
    files, an empty dataset with the schema of ``schema_file`` plus the partition columns
    of the example values ``columns``.

    Raises:
        StorageError: nothing to take a schema from, or a file cannot be read.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as pads
    from pyarrow.fs import FSSpecHandler, LocalFileSystem, PyFileSystem

    fs = filesystem(glob, options)
    pafs = LocalFileSystem() if scheme(glob) == "file" else PyFileSystem(FSSpecHandler(fs))
    ff = _file_format(fmt)
    first = files[0][0] if files else schema_file
    if first is None:
        raise StorageError(
            f"the source matched no files at {glob}, so there is no schema to read",
            asset=asset,
            hint="check the glob, or wait for the first file (lake.observe() shows the listing)",
        )
    try:
        physical = ff.inspect(first, filesystem=pafs)
    except Exception as exc:
        raise StorageError(
            f"cannot read {fmt} file {first}: {redact(f'{type(exc).__name__}: {exc}', options)}",
            asset=asset,
            hint=f"check that the files are {fmt} (format=...) and readable",
        ) from None
    extra: dict[str, pa.DataType] = {}
    for col, value in (files[0][1] if files else (columns or {})).items():
        if physical.get_field_index(col) < 0:
            extra[col] = pa.scalar(value).type
    schema = physical
    for col, typ in extra.items():
        schema = schema.append(pa.field(col, typ))
    if not files:
        return pads.dataset(schema.empty_table())
    exprs = []
    for _, values in files:
        expr = None
        for col, typ in extra.items():
            term = pc.field(col) == pa.scalar(values[col], typ)
            expr = term if expr is None else expr & term
        exprs.append(expr if expr is not None else pc.scalar(True))
    return pads.FileSystemDataset.from_paths(
        [p for p, _ in files], schema=schema, format=ff, filesystem=pafs, partitions=exprs
    )


# --------------------------------------------------------------------------------- SQL


def _safe(url: str) -> str:
    try:
        import sqlalchemy as sa

        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<database url>"


def sql_engine(url: str) -> Any:
    """A shared SQLAlchemy engine per URL."""
    sa = require("sqlalchemy")
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = sa.create_engine(url, pool_pre_ping=True)
            _engines[url] = engine
        return engine


def _sql_table(asset: str, url: str, table: str) -> Any:
    import sqlalchemy as sa

    schema_name, _, name = table.rpartition(".")
    try:
        return sa.Table(
            name, sa.MetaData(), schema=schema_name or None, autoload_with=sql_engine(url)
        )
    except sa.exc.NoSuchTableError:
        raise StorageError(
            f"the table {table} does not exist in {_safe(url)}",
            asset=asset,
            hint="check the table name ('schema.table') and the database URL",
        ) from None
    except sa.exc.SQLAlchemyError as exc:
        raise StorageError(
            f"cannot reach {_safe(url)}: {type(exc).__name__}: {str(exc).splitlines()[0]}",
            asset=asset,
            hint="check that the database is reachable and the URL and credentials are right",
        ) from None


def _column(asset: str, tbl: Any, column: str) -> Any:
    if column not in tbl.c:
        raise StorageError(
            f"the table {tbl.fullname} has no column {column!r}",
            asset=asset,
            hint=f"cursor= must be one of {list(tbl.c.keys())}",
        )
    return tbl.c[column]


def cursor_text(value: Any) -> str:
    """A cursor value as version text (ISO format for dates and times)."""
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    return str(value)


def cursor_value(col: Any, text: str) -> Any:
    """Version text back to a value of the cursor column's Python type."""
    try:
        py = col.type.python_type
    except NotImplementedError:
        return text
    if py is _dt.datetime:
        return _dt.datetime.fromisoformat(text)
    if py is _dt.date:
        return _dt.date.fromisoformat(text)
    if py is int:
        return int(text)
    if py is float:
        return float(text)
    if py is Decimal:
        return Decimal(text)
    return text


def sql_observe(asset: str, url: str, table: str, cursor: str | None) -> str:
    """``max(cursor)`` as text (``"empty"`` for no rows), or ``"N rows"`` without a cursor."""
    import sqlalchemy as sa

    tbl = _sql_table(asset, url, table)
    try:
        with sql_engine(url).connect() as conn:
            if cursor is None:
                n = conn.execute(sa.select(sa.func.count()).select_from(tbl)).scalar()
                return f"{int(n or 0)} rows"
            value = conn.execute(sa.select(sa.func.max(_column(asset, tbl, cursor)))).scalar()
    except sa.exc.SQLAlchemyError as exc:
        raise StorageError(
            f"cannot observe {table}: {type(exc).__name__}: {str(exc).splitlines()[0]}",
            asset=asset,
            hint="check that the database is reachable",
        ) from None
    return "empty" if value is None else cursor_text(value)


def sql_read(
    asset: str,
    url: str,
    table: str,
    cursor: str | None,
    since: str | None = None,
    until: str | None = None,
) -> pa.Table:
    """The table's rows (with a cursor range ``since < cursor <= until`` when given)."""
    import polars as pl
    import sqlalchemy as sa

    tbl = _sql_table(asset, url, table)
    query = sa.select(tbl)
    if cursor is not None and (since is not None or until is not None):
        col = _column(asset, tbl, cursor)
        if since is not None and since != "empty":
            query = query.where(col > cursor_value(col, since))
        if until is not None:
            if until == "empty":
                query = query.where(sa.false())
            else:
                query = query.where(col <= cursor_value(col, until))
    try:
        with sql_engine(url).connect() as conn:
            df = pl.read_database(query, conn)
            if df.height == 0:  # no rows to infer types from: take them from any one row
                df = pl.read_database(sa.select(tbl).limit(1), conn).clear()
    except sa.exc.SQLAlchemyError as exc:
        raise StorageError(
            f"cannot read {table}: {type(exc).__name__}: {str(exc).splitlines()[0]}",
            asset=asset,
            hint="check that the database is reachable",
        ) from None
    # time zone names follow the session (``Etc/UTC``, ``UTC`` ...): one spelling, so the
    # schema of every read is the same
    zoned = [
        c for c, t in df.schema.items() if isinstance(t, pl.Datetime) and t.time_zone is not None
    ]
    if zoned:
        df = df.with_columns([pl.col(c).dt.convert_time_zone("UTC") for c in zoned])
    return df.to_arrow()


# ------------------------------------------------------------------------------- Delta


def _delta(
    asset: str,
    uri: str,
    options: Mapping[str, str] | None,
    version: int | None = None,
    missing: StorageError | None = None,
) -> Any:
    """The ``DeltaTable`` at ``version``; ``missing`` is raised when it does not exist."""
    dl = require("deltalake", "delta")
    try:
        return dl.DeltaTable(
            uri, version=version, storage_options=delta_options(uri, options) or None
        )
    except dl.exceptions.TableNotFoundError:
        if missing is not None:
            raise missing from None
        raise StorageError(
            f"there is no Delta table at {uri}"
            + ("" if version is None else f" version {version}"),
            asset=asset,
            hint="check the URI (and that the version was not vacuumed)",
        ) from None
    except Exception as exc:
        raise StorageError(
            f"cannot open the Delta table at {uri}: "
            + redact(f"{type(exc).__name__}: {exc}", options),
            asset=asset,
            hint="check that the storage is reachable and the credentials are right",
        ) from None


def delta_version(asset: str, uri: str, options: Mapping[str, str] | None) -> int:
    """The current Delta version of the table at ``uri``."""
    return int(_delta(asset, uri, options).version())


def delta_dataset(
    asset: str, uri: str, options: Mapping[str, str] | None, version: int | None
) -> pads.Dataset:
    """A pyarrow dataset of one version of a Delta table."""
    return _delta(asset, uri, options, version).to_pyarrow_dataset()


def _stored(path: str) -> str:
    """A data file's path as stored. The log URI-encodes paths once: the file of a
    timestamp partition, stored in ``ts=2024-01-01%2000%3A00%3A00.000000/``, is logged as
    ``ts=2024-01-01%252000%253A00%253A00.000000/...``. Dataset fragments name files as
    stored, so log paths are decoded once and fragment paths never."""
    return unquote(path)


def _add_paths(dt: Any) -> set[str]:

    actions = add_actions(dt, flatten=True)
    return {_stored(p) for p in actions.column("path").to_pylist()}


def _named(fragment_path: str, paths: set[str]) -> str | None:
    """Which of ``paths`` (relative to the table, as stored) ``fragment_path`` is: the same
    or, for a dataset naming files in full, its ending."""
    if fragment_path in paths:
        return fragment_path
    cut = fragment_path.find("/")
    while cut >= 0:
        tail = fragment_path[cut + 1 :]
        if tail in paths:
            return tail
        cut = fragment_path.find("/", cut + 1)
    return None


def _commits(
    uri: str, options: Mapping[str, str] | None, since: int, until: int
) -> list[list[dict[str, Any]]] | None:
    """The actions of the commits after ``since`` up to ``until``, read from the JSON log
    files; None when one cannot be read (the log was cleaned up past a checkpoint, a file
    system pyarrow cannot open)."""
    import json
    from concurrent.futures import ThreadPoolExecutor

    from .files import filesystem as arrow_filesystem

    def read(version: int) -> list[dict[str, Any]]:
        with fs.open_input_stream(f"{root}/{version:020d}.json") as stream:
            text = stream.read().decode()
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    versions = list(range(since + 1, until + 1))
    try:
        fs, root = arrow_filesystem(f"{uri.rstrip('/')}/_delta_log", options)
        if len(versions) == 1:
            return [read(versions[0])]
        with ThreadPoolExecutor(max_workers=min(8, len(versions))) as pool:
            return list(pool.map(read, versions))
    except Exception as exc:
        log.debug("Delta log of %s %s..%s not readable: %s", uri, since, until, exc)
        return None


def _added_files(
    commits: Iterable[tuple[int, Sequence[Mapping[str, Any]]]],
) -> tuple[set[str], dict[str, int]]:
    """The data files added by the commits that change data, as ``(live, moved)``.

    A commit adds no new rows when lakehouse maintenance made it (``lakehouse.maintenance``
    in its commit info: compaction, relayout, erasure, wipe), nor do its actions with
    ``dataChange: false`` (any writer's compaction): the files they add hold rows that were
    there before. ``live`` are the added files still in the table at the end; ``moved``
    maps the added files that a compaction or relayout rewrote to the version of that
    commit: their rows are new but now sit in files mixed with older rows. Added files
    that a later commit deleted (an overwrite, a delete, an erasure, a wipe) are neither.
    """
    marker = PROVENANCE_PREFIX + "maintenance"
    live: dict[str, None] = {}
    moved: dict[str, int] = {}
    for version, actions in commits:
        info: Mapping[str, Any] = next(
            (a["commitInfo"] for a in actions if a.get("commitInfo")), {}
        )
        kind = info.get(marker)
        for a in actions:
            rm = a.get("remove")
            if not rm or _stored(rm["path"]) not in live:
                continue
            path = _stored(rm["path"])
            del live[path]
            if not rm.get("dataChange", True) or kind == "optimize":
                moved[path] = version
        if kind is not None:
            continue
        for a in actions:
            add = a.get("add")
            if add and add.get("dataChange", True):
                live[_stored(add["path"])] = None
    return set(live), moved


def _moved_fragments(
    asset: str, uri: str, options: Mapping[str, str] | None, since: int, moved: Mapping[str, int]
) -> list[Any]:
    """Fragments of the files in ``moved`` (``{path: version of the commit that rewrote
    it}``), each from the version before that commit, where it was still live."""
    import pyarrow.fs as pafs

    out: list[Any] = []
    by_version: dict[int, set[str]] = {}
    for path, version in moved.items():
        by_version.setdefault(version, set()).add(path)
    for version, paths in sorted(by_version.items()):
        found: dict[str, Any] = {}
        gone_log = StorageError(
            f"rows added to the Delta table at {uri} after version {since} were rewritten "
            f"by the compaction at version {version}, and version {version - 1} that still "
            "names the files they were added in is no longer in the log",
            asset=asset,
            hint="reload the downstream in full (lake.wipe(downstream), then materialize it)",
        )
        before = _delta(asset, uri, options, version - 1, missing=gone_log)
        for f in before.to_pyarrow_dataset().get_fragments():
            name = _named(f.path, paths)
            if name is not None:
                found[name] = f
        gone = sorted(
            p
            for p in paths
            if p not in found
            or found[p].filesystem.get_file_info(found[p].path).type == pafs.FileType.NotFound
        )
        if gone:
            raise StorageError(
                f"rows added to the Delta table at {uri} after version {since} were "
                f"rewritten by the compaction at version {version}, and the file they were "
                f"added in ({gone[0]}) has been vacuumed: the new rows can no longer be told "
                "apart from the older ones",
                asset=asset,
                hint="reload the downstream in full (lake.wipe(downstream), then "
                "materialize it), and read incrementally more often than vacuum removes files",
            )
        out.extend(found.values())
    return out


def delta_changes(
    asset: str, uri: str, options: Mapping[str, str] | None, since: int, until: int
) -> Any:
    """The rows added to a Delta table after version ``since`` up to ``until``.

    With the change data feed enabled: its inserts and update post-images. Otherwise the
    rows of the data files that commits changing data added after ``since`` (exact for
    appends; a rewritten file or partition comes back whole). Commits that change no data
    (compaction, relayout and the other ``lakehouse.maintenance`` commits, actions with
    ``dataChange: false``) add no rows; a new file that such a commit rewrote is read from
    the version before it, while the file still exists.
    """
    import pyarrow as pa
    import pyarrow.dataset as pads

    if since > until:
        raise StorageError(
            f"the Delta table at {uri} is at version {until}, older than the consumed {since}",
            asset=asset,
            hint="the table was recreated or restored; reload the downstream in full",
        )
    dt = _delta(asset, uri, options, until)
    full = dt.to_pyarrow_dataset()
    if since == until:
        return pads.dataset(full.schema.empty_table())
    if str(dt.metadata().configuration.get("delta.enableChangeDataFeed", "")).lower() == "true":
        try:
            reader = dt.load_cdf(starting_version=since + 1, ending_version=until)
            table = pa.table(reader)
        except Exception as exc:
            log.debug("change data feed unavailable for %s %s..%s: %s", uri, since, until, exc)
        else:
            import pyarrow.compute as pc

            kinds = table.column("_change_type").cast(pa.string())

            keep = pc.is_in(kinds, pa.array(["insert", "update_postimage"]))
            table = (
                plain_types(table)
                .filter(keep)
                .drop_columns(
                    [
                        c
                        for c in ("_change_type", "_commit_version", "_commit_timestamp")
                        if c in table.column_names
                    ]
                )
            )
            return (
                table.select([f.name for f in full.schema])
                if set(full.schema.names) <= set(table.column_names)
                else table
            )
    commits = _commits(uri, options, since, until)
    moved: dict[str, int] = {}
    if commits is None:  # without the log: the files present at until and not at since
        gone = StorageError(
            f"the Delta table at {uri} no longer has the log of the versions after {since}, "
            "the version read last: the rows added since cannot be told apart from the "
            "older ones (an erasure purges the table's history; log cleanup removes old "
            "commits)",
            asset=asset,
            hint="reload the downstream in full (lake.wipe(downstream), then materialize it)",
        )
        new = _add_paths(dt) - _add_paths(_delta(asset, uri, options, since, missing=gone))
    else:
        live, moved = _added_files(zip(range(since + 1, until + 1), commits, strict=True))
        new = live & _add_paths(dt)
    fragments = []
    if new:
        for f in full.get_fragments():
            if _named(f.path, new) is not None:
                fragments.append(f)
    if moved:
        fragments.extend(_moved_fragments(asset, uri, options, since, moved))
    return pads.FileSystemDataset(fragments, full.schema, full.format, full.filesystem)


# ----------------------------------------------------------------------------- Iceberg


def plain_types(table: pa.Table) -> pa.Table:
    """``table`` with view types (``string_view``, ``binary_view``) cast to plain ones,
    which every pyarrow kernel accepts."""
    import pyarrow as pa

    fields = []
    for f in table.schema:
        if f.type == pa.string_view():
            f = f.with_type(pa.string())
        elif f.type == pa.binary_view():
            f = f.with_type(pa.binary())
        fields.append(f)
    target = pa.schema(fields, metadata=table.schema.metadata)
    return table if target == table.schema else table.cast(target)


def iceberg_table(asset: str, identifier: str, props: Mapping[str, str]) -> Any:
    """Load the pyiceberg ``Table`` ``identifier`` from the catalog described by ``props``."""
    require("pyiceberg", "iceberg")
    from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

    from ..assets import TableRef
    from .iceberg import _catalog

    cat = _catalog(TableRef(asset=asset, format="iceberg", uri="", catalog=dict(props)))
    try:
        return cat.load_table(identifier)
    except (NoSuchTableError, NoSuchNamespaceError):
        raise StorageError(
            f"the Iceberg table {identifier} does not exist",
            asset=asset,
            hint="check the identifier ('namespace.table') and catalog={...}",
        ) from None
    except Exception as exc:
        raise StorageError(
            f"cannot open the Iceberg table {identifier}: "
            + redact(f"{type(exc).__name__}: {exc}", props),
            asset=asset,
            hint="check that the Iceberg catalog and the storage are reachable",
        ) from None


def iceberg_snapshot(tbl: Any) -> str:
    """The current snapshot id as text (``"empty"`` without one)."""
    snap = tbl.current_snapshot()
    return "empty" if snap is None else str(snap.snapshot_id)


def iceberg_read(tbl: Any, snapshot: str | None) -> pa.Table:
    """All rows of one snapshot."""
    from ..storage.iceberg import _arrow_schema

    if snapshot in (None, "empty"):
        return _arrow_schema(tbl.schema()).empty_table()
    return tbl.scan(snapshot_id=int(snapshot)).to_arrow()


def iceberg_changes(tbl: Any, since: str | None, until: str | None) -> pa.Table:
    """The rows appended after snapshot ``since`` up to ``until`` (incremental append scan)."""
    from ..storage.iceberg import _arrow_schema

    if until in (None, "empty") or since == until:
        return _arrow_schema(tbl.schema()).empty_table()
    if since in (None, "empty"):
        return iceberg_read(tbl, until)
    scan = tbl.incremental_append_scan(
        from_snapshot_id_exclusive=int(since), to_snapshot_id_inclusive=int(until)
    )
    return scan.to_arrow()


def to_arrow_table(data: Any) -> pa.Table:
    """Arrow table of anything exposing the Arrow stream interface."""
    import pyarrow as pa

    if isinstance(data, pa.Table):
        return data
    if hasattr(data, "to_table"):
        return data.to_table()
    return pa.table(data)


def paths_with_values(
    entries: Iterable[tuple[str, Mapping[str, Any]]],
) -> list[tuple[str, dict[str, Any]]]:
    """Plain ``(path, values)`` pairs (a picklable copy)."""
    return [(p, dict(v)) for p, v in entries]
