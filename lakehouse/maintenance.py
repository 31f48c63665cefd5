"""Table maintenance and lifecycle (layer 5); erasure is in :mod:`lakehouse.erasure`.

Backs :meth:`Lakehouse.optimize`, :meth:`~Lakehouse.vacuum`, :meth:`~Lakehouse.pin`,
:meth:`~Lakehouse.drop`, :meth:`~Lakehouse.wipe`, the ``orphaned`` rows of
:meth:`~Lakehouse.status` and the adoption of renamed assets (``previous_names=``).

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
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .errors import (
    ConfigError,
    DefinitionError,
    UnknownAssetError,
)

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl

    from .api import Lakehouse
    from .assets import AssetSpec, TableRef
    from .catalog import StateRow

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


def require_columns(fmt: Any, ref: TableRef, columns: Sequence[str], message: str) -> None:
    """Raise a :class:`ConfigError` naming the first of ``columns`` that the table of
    ``ref`` lacks (``message`` formats it), with the table's columns as the hint."""
    schema = fmt.schema(ref)
    if schema is None:
        return
    missing = [c for c in columns if schema.get_field_index(c) < 0]
    if missing:
        raise ConfigError(
            message.format(missing[0]),
            asset=ref.asset,
            hint=f"its columns: {', '.join(schema.names)}",
        )


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
            require_columns(fmt, ref, cols, "zorder column {!r} is not in the table")
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
