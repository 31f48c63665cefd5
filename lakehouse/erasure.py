"""Erasure that follows lineage (layer 5): backs :meth:`Lakehouse.erase` and
:meth:`~Lakehouse.erasures`.

``erase(asset, where=...)`` deletes the matching rows from the asset's table, walks the
recorded lineage downstream (each dependant partition that consumed an affected version
is recomputed, or filtered directly where ``erase_by`` columns provably flow through
unchanged), then purges every older version that still holds the rows and records what
it did (never the erased values). Table-level work is in ``storage``; the record in
``catalog.maintenance``.
"""

from __future__ import annotations

import datetime as _dt
import getpass
import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .errors import (
    ConfigError,
    DefinitionError,
    LakehouseError,
    MaterializeError,
    UnknownAssetError,
)
from .maintenance import (
    _frame,
    _in_sync,
    _move_read_version,
    _resolve,
    require_columns,
    table_ref,
)

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl

    from .api import Lakehouse
    from .assets import AssetSpec, TableRef
    from .catalog import StateRow
    from .partitions import RangeSet


ERASE_SCHEMA = {
    "asset": "String",
    "action": "String",
    "partitions": "String",
    "rows_deleted": "Int64",
    "version_before": "String",
    "version_after": "String",
    "files_removed": "Int64",
    "bytes_removed": "Int64",
}
ERASURES_SCHEMA = {
    "id": "Int64",
    "erased_at": "Datetime",
    "who": "String",
    "reason": "String",
    "predicate_hash": "String",
    "status": "String",
    "assets": "List",
    "files_removed": "Int64",
    "bytes_removed": "Int64",
    "detail": "String",
}


def predicate_of(where: Any, asset: str) -> tuple[Any, str]:
    """``(Polars expression, canonical text)`` of a Polars expression or a SQL predicate."""
    import polars as pl

    if isinstance(where, pl.Expr):
        return where, "polars:" + str(where)
    if isinstance(where, str) and where.strip():
        try:
            return pl.sql_expr(where), "sql:" + " ".join(where.split())
        except Exception as exc:
            raise ConfigError(
                f"where={where!r} is not a SQL predicate Polars can read: {exc}",
                asset=asset,
                hint="e.g. where=\"customer_id = 'c-42'\" or where=pl.col('customer_id') == 'c-42'",
            ) from None
    raise ConfigError(
        f"where= must be a Polars expression or a SQL predicate, got {type(where).__name__}",
        asset=asset,
        hint="e.g. where=pl.col('customer_id') == 'c-42'",
    )


def _matcher(expr: Any, columns: Mapping[str, str] | None = None) -> Callable[[Any], Any]:
    """``match(arrow_table) -> boolean array``; ``columns`` maps the predicate's column
    names to the table's (an identity column renamed downstream)."""
    import polars as pl

    def match(table: Any) -> Any:
        frame = pl.from_arrow(table)
        assert isinstance(frame, pl.DataFrame)
        if columns:
            frame = frame.select([pl.col(dst).alias(src) for src, dst in columns.items()])
        return frame.select(expr.fill_null(False).alias("__match")).to_series().to_arrow()

    return match


