"""Asset declarations: the ``@lh.asset`` decorator, asset specs and the run context.

Pure values only (layer 1): nothing here opens a table or a database.

An asset is a function. Its parameters name its upstream assets (or receive the run
context); its return value is the table content::

    >>> import lakehouse as lh
    >>> @lh.asset(namespace="doc", code_version="1")
    ... def numbers(ctx: lh.Context):
    ...     return None
    >>> numbers.__lakehouse_asset__.key
    'doc/numbers'
    >>> numbers(None) is None          # the function itself is unchanged
    True
    >>> lh.assets.REGISTRY.pop("doc/numbers").name
    'numbers'
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, overload

from .errors import DefinitionError

if TYPE_CHECKING:  # pragma: no cover
    from .partitions import PartitionMapping, PartitionsDefinition, RangeSet

ENGINES = ("polars", "duckdb")
FORMATS = ("delta", "iceberg")
SCHEMA_MODES = ("strict", "add_columns", "replace")
_CONTEXT_NAMES = ("ctx", "context")

#: Every asset declared with ``@lh.asset`` in this process, by key; the latest
#: definition of a key wins (so re-running a notebook cell replaces the asset).
REGISTRY: dict[str, AssetSpec] = {}


@dataclass(frozen=True)
class WriteMode:
    """How an asset's output is written into its table.

    ``kind`` is ``"overwrite"`` (the whole table, or exactly the partitions written),
    ``"append"``, or ``"merge"`` (upsert by the ``on`` key columns).
    """

    kind: Literal["overwrite", "append", "merge"]
    on: tuple[str, ...] = ()
    delete_missing: bool = False

    def __str__(self) -> str:
        if self.kind == "merge":
            return f"merge(on={list(self.on)})"
        return self.kind


def merge(on: str | Iterable[str], *, delete_missing: bool = False) -> WriteMode:
    """Write mode that upserts by key: matched rows are updated, new rows inserted.

    Args:
        on: the key column(s).
        delete_missing: also delete target rows of the partitions written that are
            absent from the output.

    >>> merge(on="id")
    WriteMode(kind='merge', on=('id',), delete_missing=False)
    """
    keys = (on,) if isinstance(on, str) else tuple(on)
    if not keys:
        raise DefinitionError("merge() needs at least one key column", hint="merge(on=['id'])")
    return WriteMode("merge", keys, delete_missing)


@dataclass(frozen=True)
class AssetInput:
    """One upstream read by an asset: the parameter it arrives in and where it comes from."""

    param: str
    asset: str
    annotation: str = ""
    mapping: PartitionMapping | None = None
    since_last_run: bool = False


@dataclass(frozen=True, eq=False)
class AssetSpec:
    """Everything lakehouse knows about one declared asset (or source)."""

    name: str
    namespace: str | None
    fn: Callable[..., Any]
    inputs: tuple[AssetInput, ...] = ()
    deps: tuple[str, ...] = ()
    context_param: str | None = None
    engine: str = "polars"
    format: str | None = None
    write: WriteMode = WriteMode("overwrite")
    schema: str = "strict"
    code_version: str | None = None
    description: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    partitions: PartitionsDefinition | None = None
    partition_column: tuple[str, ...] = ()
    checks: tuple[Any, ...] = ()
    max_partitions_per_run: int | None = None
    max_age: float | None = None
    retries: int = 0
    kind: Literal["asset", "source"] = "asset"
    observe: Callable[..., Any] | None = None
    previous_names: tuple[str, ...] = ()
    erase_by: tuple[str, ...] = ()
    defined_at: str = ""

    @property
    def key(self) -> str:
        """``namespace/name``, or just ``name`` without a namespace."""
        return f"{self.namespace}/{self.name}" if self.namespace else self.name

    @property
    def upstream_refs(self) -> tuple[str, ...]:
        """Upstream references as written (inputs first, then order-only deps)."""
        return tuple(i.asset for i in self.inputs) + self.deps

    def __repr__(self) -> str:
        return f"AssetSpec({self.key!r}, upstreams={list(self.upstream_refs)})"


@dataclass(frozen=True)
class TableRef:
    """Where one version of an asset's table lives: passed between adapters.

    ``version`` is the format's own id (Delta version, Iceberg snapshot id);
    ``location`` is format-specific (the Iceberg metadata file); ``partitions`` is the
    asset's partition definition (Iceberg builds its partition spec and exact overwrite
    filters from it).
    """

    asset: str
    format: str
    uri: str
    version: str | None = None
    storage_options: Mapping[str, str] = field(default_factory=dict, repr=False)
    location: str | None = None
    catalog: Mapping[str, str] = field(default_factory=dict, repr=False)
    namespace: str | None = None
    partitions: PartitionsDefinition | None = field(default=None, repr=False, compare=False)
    #: every data file of ``version``, when the write that made it reported them
    #: (:attr:`lakehouse.storage.WriteResult.files`); readers may scan them directly
    files: WrittenFiles | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class WrittenFiles:
    """Every data file of one table version and the Arrow schema a reader of the table
    gives it: scanning ``paths`` as plain Parquet and casting to ``schema`` reads that
    version exactly (reported by writes that can promise it; see
    :func:`lakehouse.storage.delta._whole_version_files`)."""

    paths: tuple[str, ...]
    schema: Any = field(repr=False)  # a pyarrow.Schema


@dataclass(frozen=True)
class PartitionContext:
    """The partitions one call of an asset function computes.

    ``keys`` are the partition keys, ``start``/``end`` the time span of the whole range
    (for time partitions), ``range`` the index ranges inside the definition.
    """

    definition: PartitionsDefinition
    range: RangeSet
    keys: tuple[str, ...]
    start: Any = None
    end: Any = None

    @property
    def key(self) -> str:
        """The single key when one partition is computed; else ``first..last``."""
        return self.keys[0] if len(self.keys) == 1 else f"{self.keys[0]}..{self.keys[-1]}"

    def __str__(self) -> str:
        return self.key


@dataclass
class Context:
    """What an asset function receives in its ``ctx`` / ``context`` parameter.

    Attributes:
        asset: the asset key being computed.
        run_id: the id of the current run.
        partition: the partitions being computed, or ``None`` for an unpartitioned asset.
        log: a logger that tags records with run, asset and partition.
        duckdb: the DuckDB connection of a DuckDB asset (inputs registered as views).
    """

    asset: str
    run_id: str
    partition: PartitionContext | None = None
    log: logging.Logger | logging.LoggerAdapter[logging.Logger] = field(
        default_factory=lambda: logging.getLogger("lakehouse")
    )
    duckdb: Any = None
    metadata: dict[str, Any] = field(default_factory=dict)


def annotation_name(annotation: Any) -> str:
    """A comparable text for a parameter annotation (string or object)."""
    if annotation is inspect.Parameter.empty:
        return ""
    if isinstance(annotation, str):
        return annotation
    module = getattr(annotation, "__module__", "") or ""
    qual = getattr(annotation, "__qualname__", None) or getattr(annotation, "__name__", "")
    return f"{module}.{qual}" if qual else repr(annotation)


def _is_context(param: inspect.Parameter) -> bool:
    ann = annotation_name(param.annotation)
    if ann and (ann == "lakehouse.assets.Context" or ann.split(".")[-1] == "Context"):
        return True
    return param.name in _CONTEXT_NAMES and not ann


def _where(fn: Callable[..., Any]) -> str:
    code = getattr(fn, "__code__", None)
    if code is None:
        return getattr(fn, "__module__", "?") or "?"
    return f"{code.co_filename}:{code.co_firstlineno}"


def _normalize_checks(checks: Any, label: str) -> tuple[Any, ...]:
    from .checks import normalize

    return normalize(checks, label)


def _parse_age(value: str | float | int | None, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    text = value.strip().lower()
    try:
        return float(text[:-1]) * units[text[-1]]
    except (KeyError, ValueError, IndexError):
        raise DefinitionError(
            f"max_age={value!r} is not a duration",
            asset=name,
            hint="use e.g. '30m', '1h', '7d' or seconds",
        ) from None


def build_spec(
    fn: Callable[..., Any],
    *,
    name: str | None = None,
    namespace: str | None = None,
    deps: Iterable[str] | None = None,
    ins: Mapping[str, Any] | None = None,
    engine: str = "polars",
    format: str | None = None,
    write: str | WriteMode = "overwrite",
    schema: str = "strict",
    code_version: str | None = None,
    description: str | None = None,
    tags: Mapping[str, str] | None = None,
    partitions: PartitionsDefinition | None = None,
    partition_column: str | Iterable[str] | None = None,
    checks: Any = None,
    max_partitions_per_run: int | None = None,
    max_age: str | float | None = None,
    retries: int = 0,
    kind: Literal["asset", "source"] = "asset",
    observe: Callable[..., Any] | None = None,
    previous_names: Iterable[str] = (),
    erase_by: Iterable[str] = (),
) -> AssetSpec:
    """Validate the arguments of ``@lh.asset`` and build the :class:`AssetSpec`."""
    if not callable(fn):
        raise DefinitionError(
            f"@lh.asset decorates functions, got {type(fn).__name__}",
            hint="put @lh.asset directly above a def",
        )
    asset_name = name or getattr(fn, "__name__", None)
    if not asset_name or asset_name == "<lambda>":
        raise DefinitionError(
            "an asset needs a name", hint="pass name='...' for lambdas and callables"
        )
    if not isinstance(asset_name, str) or "/" in asset_name or not asset_name.strip():
        raise DefinitionError(
            f"asset name {asset_name!r} is invalid",
            asset=str(asset_name),
            hint="use letters, digits and '_'; put the folder in namespace='...'",
        )
    label = f"{namespace}/{asset_name}" if namespace else asset_name
    if namespace is not None and (not isinstance(namespace, str) or not namespace.strip("/")):
        raise DefinitionError(
            f"namespace {namespace!r} is invalid", asset=label, hint="use e.g. namespace='sales'"
        )
    if namespace:
        namespace = namespace.strip("/")
    if engine not in ENGINES:
        raise DefinitionError(
            f"engine={engine!r} is not supported",
            asset=label,
            hint=f"use one of {', '.join(ENGINES)}",
        )
    if format is not None and format not in FORMATS:
        raise DefinitionError(
            f"format={format!r} is not supported",
            asset=label,
            hint=f"use one of {', '.join(FORMATS)}",
        )
    if isinstance(write, str):
        if write not in ("overwrite", "append"):
            raise DefinitionError(
                f"write={write!r} is not a write mode",
                asset=label,
                hint="use 'overwrite', 'append' or lh.merge(on=[...])",
            )
        write_mode = WriteMode(write)  # type: ignore[arg-type]
    elif isinstance(write, WriteMode):
        write_mode = write
    else:
        raise DefinitionError(
            f"write={write!r} is not a write mode",
            asset=label,
            hint="use 'overwrite', 'append' or lh.merge(on=[...])",
        )
    if schema not in SCHEMA_MODES:
        raise DefinitionError(
            f"schema={schema!r} is not a schema mode",
            asset=label,
            hint=f"use one of {', '.join(SCHEMA_MODES)}",
        )
    if schema == "replace" and write_mode.kind != "overwrite":
        raise DefinitionError(
            "schema='replace' needs write='overwrite'",
            asset=label,
            hint="drop schema='replace' or write='overwrite'",
        )
    if code_version is not None and not isinstance(code_version, str):
        raise DefinitionError(
            "code_version must be a string", asset=label, hint="code_version='2024-05-01'"
        )

    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        raise DefinitionError(
            "cannot read the function's signature",
            asset=label,
            hint="decorate a plain Python function",
        ) from None

    explicit = dict(ins or {})
    inputs: list[AssetInput] = []
    context_param: str | None = None
    for param in sig.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise DefinitionError(
                f"parameter *{param.name} cannot name an upstream",
                asset=label,
                hint="declare one parameter per upstream, or use deps=[...] for order-only "
                "upstreams",
            )
        if param.name not in explicit and _is_context(param):
            if context_param is not None:
                raise DefinitionError(
                    "two context parameters", asset=label, hint="keep one ctx parameter"
                )
            context_param = param.name
            continue
        ref = explicit.pop(param.name, param.name)
        mapping = None
        since = False
        if not isinstance(ref, str):
            target = getattr(ref, "asset", None)
            if not isinstance(target, str):
                raise DefinitionError(
                    f"ins[{param.name!r}] must be an asset name or lh.upstream(...), got {ref!r}",
                    asset=label,
                    hint=f"ins={{'{param.name}': 'upstream_name'}}",
                )
            mapping = getattr(ref, "mapping", None)
            since = bool(getattr(ref, "since_last_run", False))
            ref = target
        if param.default is not inspect.Parameter.empty and param.name not in (ins or {}):
            raise DefinitionError(
                f"parameter {param.name!r} has a default value; upstream parameters cannot",
                asset=label,
                hint="remove the default, or compute the value inside the function",
            )
        inputs.append(
            AssetInput(
                param.name, ref.strip("/"), annotation_name(param.annotation), mapping, since
            )
        )
    if explicit:
        raise DefinitionError(
            f"ins names parameters the function does not have: {sorted(explicit)}",
            asset=label,
            hint=f"the parameters are {list(sig.parameters)}",
        )
    dep_list = tuple(deps or ())
    for d in dep_list:
        if not isinstance(d, str) or not d.strip("/"):
            raise DefinitionError(
                f"deps entry {d!r} is not an asset name", asset=label, hint="deps=['raw_orders']"
            )
    if engine == "duckdb" and kind == "asset":
        pass
    pcols: tuple[str, ...]
    if partition_column is None:
        pcols = ()
    elif isinstance(partition_column, str):
        pcols = (partition_column,)
    else:
        pcols = tuple(partition_column)
    if partitions is not None:
        if not hasattr(partitions, "key") or not hasattr(partitions, "parse"):
            raise DefinitionError(
                f"partitions={partitions!r} is not a partitions definition",
                asset=label,
                hint="use lh.daily(start=...), lh.static([...]) or lh.multi(...)",
            )
        ndims = len(getattr(partitions, "dims", ())) or 1
        if not pcols:
            raise DefinitionError(
                "a partitioned asset needs partition_column=",
                asset=label,
                hint="name the table column that holds the partition value, "
                "e.g. partition_column='day'",
            )
        if len(pcols) != ndims:
            raise DefinitionError(
                f"partition_column names {len(pcols)} column(s) for {ndims} partition dimension(s)",
                asset=label,
                hint="give one column per dimension, in the order of lh.multi(...)",
            )
    elif pcols:
        raise DefinitionError(
            "partition_column= without partitions=",
            asset=label,
            hint="add partitions=lh.daily(start=...)",
        )
    if max_partitions_per_run is not None and (
        not isinstance(max_partitions_per_run, int) or max_partitions_per_run < 1
    ):
        raise DefinitionError(
            f"max_partitions_per_run={max_partitions_per_run!r} must be a positive int",
            asset=label,
            hint="e.g. 31",
        )
    if not isinstance(retries, int) or retries < 0:
        raise DefinitionError(
            f"retries={retries!r} must be an int >= 0", asset=label, hint="e.g. retries=2"
        )
    return AssetSpec(
        name=asset_name,
        namespace=namespace or None,
        fn=fn,
        inputs=tuple(inputs),
        deps=tuple(d.strip("/") for d in dep_list),
        context_param=context_param,
        engine=engine,
        format=format,
        write=write_mode,
        schema=schema,
        code_version=code_version,
        description=description if description is not None else inspect.getdoc(fn),
        tags=dict(tags or {}),
        partitions=partitions,
        partition_column=pcols,
        checks=_normalize_checks(checks, label),
        max_partitions_per_run=max_partitions_per_run,
        max_age=_parse_age(max_age, label),
        retries=retries,
        kind=kind,
        observe=observe,
        previous_names=tuple(previous_names),
        erase_by=tuple(erase_by),
        defined_at=_where(fn),
    )


F = Any


@overload
def asset(fn: Callable[..., Any], /) -> Callable[..., Any]: ...


@overload
def asset(
    fn: None = None,
    /,
    **kwargs: Any,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]: ...


def asset(fn: Callable[..., Any] | None = None, /, **kwargs: Any) -> Any:
    """Declare a function as a data asset.

    Use bare (``@lh.asset``) or with arguments. The function is returned unchanged, so
    it stays callable in plain unit tests; the declaration is attached as
    ``fn.__lakehouse_asset__`` and registered in :data:`REGISTRY`.

    Keyword Args:
        name: the asset name (default: the function name).
        namespace: a folder such as ``"sales"``; the key becomes ``sales/name``.
        deps: order-only upstreams (run before, not passed in).
        ins: ``{"param": "upstream"}`` renames, or ``lh.upstream(...)`` mappings.
        engine: ``"polars"`` (default) or ``"duckdb"``.
        format: ``"delta"`` or ``"iceberg"`` (default: the lakehouse's format).
        write: ``"overwrite"`` (default), ``"append"`` or ``lh.merge(on=[...])``.
        schema: ``"strict"`` (default), ``"add_columns"`` or ``"replace"``.
        code_version: a fixed code version instead of the source fingerprint.
        description: text for docs and views (default: the docstring).
        tags: free-form labels.
        partitions: a partitions definition (``lh.daily(...)`` ...).
        partition_column: the table column(s) holding the partition value.
        checks: data-quality checks run before the table commit.
        max_partitions_per_run: split long ranges into chunks of this many partitions.
        max_age: freshness limit such as ``"1h"``.
        retries: retries of retryable errors (storage timeouts, commit conflicts).
        previous_names: former names of the asset: the first run adopts the table and
            history of the old name instead of recomputing (see ``docs/maintenance.md``).
        erase_by: columns that carry erasable keys unchanged from the upstream (e.g.
            ``["customer_id"]``): ``lake.erase()`` applies its predicate here directly
            instead of recomputing, when the column lineage confirms it.

    Raises:
        DefinitionError: on any invalid argument, naming the asset and the fix.
    """
    unknown = set(kwargs) - _ASSET_KWARGS
    if unknown:
        raise DefinitionError(
            f"@lh.asset got unknown argument(s) {sorted(unknown)}",
            asset=kwargs.get("name") or getattr(fn, "__name__", None),
            hint=f"valid arguments are {sorted(_ASSET_KWARGS)}",
        )

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        spec = build_spec(f, **kwargs)
        register(f, spec)
        return f

    if fn is not None:
        return decorate(fn)
    return decorate


_ASSET_KWARGS = {
    "name",
    "namespace",
    "deps",
    "ins",
    "engine",
    "format",
    "write",
    "schema",
    "code_version",
    "description",
    "tags",
    "partitions",
    "partition_column",
    "checks",
    "max_partitions_per_run",
    "max_age",
    "retries",
    "previous_names",
    "erase_by",
}


def register(fn: Any, spec: AssetSpec) -> None:
    """Attach ``spec`` to ``fn`` and make it the registry's definition of its key."""
    with contextlib.suppress(AttributeError, TypeError):  # builtins, some callables
        fn.__lakehouse_asset__ = spec
    REGISTRY[spec.key] = spec


def spec_of(obj: Any) -> AssetSpec | None:
    """The :class:`AssetSpec` declared on ``obj``, or ``None``."""
    if isinstance(obj, AssetSpec):
        return obj
    spec = getattr(obj, "__lakehouse_asset__", None)
    return spec if isinstance(spec, AssetSpec) else None


def collect(objs: Any) -> list[AssetSpec]:
    """Gather asset specs from functions, specs, modules, mappings or iterables of them.

    Duplicates of the same definition are dropped; two different definitions of one key
    are kept, so the graph can report them.
    """
    found: list[AssetSpec] = []
    seen: set[int] = set()

    def add(spec: AssetSpec) -> None:
        if id(spec) not in seen:
            seen.add(id(spec))
            found.append(spec)

    def visit(obj: Any, depth: int) -> None:
        spec = spec_of(obj)
        if spec is not None:
            add(spec)
            return
        if inspect.ismodule(obj):
            for value in list(vars(obj).values()):
                s = spec_of(value)
                if s is not None:
                    add(s)
            return
        if isinstance(obj, Mapping):
            for value in list(obj.values()):
                s = spec_of(value)
                if s is not None:
                    add(s)
            return
        if isinstance(obj, (list, tuple, set, frozenset)) and depth < 2:
            for item in obj:
                visit(item, depth + 1)
            return
        raise DefinitionError(
            f"assets= got {type(obj).__name__} {obj!r:.60}, which holds no asset",
            hint="pass @lh.asset functions, modules, or a mapping such as globals()",
        )

    visit(objs, 0)
    return found
