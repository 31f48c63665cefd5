"""Data-quality checks: pure declarations (layer 1).

A check is a value attached to an asset, either in ``@lh.asset(checks=[...])`` or with
the ``@lh.check("asset")`` decorator. Checks run on the data about to be published,
before the table commit (write-audit-publish); a failing check of severity ``"error"``
(the default) blocks the commit, one of severity ``"warn"`` is recorded and shown only.

Nothing here evaluates a check: the execution layer does that with Polars. So this module
holds Polars expressions and pandera schemas as opaque objects and imports neither.

    >>> import lakehouse as lh
    >>> lh.not_null("id", "day").name
    'not_null(id, day)'
    >>> lh.row_count(min=1).describe()
    'row_count(min=1)'
    >>> lh.accepted_values("status", ["open", "closed"], severity="warn").severity
    'warn'
    >>> lh.unique()
    Traceback (most recent call last):
    ...
    lakehouse.errors.DefinitionError: unique() needs at least one column
      hint: e.g. lh.unique('id')
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .errors import DefinitionError, UnknownAssetError

SEVERITIES = ("error", "warn")
KINDS = ("not_null", "unique", "accepted_values", "row_count", "expect", "custom", "pandera")
_CONTEXT_NAMES = ("ctx", "context")


@dataclass(frozen=True)
class CheckResult:
    """What a custom check returns when a plain ``bool`` is not enough.

    Attributes:
        passed: whether the data is acceptable.
        metadata: free-form facts shown in ``lake.checks(name)`` (JSON-serializable).
        failing_rows: how many rows failed, when the check knows.
        sample: a few failing rows (dicts), when the check knows.

    >>> CheckResult(False, {"late": 3}, failing_rows=3).passed
    False
    """

    passed: bool
    metadata: Mapping[str, Any] = field(default_factory=dict)
    failing_rows: int | None = None
    sample: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True, eq=False)
class Check:
    """One declared data-quality check.

    Build them with :func:`not_null`, :func:`unique`, :func:`accepted_values`,
    :func:`row_count`, :func:`expect` or the :func:`check` decorator rather than directly.

    Attributes:
        kind: one of ``not_null``, ``unique``, ``accepted_values``, ``row_count``,
            ``expect``, ``custom``, ``pandera``.
        name: unique among the checks of one asset; shown in results and history.
        severity: ``"error"`` blocks the commit when the check fails, ``"warn"`` does not.
        columns: the columns a built-in check reads.
        values: the accepted values of ``accepted_values``.
        min: lower bound of ``row_count`` (inclusive).
        max: upper bound of ``row_count`` (inclusive).
        expr: the Polars expression of ``expect`` (or SQL text for ``pl.sql_expr``).
        fn: the function of a custom check.
        data_param: the parameter of ``fn`` that receives the data.
        data_type: the annotation of that parameter (``DataFrame``, ``LazyFrame``, ``Table``).
        context_param: the parameter of ``fn`` that receives the run context, if any.
        schema: the pandera schema of a ``pandera`` check.
        asset: the asset named in ``@lh.check("asset")``.
    """

    kind: str
    name: str
    severity: str = "error"
    columns: tuple[str, ...] = ()
    values: tuple[Any, ...] = ()
    min: int | None = None
    max: int | None = None
    expr: Any = None
    fn: Callable[..., Any] | None = None
    data_param: str | None = None
    data_type: str = ""
    context_param: str | None = None
    schema: Any = None
    asset: str | None = None

    @property
    def blocking(self) -> bool:
        """Whether a failure blocks publication (``severity="error"``)."""
        return self.severity == "error"

    def describe(self) -> str:
        """A short human description (the name)."""
        return self.name

    def __repr__(self) -> str:
        return f"Check({self.name!r}, severity={self.severity!r})"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """A custom check stays callable as the plain function it decorates."""
        if self.fn is None:
            raise TypeError(f"check {self.name!r} is not callable")
        return self.fn(*args, **kwargs)


def _severity(severity: Any, what: str) -> str:
    if severity not in SEVERITIES:
        raise DefinitionError(
            f"{what}: severity={severity!r} is not a severity",
            hint="use severity='error' (blocks the commit) or severity='warn' (records only)",
        )
    return str(severity)


def _name(name: Any, default: str, what: str) -> str:
    if name is None:
        return default
    if not isinstance(name, str) or not name.strip():
        raise DefinitionError(
            f"{what}: name={name!r} must be a non-empty string", hint="e.g. name='ids_present'"
        )
    return name


def _columns(cols: tuple[Any, ...], what: str, example: str) -> tuple[str, ...]:
    flat: list[Any] = []
    for c in cols:
        if isinstance(c, (list, tuple)):
            flat.extend(c)
        else:
            flat.append(c)
    if not flat:
        raise DefinitionError(f"{what}() needs at least one column", hint=f"e.g. {example}")
    for c in flat:
        if not isinstance(c, str) or not c:
            raise DefinitionError(
                f"{what}(): column {c!r} is not a column name", hint=f"e.g. {example}"
            )
    if len(set(flat)) != len(flat):
        raise DefinitionError(
            f"{what}(): a column is named twice in {flat}", hint="name each column once"
        )
    return tuple(flat)


def not_null(*columns: str, severity: str = "error", name: str | None = None) -> Check:
    """Every row has a value in each of ``columns``.

    >>> not_null("id").columns
    ('id',)
    """
    cols = _columns(columns, "not_null", "lh.not_null('id')")
    return Check(
        "not_null",
        _name(name, f"not_null({', '.join(cols)})", "not_null"),
        _severity(severity, "not_null"),
        columns=cols,
    )


def unique(*columns: str, severity: str = "error", name: str | None = None) -> Check:
    """No two rows share the same values of ``columns`` (rows with a null key are ignored;
    combine with :func:`not_null` to forbid those).

    >>> unique("day", "carrier").name
    'unique(day, carrier)'
    """
    cols = _columns(columns, "unique", "lh.unique('id')")
    return Check(
        "unique",
        _name(name, f"unique({', '.join(cols)})", "unique"),
        _severity(severity, "unique"),
        columns=cols,
    )


def accepted_values(
    column: str, values: Iterable[Any], *, severity: str = "error", name: str | None = None
) -> Check:
    """Every non-null value of ``column`` is one of ``values``.

    >>> accepted_values("status", ["a", "b"]).values
    ('a', 'b')
    """
    cols = _columns(
        (column,), "accepted_values", "lh.accepted_values('status', ['open', 'closed'])"
    )
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise DefinitionError(
            f"accepted_values({column!r}, ...): values must be a list, got {type(values).__name__}",
            hint=f"e.g. lh.accepted_values({column!r}, ['open', 'closed'])",
        )
    vals = tuple(values)
    if not vals:
        raise DefinitionError(
            f"accepted_values({column!r}, []): the list of values is empty",
            hint="list at least one accepted value",
        )
    return Check(
        "accepted_values",
        _name(name, f"accepted_values({cols[0]})", "accepted_values"),
        _severity(severity, "accepted_values"),
        columns=cols,
        values=vals,
    )


def row_count(
    *,
    min: int | None = None,
    max: int | None = None,
    severity: str = "error",
    name: str | None = None,
) -> Check:
    """The number of rows written lies in ``[min, max]`` (either bound may be omitted).

    >>> row_count(min=1, max=10).name
    'row_count(min=1, max=10)'
    """
    for label, bound in (("min", min), ("max", max)):
        if bound is not None and (
            isinstance(bound, bool) or not isinstance(bound, int) or bound < 0
        ):
            raise DefinitionError(
                f"row_count({label}={bound!r}): must be an int >= 0",
                hint="e.g. lh.row_count(min=1)",
            )
    if min is None and max is None:
        raise DefinitionError("row_count() needs min= or max=", hint="e.g. lh.row_count(min=1)")
    if min is not None and max is not None and min > max:
        raise DefinitionError(
            f"row_count(min={min}, max={max}): min is larger than max", hint="swap the bounds"
        )
    parts = [f"{k}={v}" for k, v in (("min", min), ("max", max)) if v is not None]
    return Check(
        "row_count",
        _name(name, f"row_count({', '.join(parts)})", "row_count"),
        _severity(severity, "row_count"),
        min=min,
        max=max,
    )


def expect(expr: Any, *, severity: str = "error", name: str | None = None) -> Check:
    """Every row satisfies a boolean Polars expression (or a SQL condition text).

    A row where the expression is null does not satisfy it.

    >>> expect("amount >= 0").name
    'expect(amount >= 0)'
    """
    if isinstance(expr, str):
        if not expr.strip():
            raise DefinitionError(
                "expect(''): the condition is empty", hint="e.g. lh.expect(pl.col('x') > 0)"
            )
        default = f"expect({expr.strip()})"
    elif type(expr).__module__.split(".")[0] == "polars" and type(expr).__name__ == "Expr":
        text = str(expr)
        default = f"expect({text if len(text) <= 80 else text[:77] + '...'})"
    else:
        raise DefinitionError(
            f"expect() takes a Polars expression or a SQL condition, got {type(expr).__name__}",
            hint="e.g. lh.expect(pl.col('amount') >= 0) or lh.expect('amount >= 0')",
        )
    return Check("expect", _name(name, default, "expect"), _severity(severity, "expect"), expr=expr)


def _is_pandera(obj: Any) -> bool:
    mod = type(obj).__module__.split(".")[0]
    if mod == "pandera" and hasattr(obj, "validate"):
        return True
    return (
        inspect.isclass(obj)
        and any(c.__module__.split(".")[0] == "pandera" for c in obj.__mro__[1:])
        and hasattr(obj, "validate")
    )


def pandera_check(schema: Any, *, severity: str = "error", name: str | None = None) -> Check:
    """A pandera schema (Polars flavour: ``pandera.polars.DataFrameSchema`` or a
    ``DataFrameModel``) as a check; needs ``pip install 'pandera[polars]'`` to run."""
    if not _is_pandera(schema):
        raise DefinitionError(
            f"{type(schema).__name__} is not a pandera schema",
            hint="pass a pandera.polars.DataFrameSchema or DataFrameModel",
        )
    label = getattr(schema, "name", None) or getattr(schema, "__name__", None) or "schema"
    return Check(
        "pandera",
        _name(name, f"pandera({label})", "pandera"),
        _severity(severity, "pandera"),
        schema=schema,
    )


def _custom(fn: Callable[..., Any], *, asset: str | None, name: str | None, severity: str) -> Check:
    label = asset or "?"
    if not callable(fn) or inspect.isclass(fn):
        raise DefinitionError(
            f"a check must be a function, got {type(fn).__name__}",
            asset=asset,
            hint="decorate a def with @lh.check('asset')",
        )
    check_name = _name(name, getattr(fn, "__name__", "") or "", "check")
    if (not check_name or check_name == "<lambda>") and name is None:
        raise DefinitionError(
            "a lambda check needs a name", asset=asset, hint="pass name='...' or use a def"
        )
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        raise DefinitionError(
            f"cannot read the signature of check {check_name!r}",
            asset=asset,
            hint="decorate a plain Python function",
        ) from None
    data_param = None
    data_type = ""
    context_param = None
    for p in sig.parameters.values():
        ann = p.annotation
        ann_text = (
            ann
            if isinstance(ann, str)
            else getattr(ann, "__name__", "")
            if ann is not p.empty
            else ""
        )
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise DefinitionError(
                f"check {check_name!r} has *{p.name}",
                asset=asset,
                hint="a check takes the data (and optionally ctx): def check(df): ...",
            )
        if (p.name in _CONTEXT_NAMES and not ann_text) or str(ann_text).split(".")[-1] == "Context":
            context_param = p.name
            continue
        if data_param is None:
            data_param = p.name
            data_type = str(ann_text).split(".")[-1].split("[")[0]
            continue
        if p.default is p.empty:
            raise DefinitionError(
                f"check {check_name!r} takes an extra parameter {p.name!r}",
                asset=asset,
                hint=f"a check of {label!r} receives one argument, the data about to be published "
                "(plus ctx if it asks for it)",
            )
    if data_param is None:
        raise DefinitionError(
            f"check {check_name!r} takes no parameter for the data",
            asset=asset,
            hint="def my_check(df: pl.DataFrame) -> bool: ...",
        )
    if data_type and data_type not in ("DataFrame", "LazyFrame", "Table", "Any"):
        raise DefinitionError(
            f"check {check_name!r}: cannot pass the data as {data_type}",
            asset=asset,
            hint="annotate the data parameter as pl.DataFrame, pl.LazyFrame or pa.Table "
            "(or not at all)",
        )
    return Check(
        "custom",
        check_name,
        _severity(severity, f"check {check_name!r}"),
        fn=fn,
        data_param=data_param,
        data_type=data_type,
        context_param=context_param,
        asset=asset,
    )


def as_check(obj: Any, asset: str | None = None) -> Check:
    """One entry of ``checks=[...]`` as a :class:`Check`: a check, a pandera schema, or a
    plain function of the data (a custom check named after the function)."""
    if isinstance(obj, Check):
        return obj
    if _is_pandera(obj):
        return pandera_check(obj)
    if callable(obj) and not inspect.isclass(obj):
        return _custom(obj, asset=asset, name=None, severity="error")
    raise DefinitionError(
        f"checks= entry {obj!r:.60} is not a check",
        asset=asset,
        hint="use lh.not_null(...), lh.unique(...), lh.accepted_values(...), lh.row_count(...), "
        "lh.expect(...), a pandera schema or a function of the data",
    )


def normalize(checks: Any, asset: str | None = None) -> tuple[Check, ...]:
    """``checks=`` of ``@lh.asset`` as a tuple of :class:`Check`, names unique."""
    if checks is None:
        return ()
    items = list(checks) if isinstance(checks, (list, tuple)) else [checks]
    out = tuple(as_check(c, asset) for c in items)
    _unique_names(out, asset)
    return out


def _unique_names(checks: Iterable[Check], asset: str | None) -> None:
    seen: set[str] = set()
    for c in checks:
        if c.name in seen:
            raise DefinitionError(
                f"two checks are named {c.name!r}", asset=asset, hint="give one of them name='...'"
            )
        seen.add(c.name)


#: Checks declared with ``@lh.check("asset")``: asset as written -> check name -> check.
#: Re-running a notebook cell replaces a check of the same name.
REGISTRY: dict[str, dict[str, Check]] = {}


def check(
    asset: str, *, name: str | None = None, severity: str = "error"
) -> Callable[[Callable[..., Any]], Check]:
    """Declare a custom check of ``asset``: a function of the output data returning
    ``bool`` or a :class:`CheckResult`.

    The function receives the data about to be published as a ``pl.DataFrame`` (or
    ``pl.LazyFrame`` / ``pa.Table`` when its parameter is annotated so), and the run
    context when it has a ``ctx`` parameter.

    >>> @check("doc_orders", severity="warn")
    ... def few_refunds(df) -> bool:
    ...     return True
    >>> few_refunds.name, few_refunds.severity
    ('few_refunds', 'warn')
    >>> REGISTRY.pop("doc_orders") and None
    """
    if not isinstance(asset, str) or not asset.strip("/"):
        raise DefinitionError(
            f"@lh.check({asset!r}): the first argument names the asset checked",
            hint="e.g. @lh.check('orders')",
        )
    key = asset.strip("/")

    def decorate(fn: Callable[..., Any]) -> Check:
        chk = _custom(fn, asset=key, name=name, severity=severity)
        REGISTRY.setdefault(key, {})[chk.name] = chk
        return chk

    return decorate


def registered(key: str, name: str) -> tuple[Check, ...]:
    """Checks declared with ``@lh.check`` for the asset with ``key`` (or its bare ``name``)."""
    found = dict(REGISTRY.get(key, {}))
    if name != key:
        for n, c in REGISTRY.get(name, {}).items():
            found.setdefault(n, c)
    return tuple(found.values())


def checks_of(spec: Any) -> tuple[Check, ...]:
    """Every check of an asset: ``checks=`` of its declaration, then ``@lh.check`` ones."""
    own = normalize(spec.checks, spec.key)
    names = {c.name for c in own}
    extra = tuple(c for c in registered(spec.key, spec.name) if c.name not in names)
    out = own + extra
    return tuple(replace(c, asset=spec.key) if c.asset != spec.key else c for c in out)


def unknown_targets(keys: Iterable[str]) -> list[str]:
    """Assets named in ``@lh.check(...)`` that are not among ``keys`` (nor their names)."""
    known = set(keys) | {k.rsplit("/", 1)[-1] for k in keys}
    return sorted(a for a, checks in REGISTRY.items() if checks and a not in known)


def validate_targets(keys: Iterable[str]) -> None:
    """Raise :class:`UnknownAssetError` for a ``@lh.check`` naming no asset."""
    import difflib

    keys = list(keys)
    for target in unknown_targets(keys):
        close = difflib.get_close_matches(target, keys, n=1)
        names = ", ".join(REGISTRY[target])
        raise UnknownAssetError(
            f"@lh.check({target!r}) ({names}) names no asset",
            asset=target,
            hint=f"did you mean {close[0]!r}?"
            if close
            else "name an asset declared with @lh.asset",
        )
