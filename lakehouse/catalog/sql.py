"""The SQL catalog: SQLAlchemy Core over SQLite (embedded) or PostgreSQL (teams).

The schema is versioned in ``lh_meta``; :data:`MIGRATIONS` upgrades an older catalog
when it is opened, and a catalog written by a newer lakehouse is refused.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ..errors import CatalogError
from . import Catalog, InputVersion, MaterializationRecord, StateRow

SCHEMA_VERSION = 1

metadata = sa.MetaData()

meta_table = sa.Table(
    "lh_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

runs_table = sa.Table(
    "lh_runs",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("host", sa.String(255)),
    sa.Column("pid", sa.Integer),
    sa.Column("info", sa.Text),
    sa.Column("heartbeat_at", sa.Float),  # renewed while the run holds leases; a dead run stops
)

materializations_table = sa.Table(
    "lh_materializations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), nullable=False, index=True),
    sa.Column("asset", sa.String(512), nullable=False),
    sa.Column("pstart", sa.BigInteger, nullable=False),
    sa.Column("pend", sa.BigInteger, nullable=False),
    sa.Column("partitions", sa.Text),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("code_version", sa.String(128), nullable=False),
    sa.Column("version", sa.String(64)),
    sa.Column("seq", sa.BigInteger),
    sa.Column("rows", sa.BigInteger),
    sa.Column("schema_fp", sa.String(64)),
    sa.Column("inputs", sa.Text),
    sa.Column("started_at", sa.Float),
    sa.Column("seconds", sa.Float),
    sa.Column("error", sa.Text),
    sa.Column("format", sa.String(16)),
    sa.Column("table_uri", sa.Text),
    sa.Column("extra", sa.Text),
    sa.Index("ix_lh_mat_asset", "asset", "id"),
)

state_table = sa.Table(
    "lh_partition_state",
    metadata,
    sa.Column("asset", sa.String(512), primary_key=True),
    sa.Column("pstart", sa.BigInteger, primary_key=True),
    sa.Column("pend", sa.BigInteger, nullable=False),
    sa.Column("mat_id", sa.Integer, nullable=False),
    sa.Column("version", sa.String(64)),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("code_version", sa.String(128), nullable=False),
    sa.Column("inputs", sa.Text),
    sa.Column("materialized_at", sa.Float, nullable=False),
    sa.Column("rows", sa.BigInteger),
)

code_versions_table = sa.Table(
    "lh_code_versions",
    metadata,
    sa.Column("asset", sa.String(512), primary_key=True),
    sa.Column("code_version", sa.String(128), primary_key=True),
    sa.Column("recorded_at", sa.Float, nullable=False),
    sa.Column("column_lineage", sa.Text),
)

checks_table = sa.Table(
    "lh_checks",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("asset", sa.String(512), nullable=False, index=True),
    sa.Column("partitions", sa.Text),
    sa.Column("check_name", sa.String(255), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("passed", sa.Boolean, nullable=False),
    sa.Column("failing_rows", sa.BigInteger),
    sa.Column("detail", sa.Text),
    sa.Column("checked_at", sa.Float, nullable=False),
    sa.Column("pstart", sa.BigInteger),  # the partition range checked ([0, 1) when unpartitioned)
    sa.Column("pend", sa.BigInteger),
    sa.Column("sample", sa.Text),  # JSON list of a few failing rows
)

observations_table = sa.Table(
    "lh_observations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("asset", sa.String(512), nullable=False, index=True),
    sa.Column("pstart", sa.BigInteger, nullable=False),
    sa.Column("pend", sa.BigInteger, nullable=False),
    sa.Column("version", sa.Text, nullable=False),
    sa.Column("observed_at", sa.Float, nullable=False),
    sa.Column(
        "detail", sa.Text
    ),  # JSON: the listing diff of a files source ({"add": [...], "del": [...]})
    sa.Column(
        "checked_at", sa.Float
    ),  # last time this (newest) version was confirmed by an observation
)

leases_table = sa.Table(
    "lh_leases",
    metadata,
    sa.Column("asset", sa.String(512), primary_key=True),
    sa.Column("pstart", sa.BigInteger, primary_key=True),
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("pend", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
    # "computing" blocks other runs; "committed" (the table commit is made, the run has not
    # recorded it yet) tells them the partitions are done: version/seq/code_version of it
    sa.Column("state", sa.String(16), nullable=False, server_default="computing"),
    sa.Column("version", sa.String(64)),
    sa.Column("seq", sa.BigInteger),
    sa.Column("code_version", sa.String(128)),
)

pins_table = sa.Table(
    "lh_pins",
    metadata,
    sa.Column("asset", sa.String(512), primary_key=True),
    sa.Column("version", sa.String(64), primary_key=True),
    sa.Column("reason", sa.Text),
    sa.Column("pinned_at", sa.Float, nullable=False),
)

erasures_table = sa.Table(
    "lh_erasures",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("erased_at", sa.Float, nullable=False),
    sa.Column("who", sa.String(255)),
    sa.Column("predicate_hash", sa.String(128)),
    sa.Column("reason", sa.Text),
    sa.Column("detail", sa.Text),
)

#: Extra tables other modules may add rows to inside ``finish_run``'s transaction.
EXTRA_TABLES = {
    "checks": checks_table,
    "observations": observations_table,
    "code_versions": code_versions_table,
}


def _migration_1(conn: Connection) -> None:
    metadata.create_all(conn)


#: ``version -> upgrade`` from ``version - 1``. Append new steps; never edit old ones.
MIGRATIONS: dict[int, Callable[[Connection], None]] = {1: _migration_1}


def _dump_inputs(inputs: Iterable[InputVersion]) -> str:
    return json.dumps([[i.asset, i.version, i.seq] for i in inputs], separators=(",", ":"))


@functools.lru_cache(maxsize=8192)
def _load_inputs(text: str | None) -> tuple[InputVersion, ...]:
    """The input versions stored as JSON (cached: many state rows share the same text)."""
    if not text or text == "[]":
        return ()
    return tuple(InputVersion(a, v, int(s)) for a, v, s in json.loads(text))


#: Above this many assets a lease or state query reads the whole (small) table instead of
#: binding one parameter per asset.
_IN_LIMIT = 500

LeaseKey = tuple[str, int, int]


def _mark_committed(conn: Connection, run_id: str, markers: Iterable[Mapping[str, Any]]) -> None:
    t = leases_table
    for m in markers:
        conn.execute(
            sa.update(t)
            .where(
                t.c.run_id == run_id,
                t.c.asset == m["asset"],
                t.c.pstart == m["start"],
                t.c.pend == m["end"],
            )
            .values(
                state="committed",
                version=m["version"],
                seq=m["seq"],
                code_version=m["code_version"],
            )
        )


def _hull(keys: Iterable[LeaseKey]) -> dict[str, tuple[int, int]]:
    """Per asset, the smallest range covering all of its ``(asset, start, end)`` keys."""
    out: dict[str, tuple[int, int]] = {}
    for asset, start, end in keys:
        lo, hi = out.get(asset, (start, end))
        out[asset] = (min(lo, start), max(hi, end))
    return out


def _rows_in(conn: Connection, table: sa.Table, hull: Mapping[str, tuple[int, int]]) -> list[Any]:
    """The rows of ``table`` (``asset, pstart, pend``) overlapping each asset's range of
    ``hull``, in one query: filtered by range for one asset (a partitioned asset may have
    thousands of rows), by name for a few (the ranges are checked here), the whole table
    for many. Each shape compiles once and is cached by SQLAlchemy."""
    t = table
    query = sa.select(t)
    if len(hull) == 1:
        ((asset, (lo, hi)),) = hull.items()
        query = query.where(t.c.asset == asset, t.c.pstart < hi, t.c.pend > lo)
    elif len(hull) <= _IN_LIMIT:
        query = query.where(t.c.asset.in_(list(hull)))
    return [
        r
        for r in conn.execute(query)
        if r.asset in hull and r.pend > hull[r.asset][0] and r.pstart < hull[r.asset][1]
    ]


def _take_leases(
    conn: Connection, run_id: str, wanted: Sequence[LeaseKey], ttl: float
) -> dict[LeaseKey, tuple[str | None, list[dict[str, Any]]]]:
    """Inside a transaction: lease each ``(asset, start, end)`` of ``wanted`` to ``run_id``
    unless a live run is computing an overlapping range (one read, one delete per stale
    lease, one bulk insert). Returns ``{key: (holder, committed markers)}``: ``holder`` is
    ``None`` when the lease was taken; the markers are other runs' live "committed" leases
    overlapping the range."""
    t = leases_table
    hull = _hull(wanted)
    _lock(conn, *(f"lease:{a}" for a in hull))
    now = time.time()
    held: dict[str, list[Any]] = {}
    for r in _rows_in(conn, t, hull):
        held.setdefault(r.asset, []).append(r)
    out: dict[LeaseKey, tuple[str | None, list[dict[str, Any]]]] = {}
    stale: dict[tuple[str, int, str], None] = {}
    inserts = []
    for asset, start, end in wanted:
        overlap = [r for r in held.get(asset, ()) if r.pstart < end and r.pend > start]
        holder = next(
            (
                r.run_id
                for r in overlap
                if r.run_id != run_id and r.expires_at > now and r.state == "computing"
            ),
            None,
        )
        if holder is not None:
            out[(asset, start, end)] = (str(holder), [])
            continue
        out[(asset, start, end)] = (
            None,
            [dict(r._mapping) for r in overlap if r.state == "committed" and r.expires_at > now],
        )
        for r in overlap:
            if r.run_id == run_id or r.expires_at <= now:
                stale[(r.asset, r.pstart, r.run_id)] = None
        inserts.append(
            {
                "asset": asset,
                "pstart": start,
                "pend": end,
                "run_id": run_id,
                "expires_at": now + ttl,
                "state": "computing",
            }
        )
    for asset, pstart, holder_id in stale:
        conn.execute(
            sa.delete(t).where(t.c.asset == asset, t.c.pstart == pstart, t.c.run_id == holder_id)
        )
    if inserts:
        conn.execute(sa.insert(t), inserts)
    return out


def _state_overlapping(
    conn: Connection, keys: Iterable[LeaseKey]
) -> dict[LeaseKey, list[StateRow]]:
    """The partition-state rows overlapping each ``(asset, start, end)``, in one read."""
    keys = list(keys)
    if not keys:
        return {}
    rows: dict[str, list[StateRow]] = {}
    for r in _rows_in(conn, state_table, _hull(keys)):
        rows.setdefault(r.asset, []).append(_as_state_row(r))
    return {
        (a, s, e): [r for r in rows.get(a, ()) if r.start < e and r.end > s] for a, s, e in keys
    }


def _as_state_row(r: Any) -> StateRow:
    """A :class:`StateRow` from a row of ``select(state_table)`` (columns in table order)."""
    asset, pstart, pend, mat_id, version, seq, code_version, inputs, at, rows = r
    return StateRow(
        asset,
        int(pstart),
        int(pend),
        int(mat_id),
        version,
        int(seq),
        code_version,
        _load_inputs(inputs),
        float(at),
        rows,
    )


def make_engine(url: str) -> Engine:
    """A SQLAlchemy engine for the catalog URL (SQLite: WAL and a busy timeout)."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.close()

        @sa.event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return sa.create_engine(url, pool_pre_ping=True)


