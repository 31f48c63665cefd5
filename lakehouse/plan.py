"""Staleness: a pure function of the graph and the catalog's records (layer 3).

For every asset, its partitions (the single unit ``[0, 1)`` when unpartitioned) are
assigned at most one reason, first match wins:

1. ``never_materialized`` / ``partition_missing`` - no state for them;
2. ``code_changed`` - written by another code version;
3. ``upstream_changed`` - an input has a newer version than the one consumed
   (compared on the upstream table's monotonic sequence, per mapped partition);
4. extra reasons the caller injects (``check_failed``, ``source_changed``, ``expired``);
5. ``upstream_stale`` - an ancestor will be recomputed first (projected downstream
   through the partition mappings, so one run brings the whole graph up to date).

Everything is set algebra on ranges, never a loop over partitions.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .partitions import RangeSet, default_mapping, downstream_range, upstream_range

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl

    from .assets import AssetSpec
    from .catalog import StateRow
    from .graph import AssetGraph
    from .partitions import PartitionMapping, PartitionsDefinition

UNIT = RangeSet.of(0, 1)
EMPTY = RangeSet()

#: Extra reasons reported before the built-in ones (the last run failed a check).
LEADING_REASONS = ("check_failed",)

REASONS = (
    "never_materialized",
    "partition_missing",
    "code_changed",
    "upstream_changed",
    "check_failed",
    "source_changed",
    "expired",
    "upstream_stale",
    "forced",
)


@dataclass(frozen=True)
class PlanItem:
    """One asset range that will run, and why."""

    asset: str
    ranges: RangeSet
    reason: str
    cause: str | None

    @property
    def count(self) -> int:
        return len(self.ranges)


@dataclass
class Plan:
    """What a run would compute: items in topological order of their assets."""

    items: list[PlanItem] = field(default_factory=list)
    specs: Mapping[str, AssetSpec] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.items)

    def assets(self) -> list[str]:
        seen: dict[str, None] = {}
        for item in self.items:
            seen.setdefault(item.asset)
        return list(seen)

    def ranges(self, asset: str) -> RangeSet:
        out = RangeSet()
        for item in self.items:
            if item.asset == asset:
                out = out | item.ranges
        return out

    def describe(self, item: PlanItem) -> str | None:
        return describe_ranges(self.specs[item.asset].partitions, item.ranges)

    def to_frame(self) -> pl.DataFrame:
        import polars as pl

        items = self.items
        columns = {  # built by column: no dict per row
            "asset": [i.asset for i in items],
            "partitions": [self.describe(i) for i in items],
            "count": [i.count for i in items],
            "reason": [i.reason for i in items],
            "cause": [i.cause for i in items],
        }
        schema = {
            "asset": pl.String,
            "partitions": pl.String,
            "count": pl.Int64,
            "reason": pl.String,
            "cause": pl.String,
        }
        return pl.DataFrame(columns, schema=schema)


def describe_ranges(defn: PartitionsDefinition | None, rs: RangeSet) -> str | None:
    """Human text for a range set (``None`` for an unpartitioned asset)."""
    if defn is None:
        return None
    return defn.format_ranges(rs)


def universe(spec: AssetSpec, now: Any = None) -> RangeSet:
    """All partitions of an asset (the unit range when unpartitioned)."""
    if spec.partitions is None:
        return UNIT
    return spec.partitions.all(now)


def mapping_for(graph: AssetGraph, asset: str, upstream: str) -> PartitionMapping | None:
    """The explicit mapping of the input reading ``upstream``, if one was declared."""
    for inp, up in graph.inputs[asset]:
        if up == upstream and inp.mapping is not None:
            return inp.mapping
    return None


def map_down(
    graph: AssetGraph, upstream: str, asset: str, rs: RangeSet, now: Any = None
) -> RangeSet:
    """The partitions of ``asset`` affected by partitions ``rs`` of ``upstream``."""
    up_def = graph.specs[upstream].partitions
    down_def = graph.specs[asset].partitions
    if up_def is None and down_def is None:
        return UNIT if rs else EMPTY
    mapping = mapping_for(graph, asset, upstream) or default_mapping(up_def, down_def)
    return downstream_range(mapping, up_def, down_def, rs, now)


def map_up(graph: AssetGraph, asset: str, upstream: str, rs: RangeSet, now: Any = None) -> RangeSet:
    """The partitions of ``upstream`` that partitions ``rs`` of ``asset`` read."""
    up_def = graph.specs[upstream].partitions
    down_def = graph.specs[asset].partitions
    if up_def is None and down_def is None:
        return UNIT if rs else EMPTY
    mapping = mapping_for(graph, asset, upstream) or default_mapping(up_def, down_def)
    return upstream_range(mapping, up_def, down_def, rs, now)


def staleness(
    graph: AssetGraph,
    state: Mapping[str, Sequence[StateRow]],
    code_versions: Mapping[str, str],
    *,
    extra: Mapping[str, Sequence[tuple[RangeSet, str, str | None]]] | None = None,
    now: Any = None,
) -> dict[str, list[tuple[RangeSet, str, str | None]]]:
    """Every stale range of every asset with its reason and cause (whole graph)."""
    now_dt = _now_dt(now if now is not None else time.time())
    out: dict[str, list[tuple[RangeSet, str, str | None]]] = {}
    stale_union: dict[str, RangeSet] = {}
    seq_rows: dict[str, Sequence[StateRow]] = state
    extra = extra or {}
    specs = graph.specs
    for key in graph.order:
        spec = specs[key]
        if spec.kind == "source":  # never materialized: its readers run inside dependants' steps
            stale_union[key] = EMPTY
            continue
        uni = universe(spec, now_dt)
        rows = state.get(key, ())
        extra_here = extra.get(key, ())
        if not rows and not any(reason in LEADING_REASONS for _, reason, _ in extra_here):
            # never materialized: every partition has its first reason already
            out[key] = [(uni, "never_materialized", None)] if uni else []
            stale_union[key] = uni
            continue
        entries: list[tuple[RangeSet, str, str | None]] = []
        assigned = EMPTY
        full = False  # every partition already has a reason: later checks cannot add any

        def add(
            rs: RangeSet,
            reason: str,
            cause: str | None,
            uni: RangeSet = uni,
            entries: list[tuple[RangeSet, str, str | None]] = entries,
        ) -> None:
            nonlocal assigned, full
            if full or not rs:
                return
            rs = (rs if rs.ranges == uni.ranges else rs & uni) - assigned
            if rs:
                entries.append((rs, reason, cause))
                assigned = assigned | rs
                full = assigned == uni

        # a failed blocking check is the most useful thing to say about a partition
        for rs, reason, cause in extra_here:
            if reason in LEADING_REASONS:
                add(rs, reason, cause)
        materialized = RangeSet([(r.start, r.end) for r in rows]) if rows else EMPTY
        add(
            uni - materialized,
            "partition_missing" if (rows and spec.partitions) else "never_materialized",
            None,
        )
        cv = code_versions.get(key)
        if cv is not None:
            changed = (
                RangeSet([(r.start, r.end) for r in rows if r.code_version != cv])
                if rows
                else EMPTY
            )
            add(changed, "code_changed", key)
        for up in graph.parents[key]:
            up_rows = seq_rows.get(up, ())
            if not up_rows or full:
                continue
            for r in rows:
                consumed = next((i.seq for i in r.inputs if i.asset == up), -1)
                newer = RangeSet([(u.start, u.end) for u in up_rows if u.seq > consumed])
                if newer:
                    hit = map_down(graph, up, key, newer, now_dt) & RangeSet.of(r.start, r.end)
                    add(hit, "upstream_changed", up)
        for rs, reason, cause in extra_here:
            if reason not in LEADING_REASONS:
                add(rs, reason, cause)
        for up in graph.parents[key]:
            up_stale = stale_union.get(up)
            if up_stale and not full:
                add(map_down(graph, up, key, up_stale, now_dt), "upstream_stale", up)
        out[key] = entries
        stale_union[key] = assigned
    return out


def _now_dt(now: Any) -> Any:
    from datetime import datetime, timezone

    if isinstance(now, (int, float)):
        return datetime.fromtimestamp(now, tz=timezone.utc)
    return now


def build_plan(
    graph: AssetGraph,
    state: Mapping[str, Sequence[StateRow]],
    code_versions: Mapping[str, str],
    selected: Sequence[str],
    targets: Mapping[str, RangeSet],
    *,
    force: bool = False,
    extra: Mapping[str, Sequence[tuple[RangeSet, str, str | None]]] | None = None,
    now: Any = None,
) -> Plan:
    """What ``materialize`` runs: the stale ranges of the selected assets within ``targets``.

    ``targets`` gives the requested partitions per selected asset (default: all).
    With ``force`` every requested partition runs (reason ``forced`` where not stale).
    """
    now_dt = _now_dt(now if now is not None else time.time())
    stale = staleness(graph, state, code_versions, extra=extra, now=now_dt)
    items: list[PlanItem] = []
    specs = graph.specs
    for key in selected:
        if specs[key].kind == "source":
            continue  # observed, never materialized
        target = targets.get(key)
        covered = EMPTY
        for rs, reason, cause in stale.get(key, ()):
            # stale ranges lie within the asset's partitions: no target, no clipping
            hit = rs if target is None else rs & target
            if hit:
                items.append(PlanItem(key, hit, reason, cause))
                if force:
                    covered = covered | hit
        if force:
            rest = (target if target is not None else universe(specs[key], now_dt)) - covered
            if rest:
                items.append(PlanItem(key, rest, "forced", None))
    return Plan(items, specs)
