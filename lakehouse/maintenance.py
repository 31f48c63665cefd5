"""Table maintenance, lifecycle and erasure that follows lineage (layer 5).

Backs :meth:`Lakehouse.optimize`, :meth:`~Lakehouse.vacuum`, :meth:`~Lakehouse.pin`,
:meth:`~Lakehouse.drop`, :meth:`~Lakehouse.wipe`, :meth:`~Lakehouse.erase` and
:meth:`~Lakehouse.erasures`, the ``orphaned`` rows of :meth:`~Lakehouse.status` and the
adoption of renamed assets (``previous_names=``).

Nothing here runs during a normal ``materialize()``: the only hook on that path is the
rename adoption, which costs nothing unless an asset declares ``previous_names``.

**Compaction is not a new data version.** The partition state keeps its sequence
numbers (what staleness compares), and only its read ``version`` moves to the compacted
table version, which holds the same rows; so nothing becomes stale and readers never
need the pre-compaction files that ``vacuum`` may remove. The same holds for the
versions an erasure or a purge makes.
"""

from __future__ import annotations

import datetime as _dt
import getpass
import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .errors import (
    ConfigError,
    DefinitionError,
    LakehouseError,
    MaterializeError,
    UnknownAssetError,
)

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl

    from .api import Lakehouse
    from .assets import AssetSpec, TableRef
    from .catalog import StateRow
    from .partitions import RangeSet

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(value: str | float | int | _dt.timedelta, what: str = "retain") -> float:
    """Seconds in ``"7d"``, ``"12h"``, ``"30m"``, ``"0s"``, ``"2w"``, a number or a timedelta.

    >>> parse_duration("7d"), parse_duration("90m"), parse_duration(0)
    (604800.0, 5400.0, 0.0)
    """
    if isinstance(value, _dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value < 0:
            raise ConfigError(f"{what}={value!r} is negative", hint="use e.g. '7d' or 0")
        return float(value)
    text = str(value).strip().lower()
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhdw])", text)
    if not m:
        raise ConfigError(
            f"{what}={value!r} is not a duration", hint="use e.g. '7d', '12h', '30m' or seconds"
        )
    return float(m.group(1)) * _UNITS[m.group(2)]


# --------------------------------------------------------------------------- tables


def _namespace(key: str) -> str | None:
    return key.rsplit("/", 1)[0] if "/" in key else None


def table_ref(lake: Lakehouse, key: str) -> TableRef:
    """Where the table of ``key`` is: from its definition, or from the catalog's records
    for an asset that is no longer defined (orphaned)."""
    from .assets import TableRef
    from .storage.uri import delta_options

    if key in lake.graph.specs:
        return lake.table_ref(lake.graph.specs[key])
    info = _recorded(lake).get(key)
    if info is None:
        raise UnknownAssetError(
            "is neither defined nor recorded in the catalog",
            asset=key,
            hint="check the name; lake.status() lists every asset, orphaned ones included",
        )
    fmt = info.get("format") or lake.settings.format
    uri = info.get("table_uri") or f"{lake.settings.warehouse_uri}/{key}"
    return TableRef(
        asset=key,
        format=fmt,
        uri=uri,
        storage_options=delta_options(lake.settings.warehouse_uri, lake.settings.storage_options),
        catalog=lake._iceberg_props() if fmt == "iceberg" else {},
        namespace=_namespace(key),
    )


def orphan_ref(lake: Lakehouse, name: str, version: str | int | None = None) -> TableRef:
    """The table of an asset that is no longer defined but recorded in the catalog
    (``lake.read()`` of an orphaned asset); raises ``UnknownAssetError`` otherwise."""
    key = _resolve(lake, name)
    return replace(table_ref(lake, key), version=None if version is None else str(version))


def _recorded(lake: Lakehouse) -> dict[str, dict[str, Any]]:
    from .catalog.maintenance import recorded_assets

    return recorded_assets(lake.catalog)


def _resolve(lake: Lakehouse, name: str) -> str:
    from .lineage import recorded_key

    return recorded_key(lake, name)


