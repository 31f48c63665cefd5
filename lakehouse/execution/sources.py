"""Sources at run time: observing them, their staleness reasons, and reading them (layer 4).

* :func:`observe` - call each source's observe function (or the built-in adapter), and
  record the versions that changed in the catalog's ``lh_observations`` (one row per
  partition per change; files sources also store the listing diff, so a run can tell
  which files are new). The newest row of each observed source gets ``checked_at``.
* :func:`staleness_reasons` - the ``Lakehouse._extensions`` hook: ``source_changed``
  (the observed version differs from the one the dependant consumed, per partition) and
  ``expired`` (``max_age`` passed since the last successful materialization).
* :class:`SourceReads` - used by the coordinator to turn a source input, or any
  ``since_last_run`` input, into a step input pinned to an exact version, with a
  :class:`SourceRead` that builds the data on the worker. The consumed position rides in
  the step's :class:`~lakehouse.catalog.InputVersion`, so it is stored with the
  materialization in the run's single catalog transaction and in the table commit's
  provenance (recovered by adoption after a crash).

Time comes from :func:`clock` (``lake.clock``, default ``time.time``), so tests can move it.
"""

from __future__ import annotations

import datetime as _dt
import inspect
import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, cast

from ..assets import Context, PartitionContext, TableRef
from ..catalog import InputVersion
from ..errors import DefinitionError, LakehouseError, PartitionError, StorageError
from ..partitions import RangeSet, predicate
from ..plan import UNIT, map_down, map_up, universe
from ..sources import DeltaTableSource, FilesSource, IcebergTableSource, SqlTableSource, builtin

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl

    from ..assets import AssetSpec
    from ..catalog import StateRow
    from ..engines import InputSource

log = logging.getLogger("lakehouse")

EMPTY_FILES = "0 files"


def clock(lake: Any) -> float:
    """Seconds since the epoch by the lakehouse's clock (``lake.clock``)."""
    fn = getattr(lake, "clock", None)
    return float(fn()) if callable(fn) else time.time()


def _utc(ts: float) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(ts, tz=_dt.timezone.utc)


def human_seconds(seconds: float) -> str:
    """``3h 5m``-style text of a duration."""
    s = round(abs(seconds))
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    parts = [f"{d}d"] if d else []
    if h:
        parts.append(f"{h}h")
    if m and not d:
        parts.append(f"{m}m")
    if not parts or (s and not d and not h):
        parts.append(f"{s}s")
    return " ".join(parts)


# -------------------------------------------------------------------- observation state


@dataclass
class SourceState:
    """Everything the catalog knows about one source's observations.

    ``history[p]`` lists ``(observation id, version)`` of partition ``p`` (``0`` when
    unpartitioned), oldest first; ``files[p]`` maps each listed path to ``(size, tag,
    id of the observation that first listed it in this form)`` for files sources.
    """

    key: str
    history: dict[int, list[tuple[int, str]]] = field(default_factory=dict)
    observed_at: dict[int, float] = field(default_factory=dict)
    files: dict[int, dict[str, tuple[int, str, int]]] = field(default_factory=dict)
    max_id: int = 0
    last_checked: float | None = None

    def __bool__(self) -> bool:
        return bool(self.history)

    def add(self, row: Mapping[str, Any]) -> None:
        oid = int(row["id"])
        detail = json.loads(row["detail"]) if row.get("detail") else None
        for p in range(int(row["pstart"]), int(row["pend"])):
            self.history.setdefault(p, []).append((oid, row["version"]))
            self.observed_at[p] = float(row["observed_at"])
            if detail is not None:
                listing = self.files.setdefault(p, {})
                for path in detail.get("del", ()):
                    listing.pop(path, None)
                for path, size, tag in detail.get("add", ()):
                    known = listing.get(path)
                    if known is None or known[:2] != (int(size), str(tag)):
                        listing[path] = (int(size), str(tag), oid)
                    # else: a concurrent observer recorded the same change again; the file
                    # keeps the observation that first listed it, so it is not new twice
        self.max_id = max(self.max_id, oid)
        seen = max(float(row["observed_at"]), float(row.get("checked_at") or 0.0))
        self.last_checked = seen if self.last_checked is None else max(self.last_checked, seen)

    def latest(self, p: int) -> tuple[int, str] | None:
        hist = self.history.get(p)
        return hist[-1] if hist else None

    def version_at(self, p: int, seq: int) -> str | None:
        """The version partition ``p`` had after observation ``seq`` (``None``: unknown then)."""
        found = None
        for oid, version in self.history.get(p, ()):
            if oid > seq:
                break
            found = version
        return found

    def version_text(self, partitioned: bool) -> str:
        """The version recorded as consumed: the version, or ``obs <id>`` when partitioned."""
        if not partitioned:
            last = self.latest(0)
            return last[1] if last else ""
        return f"obs {self.max_id}"

    def changed_since(self, seq: int) -> dict[int, tuple[str | None, str]]:
        """Partitions whose version now differs from the one they had at observation ``seq``."""
        out: dict[int, tuple[str | None, str]] = {}
        for p, hist in self.history.items():
            if hist[-1][0] <= seq:
                continue
            old = self.version_at(p, seq)
            if old != hist[-1][1]:
                out[p] = (old, hist[-1][1])
        return out


