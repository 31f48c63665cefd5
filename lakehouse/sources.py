"""Sources: external data as first-class upstreams (layer 1 declarations).

A *source* is data lakehouse reads but does not write: files landing in a bucket, a table
in an operational database, a Delta or Iceberg table owned by another team. It has no
table of its own and is never materialized; it has an ``observe`` function that returns a
version string cheaply, and :meth:`lakehouse.Lakehouse.observe` (also run at the start
of ``materialize()``) records it. When the version changes, the assets that read the
source become stale with reason ``source_changed``.

Declare one with a built-in constructor, or with ``@lh.source``::

    >>> import lakehouse as lh
    >>> orders = lh.files("/data/landing/orders/*.parquet", name="doc_orders")
    >>> orders.kind, orders.key
    ('source', 'doc_orders')
    >>> @lh.source
    ... def doc_rates() -> str:           # observe-only: returns the version
    ...     return "2024-05-01"
    >>> doc_rates.__lakehouse_asset__.kind
    'source'
    >>> for key in ("doc_orders", "doc_rates"):
    ...     _ = lh.assets.REGISTRY.pop(key)

Downstream assets read a source like any upstream (a parameter named after it, or
``ins={"param": lh.upstream("name", since_last_run=True)}`` for only what is new).

Nothing here touches storage: the built-in constructors return plain descriptions
(:class:`FilesSource`, :class:`SqlTableSource`, :class:`DeltaTableSource`,
:class:`IcebergTableSource`) that the execution layer observes and reads through the
adapters in :mod:`lakehouse.storage.sources`.
"""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, overload

from .assets import AssetSpec, _parse_age, _where, register
from .errors import DefinitionError

if TYPE_CHECKING:  # pragma: no cover
    from .partitions import PartitionsDefinition

FILE_FORMATS = ("parquet", "csv", "json")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_NAME_OK = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class BuiltinSource:
    """Base of the built-in source descriptions (stored as the spec's ``observe``).

    They are observed and read by the execution layer; calling one directly is an error.
    """

    kind: str = ""

    def __call__(self, *args: Any, **kwargs: Any) -> str:
        raise TypeError(
            f"a built-in {self.kind} source is observed by lake.observe() or lake.materialize(), "
            "not called"
        )


@dataclass(frozen=True)
class FilesSource(BuiltinSource):
    """Files matching a glob, on local disk or object storage (fsspec).

    Attributes:
        path: the glob, ``{name}`` placeholders included.
        format: ``parquet``, ``csv`` or ``json`` (JSON Lines).
        placeholders: the names of the ``{...}`` path segments (the partition columns).
        storage_options: credentials/endpoint (default: the lakehouse's).
    """

    path: str
    format: str
    placeholders: tuple[str, ...] = ()
    storage_options: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    kind = "files"

    @property
    def listing_glob(self) -> str:
        """The glob given to the file system listing (placeholders become ``*``)."""
        return _PLACEHOLDER.sub("*", self.path)


@dataclass(frozen=True)
class SqlTableSource(BuiltinSource):
    """A table in a SQL database reached through SQLAlchemy.

    Attributes:
        url: SQLAlchemy URL of the database.
        table: ``schema.table`` or ``table``.
        cursor: a monotonically increasing column (``updated_at``, an id); the version is
            its maximum. Without it the version is the row count.
    """

    url: str = field(repr=False)
    table: str
    cursor: str | None = None
    kind = "sql"

    @property
    def schema_name(self) -> str | None:
        return self.table.rsplit(".", 1)[0] if "." in self.table else None

    @property
    def table_name(self) -> str:
        return self.table.rsplit(".", 1)[-1]


@dataclass(frozen=True)
class DeltaTableSource(BuiltinSource):
    """A Delta table written by someone else; the version is the Delta version."""

    uri: str
    storage_options: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    kind = "delta"


@dataclass(frozen=True)
class IcebergTableSource(BuiltinSource):
    """An Iceberg table in a pyiceberg catalog; the version is the current snapshot id.

    ``catalog`` holds pyiceberg catalog properties (``type``, ``uri``, ``warehouse``,
    ``s3.*`` ...); empty means the lakehouse's own Iceberg catalog.
    """

    identifier: str
    catalog: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    kind = "iceberg"


# ------------------------------------------------------------------------------ helpers


def _label(name: str | None, namespace: str | None) -> str:
    return f"{namespace}/{name}" if namespace else str(name)