def orphaned(lake: Lakehouse, state: Mapping[str, Sequence[StateRow]] | None = None) -> list[str]:
    """Assets with a table and history in the catalog but no definition any more."""
    graph = lake.graph
    if state is None:
        state = lake.catalog.state()
    renamed = {_full(spec, old) for spec in graph.specs.values() for old in spec.previous_names}
    renamed |= {old for spec in graph.specs.values() for old in spec.previous_names}
    return sorted(
        k for k, rows in state.items() if rows and k not in graph.specs and k not in renamed
    )


def orphan_rows(lake: Lakehouse, state: Mapping[str, Sequence[StateRow]]) -> list[dict[str, Any]]:
    """``status()`` rows of orphaned assets: ``stale`` is null (nothing will recompute
    them), ``reason`` is ``orphaned``."""
    out = []
    for key in orphaned(lake, state):
        rows = state[key]
        newest = max(rows, key=lambda r: r.seq)
        out.append(
            {
                "asset": key,
                "stale": None,
                "reason": "orphaned",
                "cause": None,
                "version": newest.version,
                "rows": sum(r.rows or 0 for r in rows),
                "materialized_at": _dt.datetime.fromtimestamp(
                    max(r.materialized_at for r in rows), tz=_dt.timezone.utc
                ),
                "code_version": newest.code_version,
                "partitions": None,
            }
        )
    return out


def _selected(lake: Lakehouse, select: str | Sequence[str] | None) -> list[str]:
    """Asset keys with (possibly) a table: the selection, or every asset and orphan."""
    graph = lake.graph
    if select is None:
        keys = [k for k in graph.order if graph.specs[k].kind != "source"]
        return keys + orphaned(lake)
    names = [select] if isinstance(select, str) else list(select)
    out: list[str] = []
    defined = [n for n in names if _defined(lake, n)]
    if defined:
        out.extend(k for k in graph.select(defined) if graph.specs[k].kind != "source")
    for n in names:
        if n not in defined:
            out.append(_resolve(lake, n))
    return list(dict.fromkeys(out))


def _defined(lake: Lakehouse, name: str) -> bool:
    try:
        lake.graph.select([name])
        return True
    except UnknownAssetError:
        return False


def _in_sync(lake: Lakehouse, ref: TableRef, state_version: str | None, base: str | None) -> bool:
    """Whether every commit after ``state_version`` up to ``base`` changed no data
    (compaction, vacuum), so the catalog's state still describes version ``base``."""
    if state_version is None or base is None:
        return False
    if str(state_version) == str(base):
        return True
    from .storage import get_maintenance

    return get_maintenance(ref.format).unchanged(ref, str(state_version), str(base))


def _move_read_version(
    lake: Lakehouse, key: str, ref: TableRef, base: str | None, new: str | None
) -> bool:
    """Point ``key``'s partition state at ``new`` (same rows as ``base``)."""
    from .catalog.maintenance import set_read_version

    if new is None:
        return False
    rows = lake.catalog.state([key]).get(key) or []
    if not rows:
        return False
    current = max(rows, key=lambda r: r.seq).version
    if not _in_sync(lake, ref, current, base):
        return False
    return set_read_version(lake.catalog, key, new, expected=current)


def _frame(rows: list[dict[str, Any]], schema: Mapping[str, Any]) -> pl.DataFrame:
    import polars as pl

    return pl.DataFrame(
        rows, schema={k: (getattr(pl, v) if isinstance(v, str) else v) for k, v in schema.items()}
    )


# --------------------------------------------------------------------------- optimize

OPTIMIZE_SCHEMA = {
    "asset": "String",
    "format": "String",
    "files_before": "Int64",
    "files_after": "Int64",
    "version_before": "String",
    "version_after": "String",
    "action": "String",
    "detail": "String",
}


