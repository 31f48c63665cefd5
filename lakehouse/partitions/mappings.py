"""How a downstream partition maps to upstream partitions (and back), as range algebra."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

from lakehouse.errors import PartitionError

from .definitions import (
    PartitionsDefinition,
    StaticPartitions,
    TimeLike,
    TimeWindowPartitions,
    _Box,
    _Dim,
    _dims,
    _from_boxes,
    _list_text,
    _same_instant,
    _to_boxes,
)
from .ranges import _EMPTY, RangeSet, _merge_sorted

MappingKind: TypeAlias = Literal["identity", "time_window", "offset", "all", "last"]

# --------------------------------------------------------------------------- mappings


_KINDS: tuple[str, ...] = ("identity", "time_window", "offset", "all", "last")
_MAPPING_HINT = (
    "pass an explicit mapping, e.g. ins={'x': lh.upstream('x', partitions='all')} "
    "or lh.upstream('x', offset=-1)"
)


@dataclass(frozen=True)
class PartitionMapping:
    """How a downstream asset's partitions depend on an upstream asset's.

    Kinds:
        identity: the same partition (on shared dimensions; other upstream dimensions
            are read whole, e.g. a day of ``date × region`` feeding a daily asset).
        time_window: every upstream window overlapping the downstream window.
        offset: downstream window ``d`` reads upstream ``d+start_offset .. d+end_offset``
            (inclusive, same granularity), clipped to the upstream's partitions.
        all: every upstream partition.
        last: the upstream's last partition.
    """

    kind: MappingKind
    start_offset: int = 0
    end_offset: int = 0

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise PartitionError(
                f"unknown partition mapping {self.kind!r}; use one of {', '.join(_KINDS)}"
            )
        if self.kind != "offset" and (self.start_offset or self.end_offset):
            raise PartitionError(f"a {self.kind!r} mapping takes no offsets")
        if self.start_offset > self.end_offset:
            raise PartitionError(
                f"start_offset {self.start_offset} is after end_offset {self.end_offset}"
            )

    def describe(self) -> str:
        """A short human description."""
        if self.kind != "offset":
            return self.kind
        if self.start_offset == self.end_offset:
            return f"offset {self.start_offset:+d}"
        return f"offset {self.start_offset:+d}..{self.end_offset:+d}"


@dataclass(frozen=True)
class _DimMap:
    mode: Literal["same", "key", "overlap", "shift"]
    up: _Dim
    down: _Dim
    shift: int = 0
    lo: int = 0
    hi: int = 0

    def to_up(self, rs: RangeSet, now: TimeLike | None) -> RangeSet:
        valid = self.up.all(now)
        if self.mode == "same":
            return rs & valid
        if self.mode == "shift":
            k = self.shift
            moved = ((s + k + self.lo, e + k + self.hi) for s, e in rs.ranges)
            return RangeSet._raw(_merge_sorted(moved)) & valid
        if self.mode == "overlap":
            return _overlap(self.down, self.up, rs) & valid
        return _by_key(self.down, self.up, rs)

    def to_down(self, rs: RangeSet, now: TimeLike | None) -> RangeSet:
        valid = self.down.all(now)
        if self.mode == "same":
            return rs & valid
        if self.mode == "shift":
            k = self.shift
            moved = ((s - k - self.hi, e - k - self.lo) for s, e in rs.ranges)
            return RangeSet._raw(_merge_sorted(moved)) & valid
        if self.mode == "overlap":
            return _overlap(self.up, self.down, rs) & valid
        return _by_key(self.up, self.down, rs)


def _overlap(src: _Dim, dst: _Dim, rs: RangeSet) -> RangeSet:
    """Windows of ``dst`` overlapping the windows ``rs`` of ``src``."""
    assert isinstance(src, TimeWindowPartitions) and isinstance(dst, TimeWindowPartitions)
    out = []
    for s, e in rs.ranges:
        a = dst.index_of_time(src._start_of(s))
        b = dst._ceil_index(src._start_of(e))
        out.append((a, b))
    return RangeSet(out)


def _by_key(src: _Dim, dst: _Dim, rs: RangeSet) -> RangeSet:
    assert isinstance(src, StaticPartitions) and isinstance(dst, StaticPartitions)
    keys = (src.values[i] for i in rs.indices() if 0 <= i < len(src.values))
    return RangeSet.from_indices(dst._pos[v] for v in keys if v in dst._pos)


def _time_map(
    kind: str, m: PartitionMapping, up: TimeWindowPartitions, down: TimeWindowPartitions
) -> _DimMap:
    if kind != "offset" and up == down:
        return _DimMap("same", up, down)
    aligned = up.granularity == down.granularity and (
        up.granularity == "hourly" or up.timezone == down.timezone
    )
    shift = up.index_of_time(down._start_of(0)) if aligned else 0
    aligned = aligned and _same_instant(up._start_of(shift), down._start_of(0))
    if aligned:
        return _DimMap("shift", up, down, shift, m.start_offset, m.end_offset)
    if kind == "time_window":
        return _DimMap("overlap", up, down)
    raise PartitionError(
        f"a {m.describe()!r} mapping needs time windows of one granularity that line up; "
        f"upstream is {up.describe()}, downstream is {down.describe()}",
        hint="use time_window (the default) to map different granularities",
    )


def _pair(
    m: PartitionMapping, up: PartitionsDefinition, down: PartitionsDefinition
) -> list[tuple[int, int, _DimMap]]:
    """Match the dimensions of ``up`` and ``down`` and say how each pair maps."""
    ud, dd = _dims(up), _dims(down)
    single = len(ud) == 1 and len(dd) == 1
    used: set[int] = set()
    pairs: list[tuple[int, int, _DimMap]] = []
    for di, (dname, ddef) in enumerate(dd):
        for ui, (uname, udef) in enumerate(ud):
            if ui in used:
                continue
            if isinstance(ddef, TimeWindowPartitions) and isinstance(udef, TimeWindowPartitions):
                pairs.append((ui, di, _time_map(m.kind, m, udef, ddef)))
            elif (
                isinstance(ddef, StaticPartitions)
                and isinstance(udef, StaticPartitions)
                and (single or udef == ddef or (uname is not None and uname == dname))
            ):
                pairs.append((ui, di, _DimMap("same" if udef == ddef else "key", udef, ddef)))
            else:
                continue
            used.add(ui)
            break
    if not pairs:
        raise PartitionError(
            f"cannot map {down.describe()} onto {up.describe()}: they share no dimension",
            hint=_MAPPING_HINT,
        )
    if m.kind == "offset" and not any(p[2].mode == "shift" for p in pairs):
        raise PartitionError(
            "an offset mapping needs time windows on both sides", hint=_MAPPING_HINT
        )
    return pairs


def validate_mapping(
    mapping: PartitionMapping,
    upstream_def: PartitionsDefinition | None,
    downstream_def: PartitionsDefinition | None,
    *,
    asset: str | None = None,
) -> None:
    """Raise PartitionError (naming ``asset``) if ``mapping`` cannot relate the two."""
    try:
        if mapping.kind in ("all", "last"):
            return
        if upstream_def is None or downstream_def is None:
            if upstream_def is None and downstream_def is None:
                return
            raise PartitionError(
                f"a {mapping.describe()!r} mapping needs partitions on both sides; "
                f"upstream is {_describe(upstream_def)}, downstream is {_describe(downstream_def)}",
                hint="leave the mapping out: an unpartitioned side maps to 'all'",
            )
        _pair(mapping, upstream_def, downstream_def)
    except PartitionError as exc:
        if asset is None or exc.asset:
            raise
        raise PartitionError(
            exc.message, asset=asset, partition=exc.partition, hint=exc.hint
        ) from None


def _describe(defn: PartitionsDefinition | None) -> str:
    return "unpartitioned" if defn is None else defn.describe()


def default_mapping(
    upstream: PartitionsDefinition | None, downstream: PartitionsDefinition | None
) -> PartitionMapping:
    """The mapping used when an input names none.

    Equal definitions (or both unpartitioned) map by identity; an unpartitioned side maps
    to ``all``; time windows of different definitions map by ``time_window`` overlap
    (multi-dimensional definitions through their time dimension, reading every value of
    a dimension the other side lacks); two static sets map by key when every downstream
    key exists upstream. Anything else raises PartitionError asking for an explicit one.
    """
    if upstream == downstream:
        return PartitionMapping("identity")
    if upstream is None or downstream is None:
        return PartitionMapping("all")
    pairs = _pair(PartitionMapping("time_window"), upstream, downstream)
    for _, _, dm in pairs:
        if dm.mode == "key":
            assert isinstance(dm.up, StaticPartitions) and isinstance(dm.down, StaticPartitions)
            missing = [v for v in dm.down.values if v not in dm.up._pos]
            if missing:
                raise PartitionError(
                    f"downstream keys {_list_text(missing)} do not exist upstream "
                    f"({dm.up.describe()})",
                    hint=_MAPPING_HINT,
                )
    if any(isinstance(dm.up, TimeWindowPartitions) for _, _, dm in pairs):
        return PartitionMapping("time_window")
    return PartitionMapping("identity")


def _unit(defn: PartitionsDefinition | None, now: TimeLike | None) -> RangeSet:
    return RangeSet.of(0, 1) if defn is None else defn.all(now)


def upstream_range(
    mapping: PartitionMapping,
    upstream_def: PartitionsDefinition | None,
    downstream_def: PartitionsDefinition | None,
    downstream_rs: RangeSet,
    now: TimeLike | None = None,
    *,
    asset: str | None = None,
) -> RangeSet:
    """The upstream partitions that the downstream partitions ``downstream_rs`` read.

    An unpartitioned side is the single unit ``RangeSet.of(0, 1)``. The result is clipped
    to the upstream partitions that exist at ``now``.
    """
    if not downstream_rs:
        return _EMPTY
    if upstream_def is None:
        validate_mapping(mapping, upstream_def, downstream_def, asset=asset)
        return RangeSet.of(0, 1)
    if mapping.kind == "all":
        return upstream_def.all(now)
    if mapping.kind == "last":
        valid = upstream_def.all(now)
        return RangeSet.of(valid.max(), valid.max() + 1) if valid else _EMPTY
    validate_mapping(mapping, upstream_def, downstream_def, asset=asset)
    assert downstream_def is not None
    pairs = _pair(mapping, upstream_def, downstream_def)
    ud = _dims(upstream_def)
    boxes: list[_Box] = []
    for box in _to_boxes(downstream_def, downstream_rs):
        parts = [d.all(now) for _, d in ud]
        for ui, di, dm in pairs:
            parts[ui] = dm.to_up(box[di], now)
        if all(parts):
            boxes.append(tuple(parts))
    return _from_boxes(upstream_def, boxes)


def downstream_range(
    mapping: PartitionMapping,
    upstream_def: PartitionsDefinition | None,
    downstream_def: PartitionsDefinition | None,
    upstream_rs: RangeSet,
    now: TimeLike | None = None,
    *,
    asset: str | None = None,
) -> RangeSet:
    """The downstream partitions affected when the upstream partitions ``upstream_rs`` change.

    An unpartitioned side is the single unit ``RangeSet.of(0, 1)``. The result is clipped
    to the downstream partitions that exist at ``now``.
    """
    if not upstream_rs:
        return _EMPTY
    if mapping.kind == "last" and upstream_def is not None:
        valid = upstream_def.all(now)
        return _unit(downstream_def, now) if valid and valid.max() in upstream_rs else _EMPTY
    if mapping.kind == "all" or upstream_def is None or downstream_def is None:
        validate_mapping(mapping, upstream_def, downstream_def, asset=asset)
        return _unit(downstream_def, now)
    validate_mapping(mapping, upstream_def, downstream_def, asset=asset)
    pairs = _pair(mapping, upstream_def, downstream_def)
    dd = _dims(downstream_def)
    boxes: list[_Box] = []
    for box in _to_boxes(upstream_def, upstream_rs):
        parts = [d.all(now) for _, d in dd]
        for ui, di, dm in pairs:
            parts[di] = dm.to_down(box[ui], now)
        if all(parts):
            boxes.append(tuple(parts))
    return _from_boxes(downstream_def, boxes)


@dataclass(frozen=True)
class Upstream:
    """An input declaration: which asset, through which mapping (None: the default)."""

    asset: str
    mapping: PartitionMapping | None = None
    since_last_run: bool = False


def upstream(
    asset: str,
    *,
    offset: int | None = None,
    start_offset: int | None = None,
    end_offset: int | None = None,
    partitions: Literal["all", "last"] | None = None,
    since_last_run: bool = False,
) -> Upstream:
    """Declare an input with an explicit partition mapping.

    ``offset=-1`` reads the previous window (yesterday for a daily asset);
    ``start_offset=-6, end_offset=0`` reads a trailing window of seven (a missing side
    defaults to 0); ``partitions="all"`` or ``"last"`` read every / the latest partition.

    Example:
        >>> upstream("events", offset=-1).mapping
        PartitionMapping(kind='offset', start_offset=-1, end_offset=-1)
    """
    if not isinstance(asset, str) or not asset:
        raise PartitionError(f"upstream() needs an asset name, not {asset!r}")
    has_window = start_offset is not None or end_offset is not None
    if offset is not None and has_window:
        raise PartitionError(
            "give either offset or start_offset/end_offset, not both",
            asset=asset,
            hint="offset=N reads one window; start_offset/end_offset read a span",
        )
    if partitions is not None and (offset is not None or has_window):
        raise PartitionError(f"partitions={partitions!r} takes no offsets", asset=asset)
    try:
        if partitions is not None:
            if partitions not in ("all", "last"):
                raise PartitionError(f"partitions must be 'all' or 'last', not {partitions!r}")
            mapping: PartitionMapping | None = PartitionMapping(partitions)
        elif offset is not None:
            mapping = PartitionMapping("offset", offset, offset)
        elif has_window:
            mapping = PartitionMapping("offset", start_offset or 0, end_offset or 0)
        else:
            mapping = None
    except PartitionError as exc:
        raise PartitionError(exc.message, asset=asset, hint=exc.hint) from None
    return Upstream(asset, mapping, since_last_run)


