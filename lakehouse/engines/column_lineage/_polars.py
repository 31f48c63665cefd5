"""Column lineage from the resolved plan of a Polars ``LazyFrame``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ._model import (
    _RANK,
    _UNKNOWN_SRC,
    AGGREGATED,
    IDENTITY,
    MARK,
    TRANSFORMED,
    UNKNOWN,
    ColumnLineage,
    SourceTable,
    SrcCol,
    _Frame,
    _max_kind,
    _to_lineage,
    unknown_lineage,
)

#: Polars versions whose internal plan traverser the analyser is written against
#: (``[low, high)``), and the plan-format versions (major) they report.
SUPPORTED_POLARS = ((2, 0), (2, 2))
SUPPORTED_IR_MAJOR = frozenset({16})


# ------------------------------------------------------------------- Polars plans


class _Unsupported(Exception):
    """The plan (or an expression) uses something the analyser does not understand."""


def _combine(level: str, kind: str) -> str:
    if kind == UNKNOWN or level == UNKNOWN:
        return UNKNOWN
    return level if _RANK[level] >= _RANK[kind] else kind


def polars_version_supported(version: str | None = None) -> bool:
    """Whether the installed Polars is in :data:`SUPPORTED_POLARS`."""
    import polars as pl

    text = version or pl.__version__
    try:
        parts = tuple(int(p) for p in text.split(".")[:2])
    except ValueError:
        return False
    low, high = SUPPORTED_POLARS
    return low <= parts < high


def polars_lineage(lf: Any, sources: Sequence[SourceTable]) -> ColumnLineage:
    """Column lineage of a Polars ``LazyFrame``; ``unknown`` columns when it cannot be analysed."""
    import polars as pl

    try:
        names = list(lf.collect_schema().names())
    except Exception as exc:
        return unknown_lineage([], "polars-plan", f"the plan does not resolve: {exc}")
    if not polars_version_supported():
        return unknown_lineage(
            names,
            "polars-plan",
            f"polars {pl.__version__} is outside the range the plan analyser supports "
            f"({_range_text()})",
        )
    box: dict[str, Any] = {}

    class _Done(Exception):
        pass

    def callback(nt: Any, *_: Any) -> None:
        try:
            version = tuple(nt.version())
            if not version or version[0] not in SUPPORTED_IR_MAJOR:
                box["error"] = f"polars plan format {version} is not supported"
            else:
                box["frame"] = _PlanWalker(nt, sources).node()
        except Exception as exc:
            box["error"] = f"{type(exc).__name__}: {exc}"
        box["called"] = True
        raise _Done

    try:
        lf.collect(optimizations=pl.QueryOptFlags.none(), post_opt_callback=callback)
    except Exception as exc:
        if not box.get("called"):
            return unknown_lineage(names, "polars-plan", f"the plan could not be inspected: {exc}")
    if not box.get("called"):  # pragma: no cover - the callback did not run but the query did
        return unknown_lineage(names, "polars-plan", "the plan traverser was not called")
    frame: _Frame | None = box.get("frame")
    if frame is None:
        return unknown_lineage(names, "polars-plan", box.get("error") or "unsupported plan")
    return _to_lineage(frame, names, "polars-plan")


def _range_text() -> str:
    (a, b), (c, d) = SUPPORTED_POLARS
    return f">={a}.{b},<{c}.{d}"


_AGG_FUNCTIONS = frozenset(
    {
        "cum_sum",
        "cum_prod",
        "cum_min",
        "cum_max",
        "cum_count",
        "cum_reduce",
        "cum_fold",
        "cumulative_eval",
        "shift",
        "shift_and_fill",
        "diff",
        "pct_change",
        "rank",
        "interpolate",
        "interpolate_by",
        "fill_null_with_strategy",
        "forward_fill",
        "backward_fill",
        "mode",
        "unique_counts",
        "value_counts",
        "entropy",
        "peak_min",
        "peak_max",
        "arg_unique",
        "rle",
        "rle_id",
        "reinterpret",
        "cum_count_by",
        "ewm_mean",
        "ewm_std",
        "ewm_var",
        "ewm_mean_by",
        "rolling_map",
        "hist",
        "approx_n_unique",
        "arg_where",
        "search_sorted",
        "top_k",
        "bottom_k",
    }
)
_AGG_ENUMS = frozenset({"RollingFunction", "RollingFunctionBy", "EwmFunction"})
_AGG_BOOLEAN = frozenset(
    {
        "IsDuplicated",
        "IsUnique",
        "IsFirstDistinct",
        "IsLastDistinct",
        "IsSorted",
        "All",
        "Any",
        "HasNulls",
        "IsEmpty",
    }
)


class _PlanWalker:
    """Walks the resolved plan through the node traverser, bottom up."""

    def __init__(self, nt: Any, sources: Sequence[SourceTable]) -> None:
        self.nt = nt
        self.sources = list(sources)
        self.by_token = {s.token: s for s in self.sources if s.token}
        self._memo: dict[int, _Frame] = {}

    # -- plumbing

    def child(self, index: int, slice_above: bool = False) -> _Frame:
        cur = self.nt.get_node()
        self.nt.set_node(index)
        try:
            return self.node(slice_above)
        finally:
            self.nt.set_node(cur)

    def schema(self) -> list[str]:
        return list(self.nt.get_schema().keys())

    def source_for_paths(self, paths: Sequence[str]) -> SourceTable | None:
        found: set[str] = set()
        best: SourceTable | None = None
        for path in paths:
            p = _strip_scheme(str(path))
            match = None
            for s in self.sources:
                root = _strip_scheme(s.uri).rstrip("/") + "/"
                if p.startswith(root) and (
                    match is None or len(root) > len(_strip_scheme(match.uri)) + 1
                ):
                    match = s
            if match is None:
                return None
            found.add(match.asset)
            best = match
        return best if len(found) == 1 else None

    # -- nodes

    def node(self, slice_above: bool = False) -> _Frame:
        try:
            node = self.nt.view_current_node()
        except NotImplementedError:  # opaque Python functions (map_batches ...)
            return self._opaque()
        kind = type(node).__name__
        method = getattr(self, f"_n_{kind}", None)
        if method is None:
            return self._opaque()
        frame: _Frame = method(node, slice_above)
        names = self.schema()
        return _Frame({n: frame.unknown(n) for n in names}, frame.indirect)

    def _opaque(self) -> _Frame:
        return _Frame({n: {_UNKNOWN_SRC: UNKNOWN} for n in self.schema()})

    def _scan(self, source: SourceTable | None, columns: Sequence[str]) -> _Frame:
        if source is None:
            return _Frame({c: {_UNKNOWN_SRC: UNKNOWN} for c in columns})
        return _Frame({c: {(source.asset, c): IDENTITY} for c in columns})

    def _n_Scan(self, node: Any, _s: bool) -> _Frame:
        frame = self._scan(self.source_for_paths(list(node.paths or [])), self.schema())
        pred = getattr(node.predicate, "node", None)
        if isinstance(pred, int):
            self._add_indirect(frame, frame, pred)
        return frame

    def _n_PythonScan(self, node: Any, _s: bool) -> _Frame:
        source = None
        options = node.options
        fn = options[0] if isinstance(options, tuple) and options else None
        args = getattr(fn, "args", ())
        for arg in args:
            files = getattr(arg, "files", None)
            if files and source is None:
                source = self.source_for_paths(list(files))
        frame = self._scan(source, self.schema())
        pred = options[4] if isinstance(options, tuple) and len(options) > 4 else None
        if isinstance(pred, tuple) and len(pred) == 2 and isinstance(pred[1], int):
            for name in self._expr_columns(pred[1]):
                frame.indirect.update(dict.fromkeys(frame.unknown(name[0])))
        return frame

    def _n_DataFrameScan(self, node: Any, _s: bool) -> _Frame:
        return self._scan(None, self.schema())

    def _n_SimpleProjection(self, node: Any, _s: bool) -> _Frame:
        return self.child(node.input)

    def _n_Cache(self, node: Any, s: bool) -> _Frame:
        return self.child(node.input, s)

    def _n_Sink(self, node: Any, _s: bool) -> _Frame:
        return self.child(node.input)

    def _n_Slice(self, node: Any, _s: bool) -> _Frame:
        return self.child(node.input, slice_above=True)

    def _marked(self, node: Any) -> _Frame | None:
        """The input table behind a :func:`mark` (the subtree below is not analysed)."""
        if len(node.exprs) != 1 or node.exprs[0].output_name != MARK:
            return None
        e = self.nt.view_expression(node.exprs[0].node)
        value = getattr(e, "value", None) if type(e).__name__ == "Literal" else None
        source = self.by_token.get(value) if isinstance(value, str) else None
        cur = self.nt.get_node()
        self.nt.set_node(node.input)
        try:
            names = self.schema()
        finally:
            self.nt.set_node(cur)
        return self._scan(source, names)

    def _n_Select(self, node: Any, _s: bool) -> _Frame:
        inp = self.child(node.input)
        out = _Frame({}, dict(inp.indirect))
        for e in node.expr:
            out.cols[e.output_name] = self._expr(e.node, inp)
        return out

    def _n_HStack(self, node: Any, _s: bool) -> _Frame:
        marked = self._marked(node)
        if marked is not None:
            return marked
        inp = self.child(node.input)
        out = _Frame(dict(inp.cols), dict(inp.indirect))
        for e in node.exprs:
            out.cols[e.output_name] = self._expr(e.node, inp)
        return out

    def _n_Filter(self, node: Any, _s: bool) -> _Frame:
        inp = self.child(node.input)
        out = _Frame(dict(inp.cols), dict(inp.indirect))
        self._add_indirect(out, inp, node.predicate.node)
        return out

    def _n_Sort(self, node: Any, slice_above: bool) -> _Frame:
        inp = self.child(node.input)
        out = _Frame(dict(inp.cols), dict(inp.indirect))
        if slice_above or node.slice is not None:
            for e in node.by_column:
                self._add_indirect(out, inp, e.node)
        return out

    def _n_Distinct(self, node: Any, _s: bool) -> _Frame:
        inp = self.child(node.input)
        out = _Frame(dict(inp.cols), dict(inp.indirect))
        subset = (
            node.options[1] if isinstance(node.options, tuple) and len(node.options) > 1 else None
        )
        for name in subset or ():
            out.indirect.update(dict.fromkeys(k for k in inp.unknown(name) if k != _UNKNOWN_SRC))
        return out

    def _n_GroupBy(self, node: Any, _s: bool) -> _Frame:
        if node.apply:
            return self._opaque()
        inp = self.child(node.input)
        out = _Frame({}, dict(inp.indirect))
        for e in node.keys:
            out.cols[e.output_name] = self._expr(e.node, inp)
        for e in node.aggs:
            out.cols[e.output_name] = self._expr(e.node, inp, agg=True)
        return out

    def _n_Union(self, node: Any, _s: bool) -> _Frame:
        names = self.schema()
        out = _Frame({n: {} for n in names})
        for index in node.inputs:
            cur = self.nt.get_node()
            self.nt.set_node(index)
            try:
                child_names = self.schema()
                frame = self.node()
            finally:
                self.nt.set_node(cur)
            if len(child_names) != len(names):
                raise _Unsupported("union inputs with different widths")
            for pos, name in enumerate(names):
                _merge(out.cols[name], frame.unknown(child_names[pos]))
            out.indirect.update(frame.indirect)
        return out

    def _n_MergeSorted(self, node: Any, _s: bool) -> _Frame:
        left = self.child(node.input_left)
        right = self.child(node.input_right)
        out = _Frame({n: {} for n in self.schema()}, {**left.indirect, **right.indirect})
        for name in out.cols:
            _merge(out.cols[name], left.unknown(name))
            _merge(out.cols[name], right.unknown(name))
        return out

    def _n_HConcat(self, node: Any, _s: bool) -> _Frame:
        out = _Frame({})
        for index in node.inputs:
            frame = self.child(index)
            for name, srcs in frame.cols.items():
                if name in out.cols:
                    raise _Unsupported("horizontal concat with duplicate names")
                out.cols[name] = srcs
            out.indirect.update(frame.indirect)
        return out

    def _n_Join(self, node: Any, _s: bool) -> _Frame:
        cur = self.nt.get_node()
        self.nt.set_node(node.input_left)
        left_names = self.schema()
        self.nt.set_node(cur)
        self.nt.set_node(node.input_right)
        right_names = self.schema()
        self.nt.set_node(cur)
        left = self.child(node.input_left)
        right = self.child(node.input_right)
        opts = node.options
        how = opts[0][0] if isinstance(opts[0], tuple) else opts[0]
        suffix = opts[3] if len(opts) > 3 and isinstance(opts[3], str) else "_right"
        coalesce = bool(opts[4]) if len(opts) > 4 else False
        out = _Frame({}, {**left.indirect, **right.indirect})
        for e in node.left_on:
            self._add_indirect(out, left, e.node)
        for e in node.right_on:
            self._add_indirect(out, right, e.node)
        if node.predicate is not None:
            raise _Unsupported("join predicates")
        left_keys = [self._bare_column(e.node) for e in node.left_on]
        right_keys = [self._bare_column(e.node) for e in node.right_on]
        names = self.schema()
        if how in ("Semi", "Anti"):
            for n in left_names:
                out.cols[n] = left.unknown(n)
            return out
        pairs = {
            r: lk
            for lk, r in zip(left_keys, right_keys, strict=False)
            if r is not None and lk is not None
        }
        built: list[tuple[str, dict[SrcCol, str]]] = []
        if how == "Right" and coalesce:
            skip_left = {k for k in left_keys if k is not None}
            for n in left_names:
                if n not in skip_left:
                    built.append((n, left.unknown(n)))
            taken = {n for n, _ in built}
            for n in right_names:
                built.append((n + suffix if n in taken else n, right.unknown(n)))
        else:
            for n in left_names:
                built.append((n, dict(left.unknown(n))))
            taken = set(left_names)
            drop_right = set(pairs) if coalesce and how != "Cross" else set()
            for n in right_names:
                if n in drop_right:
                    if how == "Full":  # the coalesced key comes from either side
                        target = dict(built)[pairs[n]]
                        _merge(target, right.unknown(n))
                    continue
                built.append((n + suffix if n in taken else n, right.unknown(n)))
        if [n for n, _ in built] != names:
            raise _Unsupported(f"unexpected join output columns {names}")
        out.cols.update(built)
        return out

    def _n_MapFunction(self, node: Any, _s: bool) -> _Frame:
        fn = node.function
        name = fn[0] if isinstance(fn, tuple) and fn else None
        if name in (
            "rechunk",
            "row_index",
            "explode",
            "unnest",
            "unpivot",
            "rename",
            "with_row_index",
        ):
            inp = self.child(node.input)
        else:
            return self._opaque()
        out = _Frame(dict(inp.cols), dict(inp.indirect))
        if name == "explode":
            for col in fn[1]:
                out.cols[col] = {k: _combine(TRANSFORMED, v) for k, v in inp.unknown(col).items()}
        elif name == "unnest":
            structs = list(fn[1])
            merged: dict[SrcCol, str] = {}
            for col in structs:
                for k, v in inp.unknown(col).items():
                    merged[k] = _combine(TRANSFORMED, v)
            for col in self.schema():
                if col not in inp.cols or col in structs:
                    out.cols[col] = dict(merged)
        elif name == "unpivot":
            index, on, variable, value = list(fn[1]), list(fn[2]), fn[3], fn[4]
            out = _Frame({c: inp.unknown(c) for c in index}, dict(inp.indirect))
            value_srcs: dict[SrcCol, str] = {}
            for col in on:
                for k, v in inp.unknown(col).items():
                    value_srcs[k] = _combine(TRANSFORMED, v)
            out.cols[variable or "variable"] = {}
            out.cols[value or "value"] = value_srcs
        elif name in ("row_index", "with_row_index"):
            out.cols[fn[1]] = {}
        return out

    # -- expressions

    def _bare_column(self, node: int) -> str | None:
        e = self.nt.view_expression(node)
        return str(e.name) if type(e).__name__ == "Column" else None

    def _expr(self, node: int, frame: _Frame, agg: bool = False) -> dict[SrcCol, str]:
        """Sources of one expression with their kinds."""
        try:
            refs = self._expr_columns(node, agg)
        except (NotImplementedError, _Unsupported):
            return {_UNKNOWN_SRC: UNKNOWN}
        bare = not agg and self._bare_column(node) is not None
        out: dict[SrcCol, str] = {}
        for name, in_agg in refs:
            level = IDENTITY if bare else (AGGREGATED if in_agg else TRANSFORMED)
            for src, kind in frame.unknown(name).items():
                new = _combine(level, kind)
                old = out.get(src)
                out[src] = new if old is None else _max_kind(old, new)
        return out

    def _expr_columns(self, node: int, agg: bool = False) -> list[tuple[str, bool]]:
        """``(column, under an aggregation)`` for every column the expression reads."""
        out: list[tuple[str, bool]] = []
        stack: list[tuple[int, bool]] = [(node, agg)]
        while stack:
            index, in_agg = stack.pop()
            e = self.nt.view_expression(index)
            kind = type(e).__name__
            if kind == "Column":
                out.append((str(e.name), in_agg))
            elif kind in ("Literal", "Len"):
                continue
            elif kind in ("Alias", "Cast", "Sort", "Explode"):
                stack.append((e.expr, in_agg))
            elif kind == "BinaryExpr":
                stack.extend([(e.left, in_agg), (e.right, in_agg)])
            elif kind == "Ternary":
                stack.extend([(e.predicate, in_agg), (e.truthy, in_agg), (e.falsy, in_agg)])
            elif kind == "SortBy":
                stack.append((e.expr, in_agg))
                stack.extend((b, in_agg) for b in e.by)
            elif kind == "Gather":
                stack.extend([(e.expr, in_agg), (e.idx, True)])
            elif kind == "Filter":
                stack.extend([(e.input, in_agg), (e.by, in_agg)])
            elif kind == "Slice":
                stack.extend([(e.input, in_agg), (e.offset, in_agg), (e.length, in_agg)])
            elif kind == "Agg":
                stack.extend((a, True) for a in e.arguments)
            elif kind == "Window":
                stack.append((e.function, True))
                stack.extend((p, True) for p in e.partition_by)
                if isinstance(e.order_by, int):
                    stack.append((e.order_by, True))
            elif kind == "Rolling":
                stack.append((e.function, True))
            elif kind == "Function":
                data = e.function_data
                head = data[0] if isinstance(data, tuple) and data else data
                aggregating = (
                    (isinstance(head, str) and head in _AGG_FUNCTIONS)
                    or type(head).__name__ in _AGG_ENUMS
                    or (
                        type(head).__name__ == "BooleanFunction"
                        and str(head).split(".")[-1] in _AGG_BOOLEAN
                    )
                )
                stack.extend((i, in_agg or aggregating) for i in e.input)
            else:
                raise _Unsupported(f"expression {kind}")
        return out

    def _add_indirect(self, out: _Frame, frame: _Frame, node: int) -> None:
        try:
            refs = self._expr_columns(node)
        except (NotImplementedError, _Unsupported):
            return
        for name, _ in refs:
            out.indirect.update(dict.fromkeys(k for k in frame.unknown(name) if k != _UNKNOWN_SRC))


def _merge(target: dict[SrcCol, str], more: Mapping[SrcCol, str]) -> None:
    for k, v in more.items():
        target[k] = v if k not in target else _max_kind(target[k], v)


def _strip_scheme(uri: str) -> str:
    if uri.startswith("file://"):
        return uri[len("file://") :]
    if "://" in uri:
        return uri.split("://", 1)[1]
    return uri