class _Erasure:
    """One erasure: what it reads, plans and does (see :func:`erase`)."""

    def __init__(self, lake: Lakehouse, key: str, expr: Any) -> None:
        self.lake = lake
        self.key = key
        self.expr = expr
        self.graph = lake.graph
        self.state = lake.catalog.state()
        self._hits: dict[tuple[str, str | None], RangeSet | None] = {}

    # -- reading ------------------------------------------------------------------------

    def scan(self, key: str, version: str | None) -> Any:
        import polars as pl

        from .storage import get_format

        ref = replace(table_ref(self.lake, key), version=version)
        return pl.scan_pyarrow_dataset(get_format(ref.format).dataset(ref))

    def hits(
        self, key: str, version: str | None, columns: Mapping[str, str] | None = None
    ) -> RangeSet | None:
        """The partitions of ``key`` at ``version`` that hold matching rows (``None``:
        cannot tell, assume all)."""
        import polars as pl

        from .partitions import RangeSet
        from .plan import UNIT

        cache = (key, version)
        if cache in self._hits:
            return self._hits[cache]
        expr = self.expr
        try:
            lf = self.scan(key, version)
            if columns:
                lf = lf.with_columns([pl.col(dst).alias(src) for src, dst in columns.items()])
            matched = lf.filter(expr)
            spec = self.graph.specs.get(key)
            if spec is None or spec.partitions is None:
                out: RangeSet | None = UNIT if matched.head(1).collect().height else RangeSet()
            else:
                values = matched.select(list(spec.partition_column)).unique().collect()
                out = _indices(spec, values)
        except LakehouseError:
            out = None
        except Exception:
            out = None
        self._hits[cache] = out
        return out

    def consumed_hits(self, d: str, row: StateRow, inp: Any) -> RangeSet | None:
        """The matching partitions of the version of the erased asset that ``row`` of
        ``d`` read. When that version is no longer readable (compacted, then vacuumed) but
        nothing newer was written into the partitions ``row`` maps from, it held the same
        rows as the version the state reads now."""
        from .partitions import RangeSet
        from .plan import map_down

        got = self.hits(self.key, inp.version)
        if got is not None:
            return got
        rows = self.state.get(self.key, [])
        newer = RangeSet([(u.start, u.end) for u in rows if u.seq > inp.seq])
        if rows and not (
            map_down(self.graph, self.key, d, newer) & RangeSet.of(row.start, row.end)
        ):
            return self.hits(self.key, max(rows, key=lambda u: u.seq).version)
        return None

    # -- planning -----------------------------------------------------------------------

    def plan(self) -> list[dict[str, Any]]:
        """Every downstream asset holding rows derived from matching rows, in topological
        order: ``{"asset", "method" (erase_by | recompute), "ranges", "columns"}``."""
        from .partitions import RangeSet
        from .plan import map_down, universe

        graph = self.graph
        if self.key not in graph.specs:
            return []
        handled: dict[str, dict[str, Any]] = {self.key: {"method": "delete", "columns": None}}
        affected: dict[str, RangeSet] = {}
        out = []
        for d in graph.descendants(self.key):
            spec = graph.specs[d]
            if spec.kind == "source":
                continue
            rows = self.state.get(d, [])
            materialized = RangeSet([(r.start, r.end) for r in rows])
            hit = RangeSet()
            sources = []
            for p in graph.parents[d]:
                if p == self.key:
                    for r in rows:
                        inp = next((i for i in r.inputs if i.asset == p), None)
                        if inp is None:
                            continue  # this range never read the asset
                        ph = self.consumed_hits(d, r, inp)
                        up = universe(graph.specs[p]) if ph is None else ph
                        part = (
                            map_down(graph, p, d, up) & RangeSet.of(r.start, r.end)
                            if up
                            else RangeSet()
                        )
                        if part:
                            hit = hit | part
                            sources.append(p)
                elif p in affected:
                    part = map_down(graph, p, d, affected[p]) & materialized
                    if part:
                        hit = hit | part
                        sources.append(p)
            if not hit:
                continue
            affected[d] = hit
            method, columns = self._method(d, sorted(set(sources)), handled)
            handled[d] = {"method": method, "columns": columns}
            out.append({"asset": d, "method": method, "ranges": hit, "columns": columns})
        return out

    def _method(
        self, d: str, sources: list[str], handled: Mapping[str, Mapping[str, Any]]
    ) -> tuple[str, Any]:
        """``erase_by`` when the asset declares it, reads the rows through ONE asset the
        predicate applies to, and the column lineage maps every predicate column to a
        declared column as ``identity``; else ``recompute`` (refused for write modes
        that cannot remove rows by recomputing)."""
        spec = self.graph.specs[d]
        if (
            spec.erase_by
            and len(sources) == 1
            and handled[sources[0]]["method"] in ("delete", "erase_by")
        ):
            parent = sources[0]
            parent_cols: Mapping[str, str] = handled[parent]["columns"] or {
                c: c for c in self._columns()
            }
            lineage = self.lake.lineage(d).columns
            mapping: dict[str, str] = {}
            for src, parent_col in parent_cols.items():
                hits = [
                    r["column"]
                    for r in lineage.iter_rows(named=True)
                    if r["source_asset"] == parent
                    and r["source_column"] == parent_col
                    and r["kind"] == "identity"
                    and r["column"] in spec.erase_by
                ]
                if not hits:
                    break
                mapping[src] = hits[0]
            else:
                return "erase_by", mapping
        if spec.write.kind == "append" or (
            spec.write.kind == "merge" and not spec.write.delete_missing
        ):
            raise DefinitionError(
                "holds rows derived from the rows being erased, but "
                f"write={spec.write} cannot remove rows by "
                "recomputing, and no identity column lineage to its erase_by columns was found",
                asset=d,
                hint="declare erase_by=[...] with the column(s) that carry the erased key "
                "unchanged, "
                "or wipe and recompute the asset",
            )
        return "recompute", None

    def _columns(self) -> list[str]:
        return list(dict.fromkeys(self.expr.meta.root_names()))