class SqlCatalog(Catalog):
    """The catalog in a SQL database reached through SQLAlchemy.

    Args:
        url: a SQLAlchemy URL (``sqlite:///path`` or ``postgresql+psycopg://...``).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            self.engine = make_engine(url)
            # several processes creating one SQLite file at once: switching it to WAL can
            # report "locked" without waiting for the busy timeout
            _retry_transient(self._migrate, before_retry=self.engine.dispose)
        except CatalogError:
            raise
        except sa.exc.SQLAlchemyError as exc:
            raise CatalogError(
                f"cannot open the catalog at {_safe_url(url)}: {type(exc).__name__}: "
                f"{str(exc).splitlines()[0]}",
                hint="check the catalog URL, that the database is reachable, and that the file "
                "is a lakehouse catalog",
            ) from exc

    # -- schema -----------------------------------------------------------------------

    def _migrate(self) -> None:
        with self.engine.begin() as conn:
            _lock(conn, "migrate")  # PostgreSQL: one process creates/upgrades the schema at a time
            meta_table.create(conn, checkfirst=True)
            row = conn.execute(
                sa.select(meta_table.c.value).where(meta_table.c.key == "schema_version")
            ).first()
            try:
                current = int(row[0]) if row else 0
            except ValueError:
                raise CatalogError(
                    f"the catalog at {_safe_url(self.url)} has an unreadable schema version "
                    f"{row[0]!r}",
                    hint="the catalog is damaged: restore it, or rebuild it from the tables with "
                    "lake.rebuild_catalog() after moving it away",
                ) from None
            if current > SCHEMA_VERSION:
                raise CatalogError(
                    f"the catalog at {_safe_url(self.url)} has schema version {current}, "
                    f"newer than this lakehouse understands ({SCHEMA_VERSION})",
                    hint="upgrade lakehouse (pip install -U lakehouse) or point catalog= elsewhere",
                )
            for version in range(current + 1, SCHEMA_VERSION + 1):
                MIGRATIONS[version](conn)
            if current == 0:
                conn.execute(
                    sa.insert(meta_table).values(key="schema_version", value=str(SCHEMA_VERSION))
                )
            elif current < SCHEMA_VERSION:
                conn.execute(
                    sa.update(meta_table)
                    .where(meta_table.c.key == "schema_version")
                    .values(value=str(SCHEMA_VERSION))
                )

    def schema_version(self) -> int:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(meta_table.c.value).where(meta_table.c.key == "schema_version")
            ).first()
        return int(row[0]) if row else 0

    # -- reads ------------------------------------------------------------------------

    def state(self, assets: Iterable[str] | None = None) -> dict[str, list[StateRow]]:
        t = state_table
        query = sa.select(t).order_by(t.c.asset, t.c.pstart)
        wanted = None if assets is None else set(assets)
        if wanted is not None and len(wanted) <= _IN_LIMIT:
            query = query.where(t.c.asset.in_(sorted(wanted)))
        out: dict[str, list[StateRow]] = {}
        with self.engine.connect() as conn:
            for r in conn.execute(query):
                if wanted is None or r.asset in wanted:
                    out.setdefault(r.asset, []).append(_as_state_row(r))
        return out

    def unfinished_runs(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(runs_table).where(runs_table.c.status == "running"))
            return [dict(r._mapping) for r in rows]

    def materializations(
        self, asset: str | None = None, *, version: str | None = None, run_id: str | None = None
    ) -> list[dict[str, Any]]:
        t = materializations_table
        query = sa.select(t).order_by(t.c.id.desc())
        if asset is not None:
            query = query.where(t.c.asset == asset)
        if version is not None:
            query = query.where(t.c.version == str(version))
        if run_id is not None:
            query = query.where(t.c.run_id == run_id)
        with self.engine.connect() as conn:
            out = []
            for r in conn.execute(query):
                d = dict(r._mapping)
                d["inputs"] = _load_inputs(d["inputs"])
                d["extra"] = json.loads(d["extra"]) if d["extra"] else {}
                out.append(d)
            return out

    def runs(self, limit: int = 100) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(runs_table).order_by(runs_table.c.started_at.desc()).limit(limit)
            )
            return [dict(r._mapping) for r in rows]

    def rows(self, table: str, **where: Any) -> list[dict[str, Any]]:
        """All rows of one of the extra tables (``checks``, ``observations`` ...)."""
        t = EXTRA_TABLES[table] if table in EXTRA_TABLES else metadata.tables[f"lh_{table}"]
        query = sa.select(t)
        for col, value in where.items():
            query = query.where(t.c[col] == value)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def observations(self, assets: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Source observations (changed versions), oldest first, optionally of some sources."""
        t = observations_table
        query = sa.select(t).order_by(t.c.id)
        if assets is not None:
            query = query.where(t.c.asset.in_(list(assets)))
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def record_observations(
        self, rows: Sequence[Mapping[str, Any]], checked: Mapping[str, float]
    ) -> None:
        """Store new observations and stamp ``checked_at`` on the newest observation of each
        source in ``checked`` (sources observed successfully), in one transaction."""
        t = observations_table
        with self.engine.begin() as conn:
            if rows:
                conn.execute(sa.insert(t), [dict(r) for r in rows])
            for asset, at in checked.items():
                newest = sa.select(sa.func.max(t.c.id)).where(t.c.asset == asset).scalar_subquery()
                conn.execute(sa.update(t).where(t.c.id == newest).values(checked_at=at))

    def failed_checks(self) -> list[dict[str, Any]]:
        """Failed blocking checks (``severity='error'``), for the ``check_failed`` reason."""
        t = checks_table
        query = sa.select(
            t.c.asset,
            t.c.check_name,
            t.c.failing_rows,
            t.c.pstart,
            t.c.pend,
            t.c.checked_at,
            t.c.sample,
            t.c.detail,
        ).where(t.c.passed == sa.false(), t.c.severity == "error")
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    # -- writes -----------------------------------------------------------------------

    def begin_run(
        self,
        run_id: str,
        started_at: float,
        info: Mapping[str, Any],
        *,
        leases: Sequence[LeaseKey] = (),
        ttl: float = 60.0,
    ) -> dict[LeaseKey, tuple[str | None, list[StateRow], list[dict[str, Any]]]]:
        """Record that a run started and, in the same transaction, lease the partition
        ranges it will compute (see :meth:`acquire_lease_with_state`; a range another
        live run is computing is left out, with that run's id as its holder)."""

        def tx(
            conn: Connection,
        ) -> dict[LeaseKey, tuple[str | None, list[StateRow], list[dict[str, Any]]]]:
            conn.execute(
                sa.insert(runs_table).values(
                    run_id=run_id,
                    started_at=started_at,
                    status="running",
                    host=socket.gethostname(),
                    pid=os.getpid(),
                    info=json.dumps(dict(info), default=str),
                    heartbeat_at=started_at,
                )
            )
            if not leases:
                return {}
            taken = _take_leases(conn, run_id, leases, ttl)
            state = _state_overlapping(conn, [k for k, (h, _) in taken.items() if h is None])
            return {k: (h, state.get(k, []) if h is None else [], m) for k, (h, m) in taken.items()}

        result: dict[LeaseKey, tuple[str | None, list[StateRow], list[dict[str, Any]]]]
        result = self._tx(tx)
        return result

    def finish_run(
        self,
        run_id: str,
        status: str,
        finished_at: float,
        records: Sequence[MaterializationRecord],
        extra: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
        *,
        only_if_running: bool = False,
        hook: Callable[[str], None] | None = None,
    ) -> list[int]:
        """Store the run's records, partition state and extra rows; close the run (one
        transaction, retried when the database is busy).

        ``only_if_running``: do nothing (return ``[]``) unless the run is still marked
        running, so two processes recovering the same dead run adopt its commits once.
        ``hook(asset)`` is called for every recorded asset inside the transaction, just
        before it commits (the ``during_catalog`` fault point).
        """

        def tx(conn: Connection) -> list[int]:
            if only_if_running:
                claimed = conn.execute(
                    sa.update(runs_table)
                    .where(runs_table.c.run_id == run_id, runs_table.c.status == "running")
                    .values(status=status, finished_at=finished_at)
                ).rowcount
                if not claimed:
                    return []
            ids = self._insert_records(conn, records)
            self._write_state(conn, records, ids, finished_at)
            for name, rows in (extra or {}).items():
                if rows:
                    conn.execute(sa.insert(EXTRA_TABLES[name]), [dict(r) for r in rows])
            conn.execute(sa.delete(leases_table).where(leases_table.c.run_id == run_id))
            if hook is not None:
                for asset in dict.fromkeys(r.asset for r in records):
                    hook(asset)
            if only_if_running:
                return ids
            updated = conn.execute(
                sa.update(runs_table)
                .where(runs_table.c.run_id == run_id)
                .values(status=status, finished_at=finished_at)
            ).rowcount
            if not updated:
                conn.execute(
                    sa.insert(runs_table).values(
                        run_id=run_id,
                        started_at=min((r.started_at for r in records), default=finished_at),
                        finished_at=finished_at,
                        status=status,
                        host=socket.gethostname(),
                        pid=os.getpid(),
                        info="{}",
                    )
                )
            return ids

        return list(self._tx(tx))

    def _insert_records(
        self, conn: Connection, records: Sequence[MaterializationRecord]
    ) -> list[int]:
        if not records:
            return []
        t = materializations_table
        params = [
            {
                "run_id": rec.run_id,
                "asset": rec.asset,
                "pstart": rec.start,
                "pend": rec.end,
                "partitions": rec.partitions,
                "status": rec.status,
                "code_version": rec.code_version,
                "version": None if rec.version is None else str(rec.version),
                "seq": rec.seq,
                "rows": rec.rows,
                "schema_fp": rec.schema_fp,
                "inputs": _dump_inputs(rec.inputs),
                "started_at": rec.started_at,
                "seconds": rec.seconds,
                "error": rec.error,
                "format": rec.format,
                "table_uri": rec.table_uri,
                "extra": json.dumps(dict(rec.extra), default=str) if rec.extra else None,
            }
            for rec in records
        ]
        result = conn.execute(sa.insert(t).returning(t.c.id, sort_by_parameter_order=True), params)
        return [int(row[0]) for row in result]

    def _write_state(
        self,
        conn: Connection,
        records: Sequence[MaterializationRecord],
        ids: Sequence[int],
        now: float,
    ) -> None:
        """Fold successful records into the range state of their assets: one read of the
        rows the records overlap, then one delete of the rows that changed and one insert
        of their replacements for the whole run (a one-partition write into a table of
        thousands of partitions touches a few rows, not all of them)."""
        written = [
            (rec, mat_id)
            for rec, mat_id in zip(records, ids, strict=True)
            if rec.status in ("materialized", "adopted") and rec.seq is not None
        ]
        if not written:
            return
        t = state_table
        assets = sorted({rec.asset for rec, _ in written})
        _lock(conn, *assets)
        rows: dict[str, list[dict[str, Any]]] = {a: [] for a in assets}
        for r in _rows_in(conn, t, _hull((rec.asset, rec.start, rec.end) for rec, _ in written)):
            rows[r.asset].append(dict(r._mapping))
        before = {id(row): row for a in assets for row in rows[a]}
        for rec, mat_id in written:
            # a partition keeps the newest write (highest table seq): a run that finishes
            # late, or the adoption of a crashed run's commit, never rolls the state back
            newer = sorted(
                (row["pstart"], row["pend"])
                for row in rows[rec.asset]
                if row["pend"] > rec.start and row["pstart"] < rec.end and row["seq"] > rec.seq
            )
            kept: list[dict[str, Any]] = []
            for row in rows[rec.asset]:
                kept.extend([row] if row["seq"] > rec.seq else _cut(row, rec.start, rec.end))
            for start, end in _gaps(rec.start, rec.end, newer):
                kept.append(_state_row(rec, mat_id, start, end, now))
            rows[rec.asset] = kept
        after = {id(row): row for a in assets for row in rows[a]}
        gone: dict[str, list[int]] = {}
        for key, row in before.items():
            if key not in after:
                gone.setdefault(row["asset"], []).append(row["pstart"])
        for asset, starts in gone.items():
            for i in range(0, len(starts), _IN_LIMIT):
                chunk = starts[i : i + _IN_LIMIT]
                conn.execute(sa.delete(t).where(t.c.asset == asset, t.c.pstart.in_(chunk)))
        added = [row for key, row in after.items() if key not in before]
        if added:
            conn.execute(sa.insert(t), added)

    def forget(self, assets: Sequence[str]) -> None:
        """Delete the materializations, partition state and leases of ``assets``, and the
        runs left without materializations (before :func:`rebuild_catalog` refills them)."""
        names = list(assets)

        def tx(conn: Connection) -> None:
            m = materializations_table
            for table in (m, state_table, leases_table):
                conn.execute(sa.delete(table).where(table.c.asset.in_(names)))
            orphan = sa.select(m.c.id).where(m.c.run_id == runs_table.c.run_id).exists()
            conn.execute(sa.delete(runs_table).where(~orphan, runs_table.c.status != "running"))

        self._tx(tx)

    # -- leases -------------------------------------------------------------------------

    def acquire_lease(
        self, run_id: str, asset: str, start: int, end: int, ttl: float
    ) -> str | None:
        """Lease partitions ``[start, end)`` of ``asset`` to ``run_id`` for ``ttl`` seconds.

        Returns ``None`` when the lease was taken, else the id of the live run holding an
        overlapping lease. Expired leases (their holder died) are taken over.
        """
        key = (asset, start, end)
        holder: str | None = self._tx(lambda conn: _take_leases(conn, run_id, [key], ttl)[key][0])
        return holder

    def acquire_lease_with_state(
        self,
        run_id: str,
        asset: str,
        start: int,
        end: int,
        ttl: float,
        commit: Sequence[Mapping[str, Any]] = (),
    ) -> tuple[str | None, list[StateRow], list[dict[str, Any]]]:
        """:meth:`acquire_lease`, plus (in the same transaction) the state rows and the
        committed-lease markers of ``asset`` overlapping ``[start, end)``, so a step can
        see whether another run wrote its partitions since it was planned without a
        second round trip. ``commit`` holds this run's finished leases to turn into
        "committed" markers first (see :meth:`commit_lease`)."""

        def tx(conn: Connection) -> tuple[str | None, list[StateRow], list[dict[str, Any]]]:
            _mark_committed(conn, run_id, commit)
            key = (asset, start, end)
            holder, markers = _take_leases(conn, run_id, [key], ttl)[key]
            if holder is not None:
                return holder, [], []
            return None, _state_overlapping(conn, [key])[key], markers

        result: tuple[str | None, list[StateRow], list[dict[str, Any]]] = self._tx(tx)
        return result

    def commit_lease(
        self,
        run_id: str,
        asset: str,
        start: int,
        end: int,
        version: str | None,
        seq: int | None,
        code_version: str,
    ) -> None:
        """Turn a lease into a marker that the partitions are committed (until the run
        records them): other runs stop waiting and do not compute them again."""
        self.commit_leases(
            run_id,
            [
                {
                    "asset": asset,
                    "start": start,
                    "end": end,
                    "version": version,
                    "seq": seq,
                    "code_version": code_version,
                }
            ],
        )

    def commit_leases(self, run_id: str, markers: Sequence[Mapping[str, Any]]) -> None:
        """:meth:`commit_lease` for many leases (``asset, start, end, version, seq,
        code_version``) in one transaction."""
        if markers:
            self._tx(lambda conn: _mark_committed(conn, run_id, markers))

    def committed_leases(self, asset: str) -> list[dict[str, Any]]:
        """Live markers of partitions of ``asset`` committed by runs that have not recorded them."""
        t = leases_table
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t).where(
                    t.c.asset == asset, t.c.state == "committed", t.c.expires_at > time.time()
                )
            )
            return [dict(r._mapping) for r in rows]

    def release_lease(self, run_id: str, asset: str, start: int, end: int) -> None:
        t = leases_table
        self._tx(
            lambda conn: conn.execute(
                sa.delete(t).where(
                    t.c.run_id == run_id, t.c.asset == asset, t.c.pstart == start, t.c.pend == end
                )
            )
        )

    def renew_leases(self, run_id: str, ttl: float) -> None:
        """Extend every lease of ``run_id`` and record that the run is alive."""
        now = time.time()

        def tx(conn: Connection) -> None:
            conn.execute(
                sa.update(leases_table)
                .where(leases_table.c.run_id == run_id)
                .values(expires_at=now + ttl)
            )
            conn.execute(
                sa.update(runs_table).where(runs_table.c.run_id == run_id).values(heartbeat_at=now)
            )

        self._tx(tx)

    def release_leases(self, run_id: str) -> None:
        self._tx(
            lambda conn: conn.execute(
                sa.delete(leases_table).where(leases_table.c.run_id == run_id)
            )
        )

    def leases(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(leases_table))]

    # -- transactions ---------------------------------------------------------------------

    def _tx(self, fn: Callable[[Connection], Any]) -> Any:
        """Run ``fn(conn)`` in one write transaction, retried while the database reports a
        transient conflict (SQLite busy beyond its timeout, a PostgreSQL deadlock or
        serialization failure); other database errors become a :class:`CatalogError`."""

        def once() -> Any:
            with self.engine.begin() as conn:
                return fn(conn)

        try:
            return _retry_transient(once)
        except sa.exc.OperationalError as exc:
            raise CatalogError(
                f"the catalog at {_safe_url(self.url)} failed: {str(exc).splitlines()[0]}",
                hint="check that the catalog database is reachable and writable; retry the run",
            ) from exc

    def delete_state(self, asset: str, start: int | None = None, end: int | None = None) -> None:
        """Forget the partition state of ``asset`` (optionally of one range)."""
        t = state_table
        with self.engine.begin() as conn:
            if start is None or end is None:
                conn.execute(sa.delete(t).where(t.c.asset == asset))
                return
            rows = conn.execute(
                sa.select(t).where(t.c.asset == asset, t.c.pstart < end, t.c.pend > start)
            ).fetchall()
            conn.execute(sa.delete(t).where(t.c.asset == asset, t.c.pstart < end, t.c.pend > start))
            keep = [piece for row in rows for piece in _cut(dict(row._mapping), start, end)]
            if keep:
                conn.execute(sa.insert(t), keep)

    def close(self) -> None:
        self.engine.dispose()