def optimize(
    lake: Lakehouse,
    select: str | Sequence[str] | None = None,
    *,
    zorder: str | Sequence[str] | None = None,
    partitions: Any = None,
    relayout: bool = True,
    dry_run: bool = False,
) -> pl.DataFrame:
    """See :meth:`lakehouse.Lakehouse.optimize`."""
    from .storage import get_format, get_maintenance

    cols = [zorder] if isinstance(zorder, str) else (list(zorder) if zorder else None)
    rows = []
    for key in _selected(lake, select):
        ref = table_ref(lake, key)
        row: dict[str, Any] = {
            "asset": key,
            "format": ref.format,
            "files_before": None,
            "files_after": None,
            "version_before": None,
            "version_after": None,
            "action": "skipped",
            "detail": None,
        }
        fmt = get_format(ref.format)
        if not fmt.exists(ref):
            rows.append({**row, "detail": "no table yet"})
            continue
        if cols:
            schema = fmt.schema(ref)
            missing = [c for c in cols if schema is not None and schema.get_field_index(c) < 0]
            if missing:
                raise ConfigError(
                    f"zorder column {missing[0]!r} is not in the table",
                    asset=key,
                    hint=f"choose among its columns: {', '.join(schema.names) if schema else '-'}",
                )
        where = _partition_where(lake, key, partitions)
        res = get_maintenance(ref.format).compact(
            ref,
            where=where,
            zorder=cols,
            dry_run=dry_run,
            properties={"maintenance": "optimize"},
            coarsen=relayout and (ref.format != "delta" or _time_partitioned(lake, key)),
        )
        if dry_run:
            action = "would compact" if res.files_after < res.files_before else "nothing to do"
        else:
            action = "compacted" if res.version_after else "nothing to do"
            if res.version_after:
                _move_read_version(lake, key, ref, res.version_before, res.version_after)
        rows.append(
            {
                **row,
                "files_before": res.files_before,
                "files_after": res.files_after,
                "version_before": res.version_before,
                "version_after": res.version_after,
                "action": action,
                "detail": res.detail if res.detail != "nothing to compact" else None,
            }
        )
    return _frame(rows, OPTIMIZE_SCHEMA)


def _time_partitioned(lake: Lakehouse, key: str) -> bool:
    """Whether ``key`` is a defined asset with time-window partitions in one column: the
    only case where a Delta table may lose its Hive partitioning to ``optimize()``
    (later partition writes become predicate overwrites on that column)."""
    from .partitions import TimeWindowPartitions

    spec = lake.graph.specs.get(key)
    return (
        spec is not None
        and isinstance(spec.partitions, TimeWindowPartitions)
        and len(spec.partition_column) == 1
    )


def _partition_where(lake: Lakehouse, key: str, partitions: Any) -> Any:
    if partitions is None or key not in lake.graph.specs:
        return None
    spec = lake.graph.specs[key]
    if spec.partitions is None:
        return None
    from .api import _parse_partitions, _utcnow
    from .partitions import predicate

    rs = _parse_partitions(spec, partitions, _utcnow())
    return predicate(spec.partitions, rs, spec.partition_column)


# ---------------------------------------------------------------------------- vacuum

VACUUM_SCHEMA = {
    "asset": "String",
    "format": "String",
    "files_removed": "Int64",
    "bytes_removed": "Int64",
    "kept_versions": "Int64",
    "action": "String",
    "detail": "String",
}


def needed_versions(lake: Lakehouse, key: str, ref: TableRef) -> set[str]:
    """Versions the catalog needs readable: the current one, those the partition state
    reads, and the pinned ones."""
    from .catalog.maintenance import pins, referenced_versions
    from .storage import get_format

    keep = referenced_versions(lake.catalog, key) | {
        str(p["version"]) for p in pins(lake.catalog, key)
    }
    cur = get_format(ref.format).current(ref)
    if cur is not None:
        keep.add(str(cur[0]))
    return keep


def vacuum(
    lake: Lakehouse,
    select: str | Sequence[str] | None = None,
    retain: Any = "7d",
    dry_run: bool = False,
) -> pl.DataFrame:
    """See :meth:`lakehouse.Lakehouse.vacuum`."""
    from .storage import get_format, get_maintenance

    seconds = parse_duration(retain)
    older_than = lake.clock() - seconds
    rows = []
    for key in _selected(lake, select):
        ref = table_ref(lake, key)
        row = {
            "asset": key,
            "format": ref.format,
            "files_removed": 0,
            "bytes_removed": 0,
            "kept_versions": 0,
            "action": "skipped",
            "detail": None,
        }
        if not get_format(ref.format).exists(ref):
            rows.append({**row, "detail": "no table yet"})
            continue
        keep = needed_versions(lake, key, ref)
        res = get_maintenance(ref.format).vacuum(
            ref, keep=keep, older_than=older_than, dry_run=dry_run
        )
        if dry_run:
            action = "would remove" if res.files_removed else "nothing to do"
        else:
            action = "removed" if res.files_removed else "nothing to do"
        rows.append(
            {
                **row,
                "files_removed": res.files_removed,
                "bytes_removed": res.bytes_removed,
                "kept_versions": len(keep),
                "action": action,
                "detail": res.detail,
            }
        )
    return _frame(rows, VACUUM_SCHEMA)