def erase(
    lake: Lakehouse,
    asset: str,
    where: Any,
    reason: str,
    *,
    who: str | None = None,
    dry_run: bool = False,
) -> pl.DataFrame:
    """See :meth:`lakehouse.Lakehouse.erase`."""
    from .catalog.maintenance import (
        compact_database,
        pins,
        record_erasure,
        remove_pin,
        scrub_samples,
        set_read_version,
    )
    from .storage import get_format, get_maintenance

    if not reason or not str(reason).strip():
        raise ConfigError(
            "erase() needs a reason (it is kept in the erasure record)",
            asset=asset,
            hint="e.g. reason='GDPR art. 17 request #1234'",
        )
    key = _resolve(lake, asset)
    expr, text = predicate_of(where, key)
    ref = table_ref(lake, key)
    fmt = get_format(ref.format)
    if not fmt.exists(ref):
        raise UnknownAssetError(
            "has no table to erase from", asset=key, hint="check the asset name"
        )
    cols = list(dict.fromkeys(expr.meta.root_names()))
    require_columns(
        fmt, ref, cols, "the predicate names column {!r}, which the table does not have"
    )
    job = _Erasure(lake, key, expr)
    steps = job.plan()  # validates every dependant before anything is deleted
    rows: list[dict[str, Any]] = []
    if dry_run:
        n = job.scan(key, None).filter(expr).collect().height
        rows.append(
            {
                "asset": key,
                "action": "would delete",
                "partitions": None,
                "rows_deleted": n,
                "version_before": (fmt.current(ref) or (None,))[0],
                "version_after": None,
                "files_removed": None,
                "bytes_removed": None,
            }
        )
        for s in steps:
            rows.append(
                {
                    "asset": s["asset"],
                    "action": f"would {s['method'].replace('_', ' ')}",
                    "partitions": _describe(lake, s["asset"], s["ranges"]),
                    "rows_deleted": None,
                    "version_before": None,
                    "version_after": None,
                    "files_removed": None,
                    "bytes_removed": None,
                }
            )
        for d in _downstream_tables(lake, key, {s["asset"] for s in steps}):
            rows.append(
                {
                    "asset": d,
                    "action": "would purge history",
                    "partitions": None,
                    "rows_deleted": None,
                    "version_before": None,
                    "version_after": None,
                    "files_removed": None,
                    "bytes_removed": None,
                }
            )
        return _frame(rows, ERASE_SCHEMA)

    props = {"maintenance": "erase"}
    report: dict[str, dict[str, Any]] = {}
    # 1. the asset itself
    maint = get_maintenance(ref.format)
    res = maint.delete_where(ref, _matcher(expr), props)
    report[key] = {
        "asset": key,
        "action": "deleted",
        "rows_deleted": res.rows,
        "version_before": res.version_before,
        "version_after": res.version_after,
    }
    if res.version_after:
        _move_read_version(lake, key, ref, res.version_before, res.version_after)
    # 2. dependants that take the predicate directly (identity columns)
    for s in steps:
        if s["method"] != "erase_by":
            continue
        dref = table_ref(lake, s["asset"])
        dres = get_maintenance(dref.format).delete_where(dref, _matcher(expr, s["columns"]), props)
        report[s["asset"]] = {
            "asset": s["asset"],
            "action": "erase_by",
            "rows_deleted": dres.rows,
            "partitions": _describe(lake, s["asset"], s["ranges"]),
            "version_before": dres.version_before,
            "version_after": dres.version_after,
        }
        if dres.version_after:
            _move_read_version(lake, s["asset"], dref, dres.version_before, dres.version_after)
    # 3. dependants recomputed from the erased data (one run, topological order)
    recompute = [s for s in steps if s["method"] == "recompute"]
    failures: dict[str, str] = {}
    run_id = None
    if recompute:
        result = _recompute(lake, key, recompute)
        run_id = result.run_id
        failures = dict(result.failures)
        for s in recompute:
            done = [
                r for r in result.rows if r["asset"] == s["asset"] and r["status"] == "materialized"
            ]
            report[s["asset"]] = {
                "asset": s["asset"],
                "action": "recomputed",
                "rows_deleted": None,
                "partitions": _describe(lake, s["asset"], s["ranges"]),
                "version_before": None,
                "version_after": done[-1]["version"] if done else None,
            }
    status = "incomplete" if failures else "complete"
    released: list[dict[str, str]] = []
    if not failures:
        # 4. old versions that may still hold the rows: every version of the erased asset
        # and of everything downstream of it, except versions shown to hold no matching row
        # (pinned versions of Iceberg tables the predicate applies to)
        purge_keys = (
            [key]
            + [s["asset"] for s in steps]
            + _downstream_tables(lake, key, {s["asset"] for s in steps})
        )
        direct = {s["asset"]: s["columns"] for s in steps if s["method"] == "erase_by"}
        for k in dict.fromkeys(purge_keys):
            pref = table_ref(lake, k)
            pfmt = get_format(pref.format)
            if not pfmt.exists(pref):
                continue
            pinned = {str(p["version"]) for p in pins(lake.catalog, k)}
            keep: set[str] = set()
            if pref.format == "iceberg" and (k == key or k in direct):
                for v in pinned:
                    h = job.hits(k, v, direct.get(k))
                    if h is not None and not h:
                        keep.add(v)  # shown to hold no matching row
            before = (pfmt.current(pref) or (None,))[0]
            token = _state_token(lake, k, pref, before)
            pres = get_maintenance(pref.format).purge(pref, keep=keep, properties=props)
            after = (pfmt.current(pref) or (None,))[0]
            if token is not None and after is not None:
                set_read_version(lake.catalog, k, after, expected=token)
            entry = report.setdefault(
                k,
                {
                    "asset": k,
                    "action": "purged",
                    "rows_deleted": None,
                    "version_before": before,
                    "version_after": None,
                },
            )
            entry["files_removed"] = pres.files_removed
            entry["bytes_removed"] = pres.bytes_removed
            for v in sorted(pinned - keep):
                remove_pin(lake.catalog, k, v)
                released.append({"asset": k, "version": v})
        scrub_samples(lake.catalog, list(report))
    detail = {
        "status": status,
        "asset": key,
        "columns": cols,
        "run_id": run_id,
        "assets": [{k: v for k, v in r.items()} for r in report.values()],
        "pins_released": released,
        "failures": sorted(failures),
    }
    record_erasure(
        lake.catalog,
        who=who or _user(),
        predicate_hash=hashlib.sha256(text.encode()).hexdigest(),
        reason=str(reason),
        detail=detail,
    )
    compact_database(lake.catalog)
    if failures:
        lines = "\n".join(f"  - {a}: {e}" for a, e in failures.items())
        raise MaterializeError(
            f"erasure incomplete: the rows were deleted from {key!r}, but recomputing its "
            f"dependants failed:\n{lines}\nold versions were NOT purged; fix the failure and "
            "run the same erase() again",
            failures=failures,
        )
    for r in report.values():
        rows.append(
            {
                "asset": r["asset"],
                "action": r["action"],
                "partitions": r.get("partitions"),
                "rows_deleted": r.get("rows_deleted"),
                "version_before": r.get("version_before"),
                "version_after": r.get("version_after"),
                "files_removed": r.get("files_removed"),
                "bytes_removed": r.get("bytes_removed"),
            }
        )
    return _frame(rows, ERASE_SCHEMA)