def _cut(row: dict[str, Any], start: int, end: int) -> list[dict[str, Any]]:
    """What is left of a state row once ``[start, end)`` is cut out of its range."""
    if row["pend"] <= start or row["pstart"] >= end:
        return [row]
    pieces = []
    if row["pstart"] < start:
        pieces.append({**row, "pend": start})
    if row["pend"] > end:
        pieces.append({**row, "pstart": end})
    return pieces


#: Tries of a catalog operation that meets transient conflicts (pauses 0.05 s to 2 s).
_ATTEMPTS = 8


def _retry_transient(fn: Callable[[], Any], before_retry: Callable[[], None] | None = None) -> Any:
    """``fn()``, tried again after a growing pause while the database reports a transient
    conflict (:func:`_transient`); the last error, or any other, is raised as it is."""
    for attempt in range(_ATTEMPTS):
        try:
            return fn()
        except sa.exc.OperationalError as exc:
            if attempt == _ATTEMPTS - 1 or not _transient(exc):
                raise
            if before_retry is not None:
                before_retry()
            time.sleep(min(2.0, 0.05 * 2**attempt))
    raise AssertionError("unreachable")  # pragma: no cover


def _transient(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(
        w in text
        for w in (
            "database is locked",
            "database is busy",
            "deadlock",
            "could not serialize",
            "serialization failure",
        )
    )


def _lock(conn: Connection, *keys: str) -> None:
    """Serialize writers of the same keys (PostgreSQL advisory transaction locks; SQLite
    writers are already serialized by ``BEGIN IMMEDIATE``)."""
    if conn.dialect.name != "postgresql":
        return
    for key in sorted(set(keys)):
        n = int.from_bytes(
            hashlib.sha256(f"lakehouse:{key}".encode()).digest()[:8], "big", signed=True
        )
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(n)))


def _gaps(start: int, end: int, taken: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of ``[start, end)`` not covered by the sorted ranges ``taken``."""
    out = []
    pos = start
    for a, b in taken:
        if a > pos:
            out.append((pos, min(a, end)))
        pos = max(pos, b)
        if pos >= end:
            break
    if pos < end:
        out.append((pos, end))
    return [(a, b) for a, b in out if a < b]


def _state_row(
    rec: MaterializationRecord, mat_id: int, start: int, end: int, now: float
) -> dict[str, Any]:
    return {
        "asset": rec.asset,
        "pstart": start,
        "pend": end,
        "mat_id": mat_id,
        "version": None if rec.version is None else str(rec.version),
        "seq": rec.seq,
        "code_version": rec.code_version,
        "inputs": _dump_inputs(rec.inputs),
        "materialized_at": (rec.started_at + rec.seconds) or now,
        "rows": rec.rows,
    }


def _safe_url(url: str) -> str:
    """The URL with any password masked, for messages."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<catalog url>"