# ------------------------------------------------------------------------------ pins

PINS_SCHEMA = {"asset": "String", "version": "String", "reason": "String", "pinned_at": "Datetime"}


def pin(
    lake: Lakehouse, name: str, version: str | int | None = None, reason: str | None = None
) -> str:
    """See :meth:`lakehouse.Lakehouse.pin`."""
    from .catalog.maintenance import add_pin
    from .storage import get_format, get_maintenance

    key = _resolve(lake, name)
    ref = table_ref(lake, key)
    if version is None:
        cur = get_format(ref.format).current(ref)
        if cur is None:
            raise UnknownAssetError(
                "has no table yet, so there is no version to pin",
                asset=key,
                hint=f"run lake.materialize({key!r}) first",
            )
        version = cur[0]
    known = [v for v, _ in get_maintenance(ref.format).versions(ref)]
    if str(version) not in known:
        recent = ", ".join(known[-5:]) or "none"
        raise UnknownAssetError(
            f"has no readable version {version!r} to pin (recent: {recent})",
            asset=key,
            hint="see lake.history(name) for the versions",
        )
    add_pin(lake.catalog, key, str(version), reason)
    return str(version)


def unpin(lake: Lakehouse, name: str, version: str | int | None = None) -> int:
    from .catalog.maintenance import remove_pin

    return remove_pin(lake.catalog, _resolve(lake, name), None if version is None else str(version))


def pins_frame(lake: Lakehouse, name: str | None = None) -> pl.DataFrame:
    import polars as pl

    from .catalog.maintenance import pins

    rows = [
        {
            "asset": p["asset"],
            "version": p["version"],
            "reason": p["reason"],
            "pinned_at": _dt.datetime.fromtimestamp(p["pinned_at"], tz=_dt.timezone.utc),
        }
        for p in pins(lake.catalog, None if name is None else _resolve(lake, name))
    ]
    schema = {**PINS_SCHEMA, "pinned_at": pl.Datetime("us", "UTC")}
    return _frame(rows, schema)


# ------------------------------------------------------------------------- lifecycle


def drop(lake: Lakehouse, name: str, *, dry_run: bool = False) -> dict[str, Any]:
    """See :meth:`lakehouse.Lakehouse.drop`."""
    from .catalog.maintenance import forget_asset
    from .storage import get_format, get_maintenance

    key = _resolve(lake, name)
    graph = lake.graph
    if key in graph.specs:
        live = [c for c in graph.children[key] if graph.specs[c].kind != "source"]
        if live:
            raise DefinitionError(
                f"cannot drop it: {len(live)} defined asset(s) read it ({', '.join(live)})",
                asset=key,
                hint="remove those assets (or their dependency on it) from the code first",
            )
    ref = table_ref(lake, key)
    exists = get_format(ref.format).exists(ref)
    out: dict[str, Any] = {
        "asset": key,
        "format": ref.format,
        "uri": ref.uri,
        "table": exists,
        "files_removed": 0,
        "bytes_removed": 0,
        "records": {},
        "dry_run": dry_run,
    }
    if dry_run:
        if exists:
            files = get_maintenance(ref.format).live_files(ref)
            out["files_removed"] = len(files)
            out["bytes_removed"] = sum(f["size"] for f in files)
        out["records"] = {"lh_materializations": len(lake.catalog.materializations(key))}
        return out
    if exists:
        res = get_maintenance(ref.format).drop(ref)
        out["files_removed"], out["bytes_removed"] = res.files_removed, res.bytes_removed
    out["records"] = forget_asset(lake.catalog, key)
    return out