def _state_token(lake: Lakehouse, key: str, ref: TableRef, current: str | None) -> str | None:
    """The newest version ``key``'s partition state reads, when the table's ``current``
    version holds the same rows (so the state may be pointed at ``current``'s successor)."""
    rows = lake.catalog.state([key]).get(key) or []
    if not rows or current is None:
        return None
    newest = max(rows, key=lambda r: r.seq).version
    return newest if _in_sync(lake, ref, newest, current) else None


def _downstream_tables(lake: Lakehouse, key: str, exclude: Iterable[str]) -> list[str]:
    graph = lake.graph
    if key not in graph.specs:
        return []
    skip = set(exclude)
    return [
        d
        for d in graph.descendants(key)
        if d not in skip and graph.specs[d].kind != "source" and lake.catalog.state([d]).get(d)
    ]


def _recompute(lake: Lakehouse, cause: str, steps: list[dict[str, Any]]) -> Any:
    from .api import _new_run_id
    from .execution.coordinator import run_plan
    from .plan import Plan, PlanItem

    graph = lake.graph
    plan = Plan([PlanItem(s["asset"], s["ranges"], "erased", cause) for s in steps], graph.specs)
    state = lake.catalog.state()
    cvs = lake.code_versions()
    return run_plan(
        lake, plan, state, cvs, _new_run_id(), [s["asset"] for s in steps], progress=False
    )