def load_states(lake: Any, keys: Iterable[str]) -> dict[str, SourceState]:
    """The observation state of each source in ``keys`` (from one catalog query)."""
    keys = list(keys)
    states = {k: SourceState(k) for k in keys}
    if not keys:
        return states
    for row in lake.catalog.observations(keys):
        st = states.get(row["asset"])
        if st is not None:
            st.add(row)
    return states


def _sources_of(graph: Any) -> list[str]:
    return [k for k, s in graph.specs.items() if s.kind == "source"]


def sources_for(graph: Any, select: Any) -> list[str]:
    """The sources a selection concerns: selected ones and direct upstreams of selected assets."""
    keys = graph.select(select)
    out = {k for k in keys if graph.specs[k].kind == "source"}
    for k in keys:
        out.update(p for p in graph.parents[k] if graph.specs[p].kind == "source")
    return list(graph.sort(out))


# --------------------------------------------------------------------------- observing


def _storage_options(lake: Any, own: Mapping[str, str]) -> dict[str, str]:
    return dict(own) if own else dict(lake.settings.storage_options or {})


def _iceberg_props(lake: Any, defn: IcebergTableSource) -> dict[str, str]:
    return dict(defn.catalog) if defn.catalog else lake._iceberg_props()


def glob_regex(path: str) -> re.Pattern[str]:
    """A regex matching listed paths of a files glob; ``{name}`` segments become groups."""
    body = path.split("://", 1)[1] if "://" in path else path
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "{":
            end = body.index("}", i)
            out.append(f"(?P<{body[i + 1 : end]}>[^/]+)")
            i = end + 1
        elif body.startswith("**", i):
            out.append(".*")
            i += 2
        elif ch == "*":
            out.append("[^/]*")
            i += 1
        elif ch == "?":
            out.append("[^/]")
            i += 1
        elif ch == "[":
            end = body.find("]", i)
            if end < 0:
                out.append(re.escape(ch))
                i += 1
            else:
                out.append(body[i : end + 1].replace("[!", "[^"))
                i = end + 1
        else:
            out.append(re.escape(ch))
            i += 1
    return re.compile("^/?" + "".join(out).lstrip("/") + "$")


def _partition_of(spec: AssetSpec, defn: FilesSource, match: re.Match[str], now: Any) -> int:
    parts = spec.partitions
    assert parts is not None
    dims = getattr(parts, "dims", None)
    if dims:
        key = "|".join(match.group(name) for name, _ in dims)
    else:
        key = match.group(defn.placeholders[0])
    return int(parts.index(key, now=now, asset=spec.key))


def observe_files(lake: Any, spec: AssetSpec, defn: FilesSource) -> dict[int, list[Any]]:
    """The current listing of a files source, grouped by partition index."""
    from ..storage.sources import list_files

    entries = list_files(spec.key, defn.listing_glob, _storage_options(lake, defn.storage_options))
    if spec.partitions is None:
        return {0: entries}
    rx = glob_regex(defn.path)
    now = _utc(clock(lake))
    groups: dict[int, list[Any]] = {}
    skipped: list[str] = []
    for e in entries:
        m = rx.match(e.path.split("://", 1)[-1])
        if m is None:
            skipped.append(e.path)
            continue
        try:
            p = _partition_of(spec, defn, m, now)
        except PartitionError:
            skipped.append(e.path)
            continue
        groups.setdefault(p, []).append(e)
    if skipped:
        log.warning(
            "source %s: %d file(s) outside the partitions are ignored, e.g. %s",
            spec.key,
            len(skipped),
            skipped[0],
        )
    return groups