def wipe(
    lake: Lakehouse, name: str, partitions: Any = None, *, dry_run: bool = False
) -> dict[str, Any]:
    """See :meth:`lakehouse.Lakehouse.wipe`."""
    import pyarrow as pa

    from .partitions import RangeSet, predicate
    from .storage import get_format, get_maintenance

    spec = lake._spec(name)
    key = spec.key
    ref = table_ref(lake, key)
    if spec.partitions is None:
        if partitions not in (None, "all"):
            raise ConfigError(
                f"partitions={partitions!r} given, but the asset is not partitioned",
                asset=key,
                hint="call lake.wipe(name) without partitions to wipe the whole table",
            )
        rs = RangeSet.of(0, 1)
        where = None
    else:
        if partitions is None:
            raise ConfigError(
                "wipe() of a partitioned asset needs partitions=",
                asset=key,
                hint="e.g. partitions='2024-01-01..2024-01-31', or partitions='all'",
            )
        from .api import _parse_partitions, _utcnow

        rs = _parse_partitions(spec, partitions, _utcnow())
        where = predicate(spec.partitions, rs, spec.partition_column)
    text = spec.partitions.format_ranges(rs) if spec.partitions is not None else None
    out: dict[str, Any] = {
        "asset": key,
        "partitions": text,
        "count": len(rs) if spec.partitions else None,
        "rows": 0,
        "version": None,
        "dry_run": dry_run,
    }
    if dry_run or not get_format(ref.format).exists(ref):
        return out
    maint = get_maintenance(ref.format)
    props = {
        "maintenance": "wipe",
        "partitions": str([list(r) for r in rs.ranges]),
        "partitions_text": text or "",
    }
    if where is None:
        res = maint.delete_where(ref, lambda t: pa.array([True] * t.num_rows, pa.bool_()), props)
    else:
        res = maint.delete_partitions(ref, where, props)
    for start, end in rs.ranges:
        lake.catalog.delete_state(key, start, end)
    out["rows"], out["version"] = res.rows, res.version_after
    return out


def _full(spec: AssetSpec, old: str) -> str:
    """The key a previous name refers to: as written when it has a namespace, else in
    the asset's own namespace."""
    return old if "/" in old or not spec.namespace else f"{spec.namespace}/{old}"


def adopt_renamed(lake: Lakehouse) -> list[tuple[str, str]]:
    """Give each asset declared with ``previous_names=`` the table and history of its
    old name, if it has none of its own yet (no recomputation). Returns ``(old, new)``."""
    graph = lake.graph
    specs = [s for s in graph.specs.values() if s.previous_names]
    if not specs:
        return []
    from .catalog.maintenance import rename_asset
    from .storage import get_format, get_maintenance

    candidates = {
        s.key: [c for old in s.previous_names for c in dict.fromkeys((_full(s, old), old))]
        for s in specs
    }
    names = set(candidates) | {c for cs in candidates.values() for c in cs}
    state = lake.catalog.state(sorted(names))
    done = []
    cvs: dict[str, str] | None = None
    for spec in specs:
        if state.get(spec.key):
            continue
        for old in candidates[spec.key]:
            if old == spec.key or not state.get(old):
                continue
            if old in graph.specs:
                raise DefinitionError(
                    f"previous_names names {old!r}, which is still defined",
                    asset=spec.key,
                    hint=f"remove the definition of {old!r}, or drop it from previous_names",
                )
            old_ref = table_ref(lake, old)
            new_ref = lake.table_ref(spec)
            if old_ref.format != new_ref.format:
                raise DefinitionError(
                    f"cannot adopt {old!r}: its table is {old_ref.format}, "
                    f"the asset is now {new_ref.format}",
                    asset=spec.key,
                    hint="keep the format while renaming, then change it (a full recompute)",
                )
            fmt = get_format(old_ref.format)
            if fmt.exists(old_ref) and not fmt.exists(new_ref):
                get_maintenance(old_ref.format).rename(old_ref, new_ref)
            if cvs is None:
                cvs = lake.code_versions()
            rename_asset(
                lake.catalog, old, spec.key, table_uri=new_ref.uri, code_version=cvs.get(spec.key)
            )
            done.append((old, spec.key))
            break
    return done


# --------------------------------------------------------------------------- erasure

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
    schema = fmt.schema(ref)
    cols = list(dict.fromkeys(expr.meta.root_names()))
    missing = [c for c in cols if schema is not None and schema.get_field_index(c) < 0]
    if missing:
        raise ConfigError(
            f"the predicate names column {missing[0]!r}, which the table does not have",
            asset=key,
            hint=f"its columns: {', '.join(schema.names) if schema is not None else '-'}",
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
