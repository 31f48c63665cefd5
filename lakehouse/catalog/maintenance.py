"""Catalog records of table maintenance and lifecycle (layer 2).

Pins (``lh_pins``), erasure records (``lh_erasures``), and the edits that maintenance
makes to the partition state and history: a compaction moves the read version of an
asset without changing its sequence numbers; a drop forgets an asset; a rename moves its
history (and every reference to it in other assets' inputs) to the new name.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa

from .sql import (
    SqlCatalog,
    checks_table,
    code_versions_table,
    erasures_table,
    leases_table,
    materializations_table,
    observations_table,
    pins_table,
    state_table,
)

#: Tables with an ``asset`` column: what a drop deletes and a rename moves.
_ASSET_TABLES = (
    materializations_table,
    state_table,
    checks_table,
    code_versions_table,
    pins_table,
    observations_table,
    leases_table,
)


def _tx(catalog: SqlCatalog, fn: Any) -> Any:
    tx = getattr(catalog, "_tx", None)
    if tx is not None:
        return tx(fn)
    with catalog.engine.begin() as conn:  # pragma: no cover - older catalogs
        return fn(conn)


# ----------------------------------------------------------------------------- pins


def add_pin(catalog: SqlCatalog, asset: str, version: str, reason: str | None) -> None:
    """Pin ``version`` of ``asset`` (vacuum keeps it); pinning again updates the reason."""
    t = pins_table

    def fn(conn: Any) -> None:
        conn.execute(sa.delete(t).where(t.c.asset == asset, t.c.version == str(version)))
        conn.execute(
            sa.insert(t).values(
                asset=asset, version=str(version), reason=reason, pinned_at=time.time()
            )
        )

    _tx(catalog, fn)


def remove_pin(catalog: SqlCatalog, asset: str, version: str | None = None) -> int:
    """Unpin one version (or every version) of ``asset``; returns how many pins went."""
    t = pins_table
    query = sa.delete(t).where(t.c.asset == asset)
    if version is not None:
        query = query.where(t.c.version == str(version))
    return int(_tx(catalog, lambda conn: conn.execute(query).rowcount) or 0)


def pins(catalog: SqlCatalog, asset: str | None = None) -> list[dict[str, Any]]:
    t = pins_table
    query = sa.select(t).order_by(t.c.asset, t.c.pinned_at)
    if asset is not None:
        query = query.where(t.c.asset == asset)
    with catalog.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


# ------------------------------------------------------------------------ erasures


def record_erasure(
    catalog: SqlCatalog,
    *,
    who: str | None,
    predicate_hash: str,
    reason: str | None,
    detail: Mapping[str, Any],
) -> int:
    t = erasures_table

    def fn(conn: Any) -> int:
        res = conn.execute(
            sa.insert(t)
            .returning(t.c.id)
            .values(
                erased_at=time.time(),
                who=who,
                predicate_hash=predicate_hash,
                reason=reason,
                detail=json.dumps(dict(detail), default=str, separators=(",", ":")),
            )
        )
        return int(res.scalar_one())

    return int(_tx(catalog, fn))


def erasures(catalog: SqlCatalog) -> list[dict[str, Any]]:
    t = erasures_table
    with catalog.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(sa.select(t).order_by(t.c.id.desc()))]
    for r in rows:
        r["detail"] = json.loads(r["detail"]) if r.get("detail") else {}
    return rows


def scrub_samples(catalog: SqlCatalog, assets: Iterable[str]) -> int:
    """Forget the failing-row samples of past checks of ``assets`` (they may hold erased
    values); returns how many check rows had one."""
    names = list(assets)
    if not names:
        return 0
    t = checks_table
    query = sa.update(t).where(t.c.asset.in_(names), t.c.sample.is_not(None)).values(sample=None)
    return int(_tx(catalog, lambda conn: conn.execute(query).rowcount) or 0)


def compact_database(catalog: SqlCatalog) -> None:
    """Rewrite a SQLite catalog so no deleted or overwritten row survives in free pages or
    in the write-ahead log (``VACUUM`` and a truncating checkpoint). PostgreSQL: ``VACUUM``
    of the tables erasure edits (dead tuples are reclaimed; the WAL is the server's)."""
    engine = catalog.engine
    if engine.dialect.name == "sqlite":
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            cur.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            cur.execute("VACUUM")
            cur.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            cur.close()
        finally:
            raw.close()
        return
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for table in (checks_table.name, materializations_table.name, state_table.name):
                conn.exec_driver_sql(f"VACUUM {table}")


# --------------------------------------------------------------------------- state


def set_read_version(
    catalog: SqlCatalog, asset: str, version: str, *, expected: str | None
) -> bool:
    """Point every partition-state row of ``asset`` at table ``version`` (same content:
    compaction, erasure), keeping their sequence numbers, so staleness is unchanged and
    readers use a version that vacuum keeps.

    Done only when the newest state row still reads ``expected`` (the version the
    operation started from); returns whether it was done.
    """
    t = state_table

    def fn(conn: Any) -> bool:
        rows = conn.execute(sa.select(t.c.version, t.c.seq).where(t.c.asset == asset)).fetchall()
        if not rows:
            return False
        newest = max(rows, key=lambda r: r.seq)
        if expected is not None and str(newest.version) != str(expected):
            return False
        conn.execute(sa.update(t).where(t.c.asset == asset).values(version=str(version)))
        return True

    return bool(_tx(catalog, fn))


def referenced_versions(catalog: SqlCatalog, asset: str) -> set[str]:
    """Versions of ``asset`` the catalog needs readable: those its partition state reads."""
    t = state_table
    with catalog.engine.connect() as conn:
        return {
            str(v)
            for (v,) in conn.execute(sa.select(t.c.version).where(t.c.asset == asset))
            if v is not None
        }


def recorded_assets(catalog: SqlCatalog) -> dict[str, dict[str, Any]]:
    """Every asset with partition state: ``{asset: {"format", "table_uri"}}`` (from its
    newest materialization)."""
    m = materializations_table
    with catalog.engine.connect() as conn:
        live = {a for (a,) in conn.execute(sa.select(state_table.c.asset).distinct())}
        newest = (
            sa.select(m.c.asset, sa.func.max(m.c.id).label("id"))
            .where(m.c.format.is_not(None))
            .group_by(m.c.asset)
            .subquery()
        )
        rows = conn.execute(
            sa.select(m.c.asset, m.c.format, m.c.table_uri).join(newest, m.c.id == newest.c.id)
        )
        info = {r.asset: {"format": r.format, "table_uri": r.table_uri} for r in rows}
    return {a: info.get(a, {"format": None, "table_uri": None}) for a in sorted(live)}


# ------------------------------------------------------------------------- lifecycle


def forget_asset(catalog: SqlCatalog, asset: str) -> dict[str, int]:
    """Delete everything the catalog knows about ``asset``; returns rows per table."""

    def fn(conn: Any) -> dict[str, int]:
        return {
            t.name: int(conn.execute(sa.delete(t).where(t.c.asset == asset)).rowcount or 0)
            for t in _ASSET_TABLES
        }

    return dict(_tx(catalog, fn))


def rename_asset(
    catalog: SqlCatalog, old: str, new: str, *, table_uri: str | None, code_version: str | None
) -> int:
    """Move the history of ``old`` to ``new``: its rows in every table, and every input
    of other materializations that names it. ``code_version`` (when given) becomes the
    code version of the adopted partition state. Returns the number of state rows moved."""
    m = materializations_table
    s = state_table

    def retag(text: str | None) -> str | None:
        if not text:
            return text
        items = json.loads(text)
        changed = False
        for item in items:
            if item and item[0] == old:
                item[0] = new
                changed = True
        return json.dumps(items, separators=(",", ":")) if changed else text

    def fn(conn: Any) -> int:
        exists = conn.execute(
            sa.select(sa.func.count()).select_from(s).where(s.c.asset == new)
        ).scalar_one()
        exists += conn.execute(
            sa.select(sa.func.count())
            .select_from(m)
            .where(m.c.asset == new, m.c.status.in_(("materialized", "adopted")))
        ).scalar_one()
        if exists:
            return 0
        for t in (
            code_versions_table,
            pins_table,
            leases_table,
        ):  # leftovers of failed runs of ``new``
            conn.execute(sa.delete(t).where(t.c.asset == new))
        for t in _ASSET_TABLES:
            values: dict[str, Any] = {"asset": new}
            if t is m and table_uri is not None:
                values["table_uri"] = table_uri
            if t is s and code_version is not None:
                values["code_version"] = code_version
            conn.execute(sa.update(t).where(t.c.asset == old).values(**values))
        pattern = f'%"{old}"%'
        for t, key in ((m, m.c.id), (s, None)):
            cols = [t.c.inputs] + ([key] if key is not None else [t.c.asset, t.c.pstart])
            for row in conn.execute(sa.select(*cols).where(t.c.inputs.like(pattern))).fetchall():
                text = retag(row.inputs)
                if text == row.inputs:
                    continue
                if key is not None:
                    conn.execute(sa.update(t).where(key == row.id).values(inputs=text))
                else:
                    conn.execute(
                        sa.update(t)
                        .where(t.c.asset == row.asset, t.c.pstart == row.pstart)
                        .values(inputs=text)
                    )
        for row in conn.execute(
            sa.select(m.c.id, m.c.extra).where(m.c.extra.like(pattern))
        ).fetchall():
            extra = json.loads(row.extra)
            ranges = extra.get("input_ranges")
            if isinstance(ranges, dict) and old in ranges:
                ranges[new] = ranges.pop(old)
                conn.execute(
                    sa.update(m)
                    .where(m.c.id == row.id)
                    .values(extra=json.dumps(extra, default=str))
                )
        c = code_versions_table
        for row in conn.execute(
            sa.select(c.c.asset, c.c.code_version, c.c.column_lineage).where(
                c.c.column_lineage.like(pattern)
            )
        ).fetchall():
            data = json.loads(row.column_lineage)
            edges = data.get("edges") or []
            if any(len(e) > 1 and e[1] == old for e in edges):
                data["edges"] = [
                    [e[0], new, *e[2:]] if len(e) > 1 and e[1] == old else e for e in edges
                ]
                conn.execute(
                    sa.update(c)
                    .where(c.c.asset == row.asset, c.c.code_version == row.code_version)
                    .values(column_lineage=json.dumps(data, separators=(",", ":")))
                )
        return int(
            conn.execute(
                sa.select(sa.func.count()).select_from(s).where(s.c.asset == new)
            ).scalar_one()
        )

    return int(_tx(catalog, fn))