def _check_name(name: Any, namespace: str | None) -> str:
    if not isinstance(name, str) or not _NAME_OK.match(name):
        raise DefinitionError(
            f"source name {name!r} is invalid",
            asset=str(name),
            hint="use letters, digits and '_' (pass name='...'); put folders in namespace='...'",
        )
    if namespace is not None and (not isinstance(namespace, str) or not namespace.strip("/")):
        raise DefinitionError(
            f"namespace {namespace!r} is invalid", asset=name, hint="use e.g. namespace='landing'"
        )
    return name


def _derive_name(text: str) -> str | None:
    """A default source name from a path or identifier: its last plain segment."""
    body = text.split("://", 1)[-1]
    for seg in reversed([s for s in re.split(r"[/.]", body) if s]):
        if any(ch in seg for ch in "*?[{"):
            continue
        if seg.lower() in FILE_FORMATS or seg.lower() in ("jsonl", "ndjson", "db"):
            continue
        cleaned = re.sub(r"\W", "_", seg.split("=")[0])
        if cleaned and not cleaned[0].isdigit():
            return cleaned
    return None


def _signature_params(fn: Callable[..., Any], label: str, what: str) -> list[inspect.Parameter]:
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        raise DefinitionError(
            f"cannot read the signature of the {what} function",
            asset=label,
            hint="pass a plain Python function",
        ) from None
    required = [
        p
        for p in params
        if p.default is inspect.Parameter.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if len(required) > 1:
        raise DefinitionError(
            f"the {what} function takes {len(required)} parameters; "
            "it may take at most one (the context)",
            asset=label,
            hint=f"def {getattr(fn, '__name__', what)}(ctx): ...",
        )
    return params


def _check_partitions(partitions: Any, label: str) -> None:
    if partitions is not None and (
        not hasattr(partitions, "key") or not hasattr(partitions, "parse")
    ):
        raise DefinitionError(
            f"partitions={partitions!r} is not a partitions definition",
            asset=label,
            hint="use lh.daily(start=...), lh.static([...]) or lh.multi(...)",
        )


def _spec(
    *,
    name: str,
    namespace: str | None,
    reader: Callable[..., Any] | None,
    observe: Callable[..., Any],
    partitions: PartitionsDefinition | None = None,
    partition_column: tuple[str, ...] = (),
    max_age: str | float | None = None,
    description: str | None = None,
    tags: Mapping[str, str] | None = None,
    where: Callable[..., Any] | None = None,
    defined_at: str | None = None,
) -> AssetSpec:
    namespace = namespace.strip("/") if namespace else None
    label = _label(name, namespace)
    context_param = None
    if reader is not None:
        params = _signature_params(reader, label, "reader")
        if params:
            context_param = params[0].name
    return AssetSpec(
        name=name,
        namespace=namespace,
        fn=reader,  # type: ignore[arg-type]  # None: read by a built-in adapter, or observe-only
        context_param=context_param,
        description=description,
        tags=dict(tags or {}),
        partitions=partitions,
        partition_column=partition_column,
        max_age=_parse_age(max_age, label),
        kind="source",
        observe=observe,
        defined_at=defined_at or (_where(where) if where is not None else ""),
    )


def _caller() -> str:
    """``file:line`` of the user code that declared a built-in source."""
    frame = inspect.currentframe()
    here = __file__
    try:
        while frame is not None and frame.f_code.co_filename == here:
            frame = frame.f_back
        return f"{frame.f_code.co_filename}:{frame.f_lineno}" if frame is not None else ""
    finally:
        del frame


# ----------------------------------------------------------------------------- @lh.source


@overload
def source(fn: Callable[..., Any], /) -> Callable[..., Any]: ...


@overload
def source(
    fn: None = None, /, **kwargs: Any
) -> Callable[[Callable[..., Any]], Callable[..., Any]]: ...


def source(fn: Callable[..., Any] | None = None, /, **kwargs: Any) -> Any:
    """Declare an external upstream.

    With ``observe=``, the decorated function *reads* the source (it may take a ``ctx``:
    ``ctx.partition`` holds the partitions a downstream asset needs, ``ctx.metadata``
    the observed ``"version"`` and, for ``since_last_run`` inputs, the ``"since"``
    version already consumed). Without it, the decorated function is the observe
    function itself and the source is *observe-only*: downstream assets list it in
    ``deps=[...]`` and read the data themselves.

    The observe function takes no argument (or a ``ctx``) and returns the version as a
    string, cheaply: an ETag, ``max(updated_at)``, a table version. For a partitioned
    source it returns ``{partition_key: version}`` for the partitions that exist.

    A source is never materialized and has no table: each downstream step calls the
    reader for the partitions it needs, at the version observed for the run.

    Keyword Args:
        observe: the observe function (makes the decorated function the reader).
        name: the source name (default: the function name).
        namespace: a folder such as ``"landing"``.
        partitions: a partitions definition; observe returns one version per key.
        partition_column: the column of the reader's output holding the partition value
            (rows are filtered to the partitions read when given).
        max_age: freshness limit such as ``"1h"``: past it since the last successful
            observation, ``status()`` shows the source stale with reason ``expired``.
        description: text for docs and views (default: the docstring).
        tags: free-form labels.

    Raises:
        DefinitionError: on invalid arguments, naming the source and the fix.
    """
    allowed = {
        "observe",
        "name",
        "namespace",
        "partitions",
        "partition_column",
        "max_age",
        "description",
        "tags",
    }
    unknown = set(kwargs) - allowed
    if unknown:
        raise DefinitionError(
            f"@lh.source got unknown argument(s) {sorted(unknown)}",
            asset=kwargs.get("name") or getattr(fn, "__name__", None),
            hint=f"valid arguments are {sorted(allowed)}",
        )

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        if not callable(f):
            raise DefinitionError(
                f"@lh.source decorates functions, got {type(f).__name__}",
                hint="put @lh.source directly above a def",
            )
        observe = kwargs.get("observe")
        name = _check_name(
            kwargs.get("name") or getattr(f, "__name__", None), kwargs.get("namespace")
        )
        label = _label(name, kwargs.get("namespace"))
        if observe is None:
            reader, observe = None, f
        else:
            if not callable(observe):
                raise DefinitionError(
                    f"observe={observe!r} is not a function",
                    asset=label,
                    hint="observe=lambda: '<version string>'",
                )
            reader = f
        _signature_params(observe, label, "observe")
        partitions = kwargs.get("partitions")
        _check_partitions(partitions, label)
        pcol = kwargs.get("partition_column")
        pcols: tuple[str, ...] = (
            () if pcol is None else ((pcol,) if isinstance(pcol, str) else tuple(pcol))
        )
        if pcols and partitions is None:
            raise DefinitionError(
                "partition_column= without partitions=",
                asset=label,
                hint="add partitions=lh.daily(start=...)",
            )
        spec = _spec(
            name=name,
            namespace=kwargs.get("namespace"),
            reader=reader,
            observe=observe,
            partitions=partitions,
            partition_column=pcols,
            max_age=kwargs.get("max_age"),
            description=kwargs.get("description")
            if kwargs.get("description") is not None
            else inspect.getdoc(f),
            tags=kwargs.get("tags"),
            where=f,
        )
        register(f, spec)
        return f

    if fn is not None:
        return decorate(fn)
    return decorate


# -------------------------------------------------------------------------- built-ins


def files(
    path: str,
    *,
    format: str | None = None,
    name: str | None = None,
    namespace: str | None = None,
    partitions: PartitionsDefinition | None = None,
    max_age: str | float | None = None,
    storage_options: Mapping[str, str] | None = None,
    description: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> AssetSpec:
    """Files matching a glob, on local disk or object storage, as a source.

    The version comes from the listing (paths, sizes, ETags or modification times), so
    adding, replacing or deleting a file changes it. Downstream assets get a lazy scan of
    exactly the files listed when the source was observed.

    Path segments written ``{name}`` are partition keys: with
    ``partitions=lh.daily(start=...)``, ``".../{day}/*.parquet"`` makes one partition per
    folder, observed separately, and adds a ``day`` column to the rows (Hive-style
    folders work too: ``".../day={day}/*.parquet"``).

    Args:
        path: a glob: ``"s3://bucket/landing/*.parquet"``, ``"/data/in/**/*.csv"``.
        format: ``"parquet"``, ``"csv"`` or ``"json"`` (JSON Lines); default from the
            extension, else parquet.
        name: the source name (default: the last folder of the path without wildcards).
        namespace: a folder such as ``"landing"``.
        partitions: the partitions the ``{...}`` segments hold.
        max_age: freshness limit of the observation (``"1h"``).
        storage_options: credentials/endpoint (default: the lakehouse's).
        description: text for docs and views.
        tags: free-form labels.

    Returns:
        The source's :class:`~lakehouse.assets.AssetSpec` (registered like an asset).

    Raises:
        DefinitionError: bad format, placeholders without partitions (or the reverse).
    """
    if not isinstance(path, str) or not path.strip():
        raise DefinitionError(
            f"files() needs a path or glob, got {path!r}",
            hint="lh.files('s3://bucket/in/*.parquet')",
        )
    if "://" not in path:
        path = os.path.abspath(os.path.expanduser(path))
    elif path.startswith("file://"):
        path = path[len("file://") :]
    name = _check_name(name or _derive_name(path), namespace)
    label = _label(name, namespace)
    if format is None:
        low = path.lower()
        format = (
            "csv"
            if low.endswith(".csv")
            else "json"
            if low.endswith((".json", ".jsonl", ".ndjson"))
            else "parquet"
        )
    if format not in FILE_FORMATS:
        raise DefinitionError(
            f"format={format!r} is not supported",
            asset=label,
            hint=f"use one of {', '.join(FILE_FORMATS)}",
        )
    holders = tuple(_PLACEHOLDER.findall(path))
    for h in holders:
        if not h.isidentifier():
            raise DefinitionError(
                f"path placeholder {{{h}}} is not a name",
                asset=label,
                hint="write placeholders like {day}",
            )
    if len(set(holders)) != len(holders):
        raise DefinitionError(
            f"path placeholders repeat: {list(holders)}", asset=label, hint="name each once"
        )
    _check_partitions(partitions, label)
    if holders and partitions is None:
        raise DefinitionError(
            f"the path has placeholder(s) {['{' + h + '}' for h in holders]} but no partitions=",
            asset=label,
            hint="add partitions=lh.daily(start=...) (or lh.static([...]))",
        )
    if partitions is not None:
        dims = getattr(partitions, "dims", None)
        wanted = [n for n, _ in dims] if dims else None
        if not holders:
            raise DefinitionError(
                "partitions= needs {name} placeholders in the path",
                asset=label,
                hint="e.g. 's3://bucket/landing/{day}/*.parquet'",
            )
        if wanted is None and len(holders) != 1:
            raise DefinitionError(
                f"one partition dimension but {len(holders)} placeholders",
                asset=label,
                hint="use one {placeholder}, or lh.multi(...) with one per dimension",
            )
        if wanted is not None and sorted(wanted) != sorted(holders):
            raise DefinitionError(
                f"placeholders {list(holders)} must be the dimension names {wanted}",
                asset=label,
                hint="name each placeholder after its lh.multi dimension",
            )
    dims = getattr(partitions, "dims", None)
    pcols: tuple[str, ...] = ()
    if partitions is not None:
        pcols = tuple(n for n, _ in dims) if dims else (holders[0],)
    defn = FilesSource(path, format, holders, dict(storage_options or {}))
    spec = _spec(
        name=name,
        namespace=namespace,
        reader=None,
        observe=defn,
        partitions=partitions,
        partition_column=pcols,
        max_age=max_age,
        description=description or f"{format} files at {path}",
        tags=tags,
        defined_at=_caller(),
    )
    register(spec, spec)
    return spec


def sql_table(
    url: str,
    table: str,
    *,
    cursor: str | None = None,
    name: str | None = None,
    namespace: str | None = None,
    max_age: str | float | None = None,
    description: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> AssetSpec:
    """A table of a SQL database (read through SQLAlchemy and Polars) as a source.

    The version is ``max(cursor)``: new and updated rows raise it, so give a column that
    increases on every insert and update (``updated_at``, a sequence id). With
    ``since_last_run=True`` a downstream asset gets the rows with
    ``previous max < cursor <= observed max``. Without ``cursor`` the version is the row
    count (deletes and in-place updates go unnoticed).

    Args:
        url: SQLAlchemy URL (``"postgresql+psycopg://user@host/db"``).
        table: ``"schema.table"`` or ``"table"``.
        cursor: the cursor column.
        name: the source name (default: the table name).
        namespace: a folder such as ``"crm"``.
        max_age: freshness limit of the observation.
        description: text for docs and views.
        tags: free-form labels.

    Returns:
        The source's :class:`~lakehouse.assets.AssetSpec`.
    """
    if not isinstance(url, str) or "://" not in url:
        raise DefinitionError(
            "sql_table() needs a SQLAlchemy URL",
            asset=name or str(table),
            hint="e.g. 'postgresql+psycopg://user@host:5432/db'",
        )
    if not isinstance(table, str) or not table.strip(".") or table.count(".") > 1:
        raise DefinitionError(
            f"table {table!r} is not 'schema.table' or 'table'",
            asset=name or str(table),
            hint="lh.sql_table(url, 'public.orders')",
        )
    if cursor is not None and (not isinstance(cursor, str) or not cursor):
        raise DefinitionError(
            f"cursor={cursor!r} is not a column name",
            asset=name or table,
            hint="cursor='updated_at'",
        )
    name = _check_name(name or re.sub(r"\W", "_", table.rsplit(".", 1)[-1]), namespace)
    defn = SqlTableSource(url, table, cursor)
    spec = _spec(
        name=name,
        namespace=namespace,
        reader=None,
        observe=defn,
        max_age=max_age,
        description=description or f"SQL table {table}",
        tags=tags,
        defined_at=_caller(),
    )
    register(spec, spec)
    return spec


def delta_table(
    uri: str,
    *,
    name: str | None = None,
    namespace: str | None = None,
    max_age: str | float | None = None,
    storage_options: Mapping[str, str] | None = None,
    description: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> AssetSpec:
    """A Delta table written by someone else as a source; the version is its Delta version.

    Downstream assets read it at the observed version (lazy scan). With
    ``since_last_run=True`` they get the change data feed's inserts and update
    post-images when the table has ``delta.enableChangeDataFeed``, else the rows of the
    data files added since the version consumed last time.

    Args:
        uri: the table location (local path, ``s3://...``).
        name: the source name (default: the last folder of the URI).
        namespace: a folder such as ``"partner"``.
        max_age: freshness limit of the observation.
        storage_options: credentials/endpoint (default: the lakehouse's).
        description: text for docs and views.
        tags: free-form labels.

    Returns:
        The source's :class:`~lakehouse.assets.AssetSpec`.
    """
    if not isinstance(uri, str) or not uri.strip():
        raise DefinitionError(
            f"delta_table() needs a URI, got {uri!r}", hint="lh.delta_table('s3://bucket/tables/t')"
        )
    if "://" not in uri:
        uri = os.path.abspath(os.path.expanduser(uri))
    name = _check_name(name or _derive_name(uri.rstrip("/")), namespace)
    defn = DeltaTableSource(uri.rstrip("/"), dict(storage_options or {}))
    spec = _spec(
        name=name,
        namespace=namespace,
        reader=None,
        observe=defn,
        max_age=max_age,
        description=description or f"Delta table {uri}",
        tags=tags,
        defined_at=_caller(),
    )
    register(spec, spec)
    return spec


def iceberg_table(
    identifier: str,
    *,
    catalog: Mapping[str, str] | None = None,
    name: str | None = None,
    namespace: str | None = None,
    max_age: str | float | None = None,
    description: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> AssetSpec:
    """An Iceberg table in a pyiceberg catalog as a source; the version is its snapshot id.

    Downstream assets read the observed snapshot; with ``since_last_run=True`` they get
    an incremental append scan since the snapshot consumed last time.

    Args:
        identifier: ``"namespace.table"``.
        catalog: pyiceberg catalog properties (``{"type": "sql", "uri": ..., "warehouse":
            ...}``, ``{"type": "rest", ...}``); default: the lakehouse's Iceberg catalog.
        name: the source name (default: the table name).
        namespace: a folder for the source's key.
        max_age: freshness limit of the observation.
        description: text for docs and views.
        tags: free-form labels.

    Returns:
        The source's :class:`~lakehouse.assets.AssetSpec`.
    """
    if not isinstance(identifier, str) or "." not in identifier.strip("."):
        raise DefinitionError(
            f"identifier {identifier!r} is not 'namespace.table'",
            asset=name or str(identifier),
            hint="lh.iceberg_table('sales.orders')",
        )
    name = _check_name(name or re.sub(r"\W", "_", identifier.rsplit(".", 1)[-1]), namespace)
    defn = IcebergTableSource(identifier, {str(k): str(v) for k, v in (catalog or {}).items()})
    spec = _spec(
        name=name,
        namespace=namespace,
        reader=None,
        observe=defn,
        max_age=max_age,
        description=description or f"Iceberg table {identifier}",
        tags=tags,
        defined_at=_caller(),
    )
    register(spec, spec)
    return spec


def builtin(spec: AssetSpec) -> BuiltinSource | None:
    """The built-in description of a source spec, or ``None`` for ``@lh.source`` ones."""
    return spec.observe if isinstance(spec.observe, BuiltinSource) else None


def uses_sources(graph: Any) -> bool:
    """Whether any asset of ``graph`` is a source, reads one incrementally
    (``since_last_run``) or has a ``max_age``: only then does a run need
    :mod:`lakehouse.execution.sources` (other runs do not import it)."""
    return any(s.kind == "source" or s.max_age is not None for s in graph.specs.values()) or any(
        inp.since_last_run for ins in graph.inputs.values() for inp, _ in ins
    )