def _describe(lake: Lakehouse, key: str, rs: RangeSet) -> str | None:
    spec = lake.graph.specs.get(key)
    if spec is None or spec.partitions is None:
        return None
    return spec.partitions.format_ranges(rs, max_ranges=8)


def _indices(spec: AssetSpec, values: Any) -> RangeSet | None:
    """The partitions holding the partition-column ``values`` (a DataFrame); ``None``
    when they cannot be mapped (then every partition counts)."""
    from .partitions import RangeSet, StaticPartitions, TimeWindowPartitions

    defn = spec.partitions
    cols = list(spec.partition_column)
    out = []
    try:
        for row in values.iter_rows():
            value = row[0]
            if value is None or len(cols) != 1:
                return None
            if isinstance(defn, TimeWindowPartitions):
                if isinstance(value, str):
                    value = (
                        _dt.date.fromisoformat(value[:10])
                        if len(value) <= 10
                        else _dt.datetime.fromisoformat(value)
                    )
                if isinstance(value, _dt.date) and not isinstance(value, _dt.datetime):
                    value = _dt.datetime(value.year, value.month, value.day)
                out.append(defn.index_of_time(value))
            elif isinstance(defn, StaticPartitions):
                out.append(defn.index(str(value)))
            else:
                return None
    except (LakehouseError, ValueError, TypeError):
        return None
    return RangeSet.from_indices(out)


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


def erasures_frame(lake: Lakehouse) -> pl.DataFrame:
    """See :meth:`lakehouse.Lakehouse.erasures`."""
    import json

    import polars as pl

    from .catalog.maintenance import erasures

    rows = []
    for e in erasures(lake.catalog):
        d = e["detail"]
        assets = d.get("assets") or []
        rows.append(
            {
                "id": e["id"],
                "erased_at": _dt.datetime.fromtimestamp(e["erased_at"], tz=_dt.timezone.utc),
                "who": e["who"],
                "reason": e["reason"],
                "predicate_hash": e["predicate_hash"],
                "status": d.get("status"),
                "assets": [a["asset"] for a in assets],
                "files_removed": sum(int(a.get("files_removed") or 0) for a in assets),
                "bytes_removed": sum(int(a.get("bytes_removed") or 0) for a in assets),
                "detail": json.dumps(d, default=str),
            }
        )
    schema = {
        **ERASURES_SCHEMA,
        "erased_at": pl.Datetime("us", "UTC"),
        "assets": pl.List(pl.String),
    }
    return _frame(rows, schema)