def _call_user(fn: Callable[..., Any], ctx: Context) -> Any:
    try:
        params = [
            p
            for p in inspect.signature(fn).parameters.values()
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
    except (TypeError, ValueError):
        params = []
    return fn(ctx) if params else fn()


def observe_custom(lake: Any, spec: AssetSpec) -> dict[int, str]:
    """Call an ``@lh.source`` observe function; ``{partition index: version}``."""
    assert spec.observe is not None
    ctx = Context(asset=spec.key, run_id="observe")
    value = _call_user(spec.observe, ctx)
    if spec.partitions is None:
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise DefinitionError(
                f"the observe function returned {type(value).__name__}, not a version string",
                asset=spec.key,
                hint="return a short string that changes with the data (an ETag, max(updated_at))",
            )
        return {0: str(value)}
    if not isinstance(value, Mapping):
        raise DefinitionError(
            f"the observe function of a partitioned source returned {type(value).__name__}",
            asset=spec.key,
            hint="return {partition_key: version} for the partitions that exist",
        )
    now = _utc(clock(lake))
    out: dict[int, str] = {}
    for key, version in value.items():
        if not isinstance(version, (str, int)) or isinstance(version, bool):
            raise DefinitionError(
                f"the observe function returned {type(version).__name__} for partition {key}",
                asset=spec.key,
                partition=str(key),
                hint="versions are strings",
            )
        out[spec.partitions.index(str(key), now=now, asset=spec.key)] = str(version)
    return out


def observe_one(lake: Any, spec: AssetSpec, st: SourceState, now: float) -> list[dict[str, Any]]:
    """The observation rows to add for one source (versions that changed)."""
    from ..storage import sources as io

    defn = builtin(spec)
    rows: list[dict[str, Any]] = []

    def row(p: int, version: str, detail: Any = None) -> None:
        rows.append(
            {
                "asset": spec.key,
                "pstart": p,
                "pend": p + 1,
                "version": version,
                "observed_at": now,
                "detail": None if detail is None else json.dumps(detail, separators=(",", ":")),
                "checked_at": now,
            }
        )

    if isinstance(defn, FilesSource):
        groups = observe_files(lake, spec, defn)
        touched = set(groups) | {p for p, hist in st.history.items() if hist[-1][1] != EMPTY_FILES}
        for p in sorted(touched):
            entries = groups.get(p, [])
            version = io.listing_version(entries)
            last = st.latest(p)
            if last is not None and last[1] == version:
                continue
            old = st.files.get(p, {})
            add = [
                [e.path, e.size, e.tag]
                for e in entries
                if old.get(e.path, (None, None))[:2] != (e.size, e.tag)
            ]
            gone = sorted(set(old) - {e.path for e in entries})
            row(p, version, {"add": add, "del": gone})
        return rows
    if isinstance(defn, SqlTableSource):
        versions = {0: io.sql_observe(spec.key, defn.url, defn.table, defn.cursor)}
    elif isinstance(defn, DeltaTableSource):
        versions = {
            0: str(
                io.delta_version(spec.key, defn.uri, _storage_options(lake, defn.storage_options))
            )
        }
    elif isinstance(defn, IcebergTableSource):
        tbl = io.iceberg_table(spec.key, defn.identifier, _iceberg_props(lake, defn))
        versions = {0: io.iceberg_snapshot(tbl)}
    else:
        versions = observe_custom(lake, spec)
    for p, version in sorted(versions.items()):
        last = st.latest(p)
        if last is None or last[1] != version:
            row(p, version)
    return rows


def observe(lake: Any, select: Any = None, *, raise_on_error: bool = True) -> pl.DataFrame:
    """See :meth:`lakehouse.Lakehouse.observe`."""
    import polars as pl

    keys = sources_for(lake.graph, select)
    results = observe_keys(lake, keys)
    errors = [r.pop("exception") for r in results if "exception" in r]
    frame = pl.DataFrame(
        results,
        schema={
            "source": pl.String,
            "partitions": pl.String,
            "version": pl.String,
            "previous": pl.String,
            "changed": pl.Boolean,
            "observed_at": pl.Datetime("us", "UTC"),
            "error": pl.String,
        },
    )
    if errors and raise_on_error:
        first = errors[0]
        if isinstance(first, LakehouseError):
            raise first
        bad = next(r for r in results if r["error"])
        raise StorageError(
            f"cannot observe: {bad['error']}",
            asset=bad["source"],
            hint="fix the observe function or the source, or pass raise_on_error=False",
        ) from first
    return frame


def observe_keys(lake: Any, keys: Sequence[str]) -> list[dict[str, Any]]:
    """Observe ``keys`` and record what changed; one result row per changed partition
    (or one per source when nothing changed or it failed)."""
    if not keys:
        return []
    graph = lake.graph
    states = load_states(lake, keys)
    new_rows: list[dict[str, Any]] = []
    checked: dict[str, float] = {}
    results: list[dict[str, Any]] = []
    for key in keys:
        spec = graph.specs[key]
        st = states[key]
        now = clock(lake)
        try:
            rows = observe_one(lake, spec, st, now)
        except Exception as exc:
            text = str(exc) if isinstance(exc, LakehouseError) else f"{type(exc).__name__}: {exc}"
            log.warning("could not observe source %s: %s", key, text)
            results.append(
                {
                    "source": key,
                    "partitions": None,
                    "version": None,
                    "previous": None,
                    "changed": False,
                    "observed_at": None,
                    "error": text,
                    "exception": exc,
                }
            )
            continue
        checked[key] = now
        new_rows.extend(rows)
        defn = spec.partitions
        for r in rows:
            prev = st.latest(r["pstart"])
            results.append(
                {
                    "source": key,
                    "partitions": defn.key(r["pstart"]) if defn is not None else None,
                    "version": r["version"],
                    "previous": prev[1] if prev else None,
                    "changed": True,
                    "observed_at": _utc(now),
                    "error": None,
                }
            )
        if not rows:
            last = st.latest(0) if defn is None else None
            results.append(
                {
                    "source": key,
                    "partitions": None if defn is None else f"{len(st.history)} observed",
                    "version": last[1] if last else None,
                    "previous": last[1] if last else None,
                    "changed": False,
                    "observed_at": _utc(now),
                    "error": None,
                }
            )
    if new_rows or checked:
        lake.catalog.record_observations(new_rows, checked)
    return results


def observe_for_run(lake: Any, select: Any) -> None:
    """Observe the sources a ``materialize(select)`` depends on; failures only log."""
    try:
        keys = sources_for(lake.graph, select)
    except LakehouseError:
        return  # the plan reports a bad selection
    if keys:
        for r in observe_keys(lake, keys):
            r.pop("exception", None)


# ------------------------------------------------------------------------- staleness


def staleness_reasons(
    lake: Any, state: Mapping[str, Sequence[StateRow]]
) -> dict[str, list[tuple[Any, str, str | None]]]:
    """``source_changed`` and ``expired`` ranges of every asset (a ``_extensions`` hook)."""
    graph = lake.graph
    out: dict[str, list[tuple[Any, str, str | None]]] = {}
    sources = _sources_of(graph)
    states = load_states(lake, sources) if sources else {}
    now = clock(lake)
    now_dt = _utc(now)
    for key in graph.order:
        spec = graph.specs[key]
        if spec.kind == "source":
            continue
        rows = state.get(key, ())
        for up in graph.parents[key]:
            st = states.get(up)
            if st is None or not st or not rows:
                continue
            items = _source_changed(graph, key, up, st, rows, now_dt)
            if items:
                out.setdefault(key, []).extend(items)
        if spec.max_age is not None and rows:
            item = _expired(spec, rows, now, now_dt)
            if item is not None:
                out.setdefault(key, []).append(item)
    return out


def _source_changed(
    graph: Any, key: str, up: str, st: SourceState, rows: Sequence[StateRow], now_dt: Any
) -> list[tuple[Any, str, str | None]]:
    up_spec = graph.specs[up]
    items: list[tuple[Any, str, str | None]] = []
    cache: dict[int, dict[int, tuple[str | None, str]]] = {}
    for r in rows:
        consumed = next((i for i in r.inputs if i.asset == up), None)
        if up_spec.partitions is None:
            last = st.latest(0)
            if last is None:
                continue
            old = consumed.version if consumed is not None else None
            if old != last[1]:
                items.append(
                    (
                        RangeSet.of(r.start, r.end),
                        "source_changed",
                        f"{old or '(none)'} → {last[1]}",
                    )
                )
            continue
        seq = consumed.seq if consumed is not None else -1
        changed = cache.get(seq)
        if changed is None:
            changed = cache[seq] = st.changed_since(seq)
        if not changed:
            continue
        hit = map_down(graph, up, key, RangeSet.from_indices(changed), now_dt) & RangeSet.of(
            r.start, r.end
        )
        if not hit:
            continue
        read = map_up(graph, key, up, hit, now_dt)
        mine = sorted(p for p in changed if p in read) or sorted(changed)
        first = mine[0]
        old, new = changed[first]
        more = f" (+{len(mine) - 1} more)" if len(mine) > 1 else ""
        items.append(
            (
                hit,
                "source_changed",
                f"{up_spec.partitions.key(first)}: {old or '(none)'} → {new}{more}",
            )
        )
    return items


def _expired(
    spec: AssetSpec, rows: Sequence[StateRow], now: float, now_dt: Any
) -> tuple[Any, str, str | None] | None:
    assert spec.max_age is not None
    if spec.partitions is None:
        at = max(r.materialized_at for r in rows)
        rs = UNIT
    else:
        uni = universe(spec, now_dt)
        if not uni:
            return None
        last = uni.max()
        row = next((r for r in rows if r.start <= last < r.end), None)
        if row is None:
            return None
        at = row.materialized_at
        rs = RangeSet.of(last, last + 1)
    age = now - at
    if age <= spec.max_age:
        return None
    return (
        rs,
        "expired",
        f"materialized {human_seconds(age)} ago, max_age {human_seconds(spec.max_age)}",
    )


# ----------------------------------------------------------------------------- status


def status_rows(
    lake: Any, rows: list[dict[str, Any]], state: Mapping[str, Sequence[StateRow]]
) -> None:
    """Fill in source rows and add ``age`` / ``deadline`` to every ``status()`` row (in place).

    A source row shows its observed version, the time of its last successful observation
    as ``materialized_at``, and ``expired`` when that is older than its ``max_age``.
    The age of an asset is the time since its newest materialization (for a partitioned
    asset with ``max_age``: of its latest partition, the one ``expired`` concerns).
    """
    graph = lake.graph
    sources = _sources_of(graph)
    states = load_states(lake, sources) if sources else {}
    now = clock(lake)
    now_dt = _utc(now)
    for row in rows:
        spec = graph.specs.get(row["asset"])
        row.setdefault("age", None)
        row.setdefault("deadline", None)
        if spec is None:
            continue
        at: float | None = None
        if spec.kind == "source":
            st = states.get(spec.key)
            row["code_version"] = None
            if st:
                at = st.last_checked
                row["materialized_at"] = _utc(at) if at is not None else None
                if spec.partitions is None:
                    last = st.latest(0)
                    row["version"] = last[1] if last else None
                else:
                    row["version"] = f"obs {st.max_id}"
                    total = len(spec.partitions.all(now_dt))
                    row["partitions"] = f"{len(st.history)}/{total} observed"
            if spec.max_age is not None and (at is None or now - at > spec.max_age):
                row["stale"] = True
                row["reason"] = "expired"
                row["cause"] = (
                    "never observed"
                    if at is None
                    else f"observed {human_seconds(now - at)} ago, "
                    f"max_age {human_seconds(spec.max_age)}"
                )
        else:
            st_rows = state.get(spec.key, ())
            if st_rows:
                at = max(r.materialized_at for r in st_rows)
                if spec.partitions is not None and spec.max_age is not None:
                    uni = universe(spec, now_dt)
                    newest = uni.max() if uni else None
                    hit = next(
                        (r for r in st_rows if newest is not None and r.start <= newest < r.end),
                        None,
                    )
                    at = hit.materialized_at if hit is not None else None
        if at is not None:
            row["age"] = _dt.timedelta(seconds=max(0.0, now - at))
            if spec.max_age is not None:
                row["deadline"] = _utc(at + spec.max_age)


def source_status(lake: Any, key: str) -> pl.DataFrame:
    """``status(source)``: the observed version of each partition (one row when unpartitioned).

    Columns as for an asset's ranges: ``asset, partitions, count, stale, reason, cause,
    version``, plus ``observed_at`` (when the version was first seen). Partitions never
    observed are one row per range with no version.
    """
    import polars as pl

    spec = lake.graph.specs[key]
    st = load_states(lake, [key])[key]
    now = clock(lake)
    expired = spec.max_age is not None and (
        st.last_checked is None or now - st.last_checked > spec.max_age
    )
    reason = "expired" if expired else None
    rows: list[dict[str, Any]] = []
    defn = spec.partitions
    if defn is None:
        last = st.latest(0)
        rows.append(
            {
                "asset": key,
                "partitions": None,
                "count": 1,
                "stale": expired,
                "reason": reason,
                "cause": None,
                "version": last[1] if last else None,
                "observed_at": _utc(st.observed_at[0]) if 0 in st.observed_at else None,
            }
        )
    else:
        seen = RangeSet.from_indices(st.history)
        for p in sorted(st.history):
            rows.append(
                {
                    "asset": key,
                    "partitions": defn.key(p),
                    "count": 1,
                    "stale": expired,
                    "reason": reason,
                    "cause": None,
                    "version": st.history[p][-1][1],
                    "observed_at": _utc(st.observed_at[p]),
                }
            )
        for a, b in (defn.all(_utc(now)) - seen).ranges:
            rows.append(
                {
                    "asset": key,
                    "partitions": defn.format_ranges(RangeSet.of(a, b)),
                    "count": b - a,
                    "stale": expired,
                    "reason": reason,
                    "cause": "not observed",
                    "version": None,
                    "observed_at": None,
                }
            )
        rows.sort(key=lambda r: r["partitions"] or "")
    schema: dict[str, Any] = {
        "asset": pl.String,
        "partitions": pl.String,
        "count": pl.Int64,
        "stale": pl.Boolean,
        "reason": pl.String,
        "cause": pl.String,
        "version": pl.String,
        "observed_at": pl.Datetime("us", "UTC"),
    }
    return pl.DataFrame(rows, schema=schema)


# ----------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class SourceRead:
    """How a worker builds one source input or incremental input (picklable).

    ``kind`` is ``files``, ``sql``, ``delta``, ``iceberg``, ``custom`` (an ``@lh.source``
    reader) or ``table`` (the changes of a lakehouse table since ``since``).
    """

    kind: str
    asset: str
    version: str | None
    since: str | None = None
    incremental: bool = False
    defn: Any = None
    options: Mapping[str, str] = field(default_factory=dict, repr=False)
    files: tuple[tuple[str, Mapping[str, Any]], ...] = field(default=(), repr=False)
    schema_file: str | None = None
    columns: Mapping[str, Any] = field(
        default_factory=dict, repr=False
    )  # partition column examples
    reader: Callable[..., Any] | None = field(default=None, repr=False)
    partition: PartitionContext | None = field(default=None, repr=False)
    run_id: str = ""
    ref: TableRef | None = None

    def input_source(self, inp: Any) -> InputSource:
        """The engine input for step input ``inp``: a lazy dataset of what to read, or the
        table itself for a full read of a Delta or Iceberg source (scanned natively)."""
        from ..engines import InputSource

        table: Callable[[], Any] | None = None
        if self.kind == "iceberg" and not self.incremental and self.version not in (None, "empty"):
            table = self._iceberg
        ref = inp.ref
        native = (self.kind == "delta" and ref.format == "delta") or table is not None
        if not native:  # engines scan ref.format natively when it names a table format
            ref = replace(ref, format="source")
        return InputSource(
            inp.param, ref, inp.predicate, dataset=self.dataset, arrow=None, table=table
        )

    def _iceberg(self) -> Any:
        from ..storage import sources as io

        return io.iceberg_table(self.asset, self.defn.identifier, self.options)

    def dataset(self) -> Any:
        """The data to read as a pyarrow dataset (lazy where the source allows)."""
        from ..storage import sources as io

        d = self.defn
        if self.kind == "files":
            return io.files_dataset(
                self.asset,
                d.listing_glob,
                d.format,
                self.options,
                list(self.files),
                self.schema_file,
                self.columns,
            )
        if self.kind == "sql":
            since, until = (self.since, self.version) if self.incremental else (None, None)
            return _as_dataset(io.sql_read(self.asset, d.url, d.table, d.cursor, since, until))
        if self.kind == "delta":
            if self.incremental and self.since is not None:
                return _as_dataset(
                    io.delta_changes(
                        self.asset, d.uri, self.options, int(self.since), int(self.version or 0)
                    )
                )
            return io.delta_dataset(self.asset, d.uri, self.options, int(self.version or 0))
        if self.kind == "iceberg":
            if self.incremental:
                return _as_dataset(io.iceberg_changes(self._iceberg(), self.since, self.version))
            return _as_dataset(io.iceberg_read(self._iceberg(), self.version))
        if self.kind == "custom":
            return _as_dataset(self._call_reader())
        if self.kind == "table":
            return _as_dataset(table_changes(self.ref, self.since))
        raise ValueError(
            f"unknown source read {self.kind!r}"
        )  # pragma: no cover - built by SourceReads

    def _call_reader(self) -> Any:
        from ..engines import to_arrow

        assert self.reader is not None
        ctx = Context(
            asset=self.asset,
            run_id=self.run_id,
            partition=self.partition,
            metadata={"version": self.version, "since": self.since if self.incremental else None},
        )
        value = _call_user(self.reader, ctx)
        return to_arrow(value, self.asset, stream=False)


def _as_dataset(data: Any) -> Any:
    """A pyarrow dataset of ``data`` (a dataset already, or anything Arrow-like)."""
    import pyarrow.dataset as pads

    from ..storage.sources import to_arrow_table

    if isinstance(data, pads.Dataset):
        return data
    return pads.dataset(to_arrow_table(data))


def table_changes(ref: TableRef | None, since: str | None) -> Any:
    """The rows a lakehouse table gained after version ``since`` up to ``ref.version``."""
    from ..storage import get_format
    from ..storage import sources as io

    assert ref is not None
    fmt = get_format(ref.format)
    if since is None:
        return fmt.dataset(ref)
    if ref.format == "delta":
        return io.delta_changes(
            ref.asset, ref.uri, dict(ref.storage_options), int(since), int(ref.version or 0)
        )
    if ref.format == "iceberg":
        native: Any = getattr(fmt, "native", None)
        return io.iceberg_changes(native(ref), since, ref.version)
    raise StorageError(
        f"since_last_run is not supported for {ref.format} tables",
        asset=ref.asset,
        hint="use a Delta or Iceberg upstream",
    )


class SourceReads:
    """Per run: step inputs for sources and ``since_last_run`` inputs (coordinator side)."""

    def __init__(
        self,
        lake: Any,
        state: Mapping[str, Sequence[StateRow]],
        current: Mapping[str, tuple[str | None, int]],
        run_id: str,
    ) -> None:
        self.lake = lake
        self.graph = lake.graph
        self.state = state
        self.current = current
        self.run_id = run_id
        self._states: dict[str, SourceState] | None = None

    def wants(self, inp: Any, up: str) -> bool:
        """Whether this module builds the input (a source, or an incremental read)."""
        return bool(inp.since_last_run) or self.graph.specs[up].kind == "source"

    def states(self) -> dict[str, SourceState]:
        if self._states is None:
            self._states = load_states(self.lake, _sources_of(self.graph))
        return self._states

    def _consumed(self, asset: str, ranges: RangeSet, up: str) -> InputVersion | None:
        """What the asset's newest materialization over ``ranges`` consumed of ``up``."""
        lo, hi = (ranges.ranges[0][0], ranges.ranges[-1][1]) if ranges else (0, 1)
        rows = [r for r in self.state.get(asset, ()) if r.start < hi and r.end > lo]
        if not rows:
            return None
        newest = max(rows, key=lambda r: r.mat_id)
        return next((i for i in newest.inputs if i.asset == up), None)

    def step_input(self, asset: str, ranges: RangeSet, inp: Any, up: str) -> Any:
        """A :class:`~lakehouse.execution.step.StepInput`, or an error text."""
        from .step import StepInput

        graph = self.graph
        up_spec = graph.specs[up]
        needed = map_up(graph, asset, up, ranges) if up_spec.partitions is not None else UNIT
        pred = None
        if (
            up_spec.partitions is not None
            and up_spec.partition_column
            and needed != up_spec.partitions.all(None)
        ):
            pred = predicate(up_spec.partitions, needed, up_spec.partition_column)
        prev = self._consumed(asset, ranges, up) if inp.since_last_run else None
        if up_spec.kind != "source":
            if up not in self.current:
                return f"upstream {up!r} has no table yet; materialize it first (select '+{asset}')"
            version, seq = self.current[up]
            ref = self.lake.table_ref(up_spec, version)
            since = prev.version if prev is not None else None
            read = SourceRead(
                "table", up, version, since=since, incremental=True, ref=ref, run_id=self.run_id
            )
            return StepInput(
                inp.param, ref, pred, inp.annotation, InputVersion(up, version, seq), read=read
            )
        built = source_read(
            self.lake,
            up_spec,
            self.states().get(up),
            needed,
            prev,
            bool(inp.since_last_run),
            self.run_id,
        )
        if isinstance(built, str):
            return built
        read, ref, iv = built
        return StepInput(inp.param, ref, pred, inp.annotation, iv, read=read)

    def deps(self, asset: str, inputs: Sequence[Any]) -> tuple[InputVersion, ...]:
        """Consumed versions of order-only source upstreams (``deps=[...]``)."""
        taken = {i.version.asset for i in inputs}
        out = []
        for d in self.graph.parents[asset]:
            spec = self.graph.specs[d]
            if spec.kind != "source" or d in taken:
                continue
            st = self.states().get(d)
            if st:
                out.append(InputVersion(d, st.version_text(spec.partitions is not None), st.max_id))
        return tuple(out)


def source_read(
    lake: Any,
    spec: AssetSpec,
    st: SourceState | None,
    needed: RangeSet,
    prev: InputVersion | None,
    incremental: bool,
    run_id: str,
) -> tuple[SourceRead, TableRef, InputVersion] | str:
    """How to read source ``spec`` (partitions ``needed``, from ``prev`` when incremental),
    pinned to its newest observation; or an error text."""
    up = spec.key
    if not st:
        return (
            f"source {up!r} has not been observed yet; check that it is reachable "
            f"(lake.observe({up!r}) shows the error)"
        )
    version = st.version_text(spec.partitions is not None)
    iv = InputVersion(up, version, st.max_id)
    since = prev.version if prev is not None else None
    defn = builtin(spec)
    common: dict[str, Any] = {
        "asset": up,
        "version": version,
        "since": since,
        "incremental": incremental,
        "run_id": run_id,
        "defn": defn,
    }
    if isinstance(defn, FilesSource):
        read = _files_read(lake, spec, defn, st, needed, prev, common)
        uri = defn.path
    elif isinstance(defn, SqlTableSource):
        read = SourceRead("sql", **common)
        uri = defn.table
    elif isinstance(defn, DeltaTableSource):
        read = SourceRead("delta", options=_storage_options(lake, defn.storage_options), **common)
        uri = defn.uri
        if not incremental or since is None:
            from ..storage.uri import delta_options

            opts = delta_options(defn.uri, read.options)
            return read, TableRef(up, "delta", defn.uri, version, storage_options=opts), iv
    elif isinstance(defn, IcebergTableSource):
        read = SourceRead("iceberg", options=_iceberg_props(lake, defn), **common)
        uri = defn.identifier
        if not incremental and version != "empty":
            return read, TableRef(up, "iceberg", defn.identifier, version), iv
    elif (reader := cast(Any, spec.fn)) is not None:  # None: an observe-only source
        part = None
        if spec.partitions is not None and needed:
            from .step import partition_context

            part = partition_context(spec, needed)
        read = SourceRead("custom", reader=reader, partition=part, **common)
        uri = spec.defined_at
    else:
        return (
            f"source {up!r} is observe-only (it has no reader), so it cannot be an input; "
            f"list it in deps=[{up!r}] and read the data in the function, or give it a reader"
        )
    return read, TableRef(up, "source", uri, version), iv


def scan_source(lake: Any, spec: AssetSpec) -> Any:
    """A lazy Polars scan of a source as of its newest observation (``lake.scan``)."""
    import polars as pl

    from ..errors import UnknownAssetError

    st = load_states(lake, [spec.key])[spec.key]
    needed = spec.partitions.all(_utc(clock(lake))) if spec.partitions is not None else UNIT
    built = source_read(lake, spec, st, needed, None, False, "scan")
    if isinstance(built, str):
        raise UnknownAssetError(built, asset=spec.key, hint=f"run lake.observe({spec.key!r}) first")
    read = built[0]
    return pl.scan_pyarrow_dataset(read.dataset())


def _files_read(
    lake: Any,
    spec: AssetSpec,
    defn: FilesSource,
    st: SourceState,
    needed: RangeSet,
    prev: InputVersion | None,
    common: dict[str, Any],
) -> SourceRead:
    parts = spec.partitions
    indices: Iterable[int] = needed.indices() if parts is not None else (0,)
    chosen: list[tuple[str, dict[str, Any]]] = []
    after = prev.seq if (prev is not None and common["incremental"]) else None
    for p in indices:
        listing = st.files.get(p)
        if not listing:
            continue
        values = _partition_values(spec, p) if parts is not None else {}
        for path, (_size, _tag, first) in sorted(listing.items()):
            if after is None or first > after:
                chosen.append((path, values))
    schema_file = next((path for listing in st.files.values() for path in sorted(listing)), None)
    columns = _partition_values(spec, needed.min()) if parts is not None and needed else {}
    return SourceRead(
        "files",
        files=tuple(chosen),
        schema_file=schema_file,
        columns=columns,
        options=_storage_options(lake, defn.storage_options),
        **common,
    )


def _partition_values(spec: AssetSpec, p: int) -> dict[str, Any]:
    """The partition column values of partition ``p`` (one per placeholder)."""
    parts = spec.partitions
    assert parts is not None
    dims = getattr(parts, "dims", None)
    if dims:
        idx = parts.dims_of(p)  # type: ignore[attr-defined]
        return {name: d._value(idx[name]) for name, d in dims}
    return {spec.partition_column[0]: parts._value(p)}


__all__ = [
    "SourceRead",
    "SourceReads",
    "SourceState",
    "clock",
    "load_states",
    "observe",
    "observe_for_run",
    "staleness_reasons",
    "status_rows",
]
