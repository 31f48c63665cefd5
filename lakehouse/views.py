"""DataFrame and HTML views over the catalog: status, history, provenance (layer 5)."""

from __future__ import annotations

import datetime as _dt
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl

    from .api import Lakehouse
    from .catalog import StateRow


def _ts(value: float | None) -> _dt.datetime | None:
    if value is None:
        return None
    return _dt.datetime.fromtimestamp(value, tz=_dt.timezone.utc)


def current_staleness(
    lake: Lakehouse,
) -> tuple[dict[str, list[Any]], dict[str, list[StateRow]], dict[str, str]]:
    from .plan import staleness

    lake._recover()
    state = lake.catalog.state()
    cvs = lake.code_versions()
    stale = staleness(lake.graph, state, cvs, extra=lake._extra_reasons(state))
    return stale, state, cvs


STATUS_SCHEMA = {
    "asset": "String",
    "stale": "Boolean",
    "reason": "String",
    "cause": "String",
    "version": "String",
    "rows": "Int64",
    "materialized_at": "Datetime",
    "code_version": "String",
    "partitions": "String",
    "age": "Duration",
    "deadline": "Datetime",
}


def asset_status(lake: Lakehouse, name: str | None = None, *, expand: bool = False) -> pl.DataFrame:
    """See :meth:`lakehouse.Lakehouse.status`."""
    import polars as pl

    stale, state, cvs = current_staleness(lake)
    graph = lake.graph
    if name is not None:
        key = graph.key_of(name)
        if graph.specs[key].kind == "source":
            from .execution.sources import source_status

            return source_status(lake, key)
        return _ranges_status(lake, key, stale[key], state.get(key, []), expand)
    rows = []
    for key, spec in graph.specs.items():
        entries = stale.get(key, [])
        st = state.get(key, [])
        newest = max(st, key=lambda r: r.seq) if st else None
        first = entries[0] if entries else None
        parts = None
        if spec.partitions is not None:
            done = sum(r.end - r.start for r in st)
            total = len(spec.partitions.all(None))
            n_stale = sum(len(e[0]) for e in entries)
            parts = f"{done}/{total} materialized, {n_stale} stale"
        rows.append(
            {
                "asset": key,
                "stale": bool(entries),
                "reason": first[1] if first else None,
                "cause": first[2] if first else None,
                "version": newest.version if newest else None,
                "rows": sum(r.rows or 0 for r in st) if st else None,
                "materialized_at": _ts(max(r.materialized_at for r in st)) if st else None,
                "code_version": newest.code_version if newest else cvs.get(key),
                "partitions": parts,
            }
        )
    from .execution.sources import status_rows
    from .maintenance import orphan_rows

    rows.extend(
        orphan_rows(lake, state)
    )  # tables whose asset left the code: stale=None, reason "orphaned"
    status_rows(lake, rows, state)  # sources (observed version, expired) and age / deadline of all
    schema = {k: getattr(pl, v) for k, v in STATUS_SCHEMA.items()}
    schema["materialized_at"] = pl.Datetime("us", "UTC")
    schema["deadline"] = pl.Datetime("us", "UTC")
    schema["age"] = pl.Duration("us")
    return pl.DataFrame(rows, schema=schema)


def _ranges_status(
    lake: Lakehouse, key: str, entries: list[Any], st: list[StateRow], expand: bool
) -> pl.DataFrame:
    import polars as pl

    from .partitions import RangeSet

    spec = lake.graph.specs[key]
    defn = spec.partitions
    pieces: list[tuple[int, int, bool, str | None, str | None, str | None]] = []
    stale_all = RangeSet()
    for rs, reason, cause in entries:
        stale_all = stale_all | rs
        covered = RangeSet()
        for r in st:
            part = rs & RangeSet.of(r.start, r.end)
            covered = covered | part
            for a, b in part.ranges:
                pieces.append((a, b, True, reason, cause, r.version))
        for a, b in (rs - covered).ranges:
            pieces.append((a, b, True, reason, cause, None))
    for r in st:
        for a, b in (RangeSet.of(r.start, r.end) - stale_all).ranges:
            pieces.append((a, b, False, None, None, r.version))
    pieces.sort()
    rows = []
    for a, b, is_stale, reason, cause, version in pieces:
        if expand and defn is not None:
            for i in range(a, b):
                rows.append(
                    {
                        "asset": key,
                        "partitions": defn.key(i),
                        "count": 1,
                        "stale": is_stale,
                        "reason": reason,
                        "cause": cause,
                        "version": version,
                    }
                )
        else:
            text = defn.format_ranges(RangeSet.of(a, b)) if defn is not None else None
            rows.append(
                {
                    "asset": key,
                    "partitions": text,
                    "count": b - a,
                    "stale": is_stale,
                    "reason": reason,
                    "cause": cause,
                    "version": version,
                }
            )
    schema = {
        "asset": pl.String,
        "partitions": pl.String,
        "count": pl.Int64,
        "stale": pl.Boolean,
        "reason": pl.String,
        "cause": pl.String,
        "version": pl.String,
    }
    return pl.DataFrame(rows, schema=schema)


HISTORY_SCHEMA = (
    "version",
    "partitions",
    "run_id",
    "code_version",
    "rows",
    "seconds",
    "outcome",
    "error",
    "materialized_at",
)


def history_frame(lake: Lakehouse, key: str) -> pl.DataFrame:
    """See :meth:`lakehouse.Lakehouse.history`."""
    import polars as pl

    rows = [
        {
            "version": m["version"],
            "partitions": m["partitions"],
            "run_id": m["run_id"],
            "code_version": m["code_version"],
            "rows": m["rows"],
            "seconds": m["seconds"],
            "outcome": m["status"],
            "error": m["error"],
            "materialized_at": _ts((m["started_at"] or 0) + (m["seconds"] or 0)),
        }
        for m in lake.catalog.materializations(key)
    ]
    schema = {
        "version": pl.String,
        "partitions": pl.String,
        "run_id": pl.String,
        "code_version": pl.String,
        "rows": pl.Int64,
        "seconds": pl.Float64,
        "outcome": pl.String,
        "error": pl.String,
        "materialized_at": pl.Datetime("us", "UTC"),
    }
    return pl.DataFrame(rows, schema=schema)


def provenance_frame(
    lake: Lakehouse, key: str, version: str | None, depth: int | None
) -> pl.DataFrame:
    """See :meth:`lakehouse.Lakehouse.provenance` (implemented in :mod:`lakehouse.lineage`)."""
    from .lineage import provenance_frame as frame

    return frame(lake, key, version, depth)


def lakehouse_html(lake: Lakehouse) -> str:
    """The notebook view of a :class:`~lakehouse.Lakehouse` (see :mod:`lakehouse.notebook`)."""
    from .notebook import lakehouse_html as render

    return render(lake)
