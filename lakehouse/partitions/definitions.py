"""Partition definitions (time windows, static values, two dimensions), their keys, and
their decomposition of index ranges into per-dimension boxes."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from typing import Literal, TypeAlias, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from lakehouse.errors import PartitionError

from .ranges import RangeSet

_UTC = timezone.utc
_HOUR = timedelta(hours=1)

TimeLike: TypeAlias = str | date | datetime
"""A point in time: a datetime, a date (its midnight), or an ISO string."""

Granularity: TypeAlias = Literal["hourly", "daily", "weekly", "monthly"]


# --------------------------------------------------------------------------- helpers


def _zone(name: str) -> tzinfo:
    if not isinstance(name, str) or not name:
        raise PartitionError(f"timezone must be an IANA name like 'Europe/Berlin', not {name!r}")
    if name == "UTC":
        return _UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise PartitionError(
            f"unknown timezone {name!r}",
            hint="use an IANA name like 'UTC' or 'Europe/Berlin' (or pip install tzdata)",
        ) from exc


def _midnight(d: date, tz: tzinfo) -> datetime:
    """The first instant of local date ``d`` (a skipped midnight becomes the day's start)."""
    return datetime(d.year, d.month, d.day, tzinfo=tz).astimezone(_UTC).astimezone(tz)


_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MONTH_RE = re.compile(r"^(\d{4})-(\d{2})$")
_OFFSET_RE = re.compile(r"([+-])(\d\d):?(\d\d)$")


def _to_utc(value: object, tz: tzinfo, what: str = "time") -> datetime:
    """Read a TimeLike as an aware UTC datetime; naive values are wall-clock time in ``tz``."""
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        return _midnight(value, tz).astimezone(_UTC)
    elif isinstance(value, str):
        text = value.strip()
        month = _MONTH_RE.match(text)
        try:
            if month:
                return _midnight(date(int(month[1]), int(month[2]), 1), tz).astimezone(_UTC)
            if text[-1:] in ("Z", "z"):
                text = text[:-1] + "+00:00"
            dt = datetime.fromisoformat(text)
        except (ValueError, IndexError) as exc:
            raise PartitionError(
                f"cannot read {what} {value!r} as a date or time",
                hint="write it like '2013-01-01', '2013-01-01T06:00' or '2013-01-01T06:00+00:00'",
            ) from exc
        if _DATE_RE.match(text):
            return _midnight(dt.date(), tz).astimezone(_UTC)
    else:
        raise PartitionError(
            f"{what} must be a datetime, a date or an ISO string, not {type(value).__name__}"
        )
    if dt.tzinfo is None or dt.utcoffset() is None:
        dt = dt.replace(tzinfo=tz)
    return dt.astimezone(_UTC)


def _now_utc(now: TimeLike | None, tz: tzinfo) -> datetime:
    return datetime.now(_UTC) if now is None else _to_utc(now, tz, "now")


def _check_key_text(text: str, what: str) -> None:
    for bad in ("|", ",", ".."):
        if bad in text:
            raise PartitionError(
                f"{what} {text!r} contains {bad!r}, which partition selections use as a separator",
                hint="choose keys without '|', ',' or '..'",
            )


def _list_text(values: Sequence[str], limit: int = 8) -> str:
    if len(values) <= limit:
        return ", ".join(values)
    head = ", ".join(values[: limit - 1])
    return f"{head}, ..., {values[-1]} ({len(values)} values)"


class _BadKey(Exception):
    """Internal: a key that does not name a partition; the text says why."""


# --------------------------------------------------------------------------- definitions


@dataclass(frozen=True)
class PartitionsDefinition(ABC):
    """Base of every partitions definition: maps keys to indices ``0..N-1`` and back."""

    @abstractmethod
    def key(self, i: int) -> str:
        """The key of partition ``i``; PartitionError when no such partition can exist."""

    @abstractmethod
    def index(self, key: str, *, now: TimeLike | None = None, asset: str | None = None) -> int:
        """The index of ``key``; PartitionError naming the key and the valid keys when it
        cannot be read or is not a current partition (open-ended time partitions exist up
        to ``now``, default the current time)."""

    @abstractmethod
    def count(self, now: TimeLike | None = None) -> int:
        """The number of partitions that exist at ``now`` (default: the current time)."""

    @abstractmethod
    def describe(self) -> str:
        """A short human description."""

    @abstractmethod
    def _value(self, i: int) -> object:
        """The partition column value(s) of index ``i``."""

    @abstractmethod
    def _valid_span(self, now: TimeLike | None) -> str:
        """The valid keys as short text, like '2013-01-01..2013-12-31' or 'eu, us'."""

    def all(self, now: TimeLike | None = None) -> RangeSet:
        """Every partition that exists at ``now``."""
        return RangeSet.of(0, self.count(now))

    def keys(self, rs: RangeSet | None = None, now: TimeLike | None = None) -> Iterator[str]:
        """The keys of ``rs`` (default: all) in index order."""
        for i in (self.all(now) if rs is None else rs).indices():
            yield self.key(i)

    def _valid_text(self, now: TimeLike | None) -> str:
        return f"valid keys are {self._valid_span(now)}"

    def parse(
        self,
        selection: str | Iterable[str] | RangeSet,
        *,
        asset: str | None = None,
        now: TimeLike | None = None,
    ) -> RangeSet:
        """Read a selection of partitions.

        Accepts ``"all"``, a key, an inclusive range ``"first..last"`` (by position for
        static and multi-dimensional partitions), a comma-separated list of those, a list
        of those, or a RangeSet (checked to lie inside the valid partitions). The empty
        string selects nothing, so ``parse(format_ranges(rs)) == rs`` always holds.

        Raises:
            PartitionError: naming the asset, the offending key and the valid keys.
        """
        valid = self.all(now)
        if isinstance(selection, RangeSet):
            extra = selection - valid
            if extra:
                raise PartitionError(
                    f"indices {extra.ranges} are outside the partitions; {self._valid_text(now)}",
                    asset=asset,
                )
            return selection
        if isinstance(selection, str):
            items = [selection] if selection.strip() else []  # "" is the empty selection
        elif isinstance(selection, Iterable):
            items = list(selection)
        else:
            raise PartitionError(
                f"a partition selection must be a key, a list of keys or 'all', not "
                f"{type(selection).__name__}",
                asset=asset,
            )
        out: list[tuple[int, int]] = []
        for item in items:
            if not isinstance(item, str):
                raise PartitionError(
                    f"partition keys must be strings, not {type(item).__name__} ({item!r})",
                    asset=asset,
                )
            for part in item.split(","):
                part = part.strip()
                if not part:
                    raise PartitionError(
                        f"empty partition key in selection {item!r}; {self._valid_text(now)}",
                        asset=asset,
                        partition=item,
                    )
                if part == "all":
                    out.extend(valid.ranges)
                elif ".." in part:
                    first, last = (p.strip() for p in part.split("..", 1))
                    a = self.index(first, now=now, asset=asset)
                    b = self.index(last, now=now, asset=asset)
                    if a > b:
                        raise PartitionError(
                            f"range '{part}' runs backwards",
                            asset=asset,
                            partition=part,
                            hint=f"write the earlier key first: '{last}..{first}'",
                        )
                    out.extend((RangeSet.of(a, b + 1) & valid).ranges)
                else:
                    i = self.index(part, now=now, asset=asset)
                    out.append((i, i + 1))
        return RangeSet(out)

    def format_ranges(self, rs: RangeSet, *, max_ranges: int | None = None) -> str:
        """Render ``rs`` as ``'first..last, key, ...'`` (inclusive keys), parseable by
        :meth:`parse`. With ``max_ranges``, ranges beyond it are summarized."""
        shown = rs.ranges if max_ranges is None else rs.ranges[:max_ranges]
        parts = [
            self.key(s) if e - s == 1 else f"{self.key(s)}..{self.key(e - 1)}" for s, e in shown
        ]
        if len(shown) < len(rs.ranges):
            rest = RangeSet._raw(rs.ranges[len(shown) :])
            parts.append(f"... and {len(rest)} more in {len(rest.ranges)} ranges")
        return ", ".join(parts)

    def _out_of_range(self, key: str, now: TimeLike | None, asset: str | None) -> PartitionError:
        return PartitionError(
            f"'{key}' is outside the partitions; {self._valid_text(now)}",
            asset=asset,
            partition=key,
            hint="pick a key inside the definition, or widen the asset's partitions",
        )


_GRANULARITIES: tuple[str, ...] = ("hourly", "daily", "weekly", "monthly")
_DEFAULT_FMT: dict[str, str] = {
    "hourly": "%Y-%m-%d-%H:%M",
    "daily": "%Y-%m-%d",
    "weekly": "%Y-%m-%d",
    "monthly": "%Y-%m",
}
_EXAMPLE: dict[str, str] = {
    "hourly": "2013-01-05-14:00",
    "daily": "2013-01-05",
    "weekly": "2013-01-07 (a Monday)",
    "monthly": "2013-01",
}


@dataclass(frozen=True, eq=False)
class TimeWindowPartitions(PartitionsDefinition):
    """Consecutive time windows of one granularity; see the module docstring.

    Build with :func:`hourly`, :func:`daily`, :func:`weekly` or :func:`monthly`. ``start``
    and ``end`` are stored aligned to window boundaries, as aware datetimes in
    ``timezone``; ``end`` is exclusive, ``None`` means open-ended (up to now).
    """

    granularity: Granularity
    start: datetime
    end: datetime | None = None
    timezone: str = "UTC"
    fmt: str = ""
    _tz: tzinfo = field(init=False, repr=False, compare=False)
    _start_utc: datetime = field(init=False, repr=False, compare=False)
    _anchor: int = field(init=False, repr=False, compare=False)
    _size: int | None = field(init=False, repr=False, compare=False)

    def _identity(self) -> tuple[object, ...]:
        end = None if self.end is None else self.end.astimezone(_UTC)
        return (self.granularity, self._start_utc, end, self.timezone, self.fmt)

    # Python compares aware datetimes that share a tzinfo by wall-clock time, which cannot
    # tell apart the two hours of a daylight-saving fall-back: compare instants instead.
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TimeWindowPartitions):
            return NotImplemented
        return self._identity() == other._identity()

    def __hash__(self) -> int:
        return hash(self._identity())

    def __post_init__(self) -> None:
        g = self.granularity
        if g not in _GRANULARITIES:
            raise PartitionError(
                f"unknown granularity {g!r}; use one of {', '.join(_GRANULARITIES)}"
            )
        tz = _zone(self.timezone)
        fmt = self.fmt or _DEFAULT_FMT[g]
        _check_key_text(fmt, "key format")
        setter = object.__setattr__
        setter(self, "_tz", tz)
        setter(self, "fmt", fmt)
        setter(self, "_size", None)
        first = _to_utc(self.start, tz, "start")
        local = first.astimezone(tz)
        setter(self, "_anchor", 0)
        if g == "hourly":
            floor = local.replace(minute=0, second=0, microsecond=0).astimezone(_UTC)
            setter(self, "_start_utc", floor if floor >= first else floor + _HOUR)
        else:
            d = local.date()
            if _midnight(d, tz) < first:
                d += timedelta(days=1)
            if g == "weekly":
                d += timedelta(days=(7 - d.weekday()) % 7)
            if g == "monthly":
                months = d.year * 12 + d.month - 1 + (d.day != 1)
                setter(self, "_anchor", months)
            else:
                setter(self, "_anchor", d.toordinal())
            setter(self, "_start_utc", self._start_of(0).astimezone(_UTC))
        setter(self, "start", self._start_of(0))
        if self.end is not None:
            size = self.index_of_time(_to_utc(self.end, tz, "end"))
            if size <= 0:
                raise PartitionError(
                    f"end {self.end!s} leaves no complete {g} window after the first one, "
                    f"{self.key(0)}",
                    hint="end is exclusive: make it at least one window after start",
                )
            setter(self, "_size", size)
            setter(self, "end", self._start_of(size))
        try:
            ok = self._locate(self._format(0)) == 0 and self._locate(self._format(1)) == 1
        except _BadKey:
            ok = False
        if not ok:
            raise PartitionError(f"key format {fmt!r} does not identify {g} windows uniquely")

    # -- windows
    def _start_of(self, i: int) -> datetime:
        g = self.granularity
        try:
            if g == "hourly":
                return (self._start_utc + i * _HOUR).astimezone(self._tz)
            if g == "daily":
                return _midnight(date.fromordinal(self._anchor + i), self._tz)
            if g == "weekly":
                return _midnight(date.fromordinal(self._anchor + 7 * i), self._tz)
            year, month = divmod(self._anchor + i, 12)
            return _midnight(date(year, month + 1, 1), self._tz)
        except (ValueError, OverflowError) as exc:
            raise PartitionError(f"{g} partition index {i} is outside the supported dates") from exc

    def window(self, i: int) -> tuple[datetime, datetime]:
        """The ``[start, end)`` of window ``i`` as aware datetimes in the definition's
        time zone. Any integer is accepted (no range check).

        Python subtracts and compares aware datetimes that share a tzinfo as wall-clock
        times; convert to UTC (``.astimezone(timezone.utc)``) before doing arithmetic
        across a daylight-saving change."""
        return self._start_of(i), self._start_of(i + 1)

    def window_of(self, rs: RangeSet) -> tuple[datetime, datetime]:
        """The overall ``[start, end)`` spanned by ``rs``."""
        if not rs:
            raise PartitionError("window_of() needs at least one partition")
        return self._start_of(rs.min()), self._start_of(rs.max() + 1)

    def index_of_time(self, dt: TimeLike) -> int:
        """The index of the window containing ``dt`` (may be outside ``0..N-1``)."""
        t = _to_utc(dt, self._tz)
        g = self.granularity
        if g == "hourly":
            return (t - self._start_utc) // _HOUR
        d = t.astimezone(self._tz).date()
        if g == "daily":
            return d.toordinal() - self._anchor
        if g == "weekly":
            return (d.toordinal() - self._anchor) // 7
        return d.year * 12 + d.month - 1 - self._anchor

    def _ceil_index(self, dt: datetime) -> int:
        """The index of the first window starting at or after ``dt``."""
        i = self.index_of_time(dt)
        return i if _same_instant(self._start_of(i), dt) else i + 1

    @property
    def size(self) -> int | None:
        """The number of windows before ``end`` regardless of now; None if open-ended."""
        return self._size

    def count(self, now: TimeLike | None = None) -> int:
        n = max(0, self.index_of_time(_now_utc(now, self._tz)))
        return n if self._size is None else min(n, self._size)

    # -- keys
    def key(self, i: int) -> str:
        if i < 0 or (self._size is not None and i >= self._size):
            raise PartitionError(
                f"{self.granularity} partition index {i} is outside the definition "
                f"({self.describe()})"
            )
        return self._format(i)

    def _format(self, i: int) -> str:
        start = self._start_of(i)
        text = start.strftime(self.fmt)
        if self.granularity == "hourly" and _ambiguous(start):
            text += _offset_text(start)
        return text

    def _strptime(self, text: str) -> tuple[datetime, timedelta | None]:
        fmts = [self.fmt]
        if self.granularity == "hourly" and self.fmt == _DEFAULT_FMT["hourly"]:
            fmts += ["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"]
        for candidate, offset in self._split_offset(text):
            for f in fmts:
                try:
                    return datetime.strptime(candidate, f), offset
                except ValueError:
                    pass
        raise _BadKey(
            f"it is not a {self.granularity} key (expected like {_EXAMPLE[self.granularity]})"
        )

    def _split_offset(self, text: str) -> list[tuple[str, timedelta | None]]:
        out: list[tuple[str, timedelta | None]] = [(text, None)]
        m = _OFFSET_RE.search(text)
        if self.granularity == "hourly" and m:
            sign = -1 if m[1] == "-" else 1
            out.append((text[: m.start()], sign * timedelta(hours=int(m[2]), minutes=int(m[3]))))
        return out

    def _locate(self, key: str) -> int:
        naive, offset = self._strptime(key.strip())
        g = self.granularity
        if g == "hourly":
            if offset is not None:  # an explicit offset names an instant
                aware = naive.replace(tzinfo=timezone(offset))
            else:
                aware = naive.replace(tzinfo=self._tz)
                if aware.astimezone(_UTC).astimezone(self._tz).replace(tzinfo=None) != naive:
                    raise _BadKey(
                        f"that time does not exist in {self.timezone} (skipped by a clock change)"
                    )
            delta = aware.astimezone(_UTC) - self._start_utc
            if delta % _HOUR:
                raise _BadKey("it is not the start of an hourly window")
            return delta // _HOUR
        if naive.time() != time(0):
            raise _BadKey(f"{g} keys carry no time of day")
        d = naive.date()
        if g == "daily":
            return d.toordinal() - self._anchor
        if g == "weekly":
            if d.weekday() != 0:
                raise _BadKey(f"it is a {d:%A}; weekly partitions start on Mondays")
            return (d.toordinal() - self._anchor) // 7
        if d.day != 1:
            raise _BadKey("monthly partitions start on the first day of a month")
        return d.year * 12 + d.month - 1 - self._anchor

    def index(self, key: str, *, now: TimeLike | None = None, asset: str | None = None) -> int:
        try:
            i = self._locate(key)
        except _BadKey as exc:
            raise PartitionError(
                f"'{key}' is not a valid partition key: {exc}; {self._valid_text(now)}",
                asset=asset,
                partition=key,
                hint=f"{self.granularity} keys look like {_EXAMPLE[self.granularity]}",
            ) from None
        if not 0 <= i < self.count(now):
            raise self._out_of_range(key, now, asset)
        return i

    def _valid_span(self, now: TimeLike | None) -> str:
        n = self.count(now)
        if n == 0:
            return (
                f"none yet (the first, {self.key(0)}, is complete at "
                f"{self._start_of(1).isoformat()})"
            )
        return self.key(0) if n == 1 else f"{self.key(0)}..{self.key(n - 1)}"

    def describe(self) -> str:
        tz = self.timezone
        if self._size is None:
            return f"{self.granularity} from {self.key(0)}, open-ended ({tz})"
        span = f"{self.key(0)}..{self.key(self._size - 1)}"
        return f"{self.granularity} {span} ({self._size} partitions, {tz})"

    def _value(self, i: int) -> object:
        start = self._start_of(i)
        return start.astimezone(_UTC) if self.granularity == "hourly" else start.date()


def _same_instant(a: datetime, b: datetime) -> bool:
    # aware datetimes sharing a tzinfo compare as wall-clock times (fold ignored): use UTC
    return a.astimezone(_UTC) == b.astimezone(_UTC)


def _ambiguous(dt: datetime) -> bool:
    return dt.replace(fold=1 - dt.fold).utcoffset() != dt.utcoffset()


def _offset_text(dt: datetime) -> str:
    off = dt.utcoffset() or timedelta(0)
    sign = "-" if off < timedelta(0) else "+"
    minutes = abs(off) // timedelta(minutes=1)
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


@dataclass(frozen=True)
class StaticPartitions(PartitionsDefinition):
    """A fixed, ordered set of string keys; index ``i`` is ``values[i]``."""

    values: tuple[str, ...]
    _pos: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        given: object = self.values
        if isinstance(given, str) or not isinstance(given, Iterable):
            raise PartitionError(f"static partitions need a list of keys, not {given!r}")
        values = tuple(given)
        if not values:
            raise PartitionError(
                "static partitions need at least one key", hint="e.g. lh.static(['eu', 'us'])"
            )
        pos: dict[str, int] = {}
        for v in values:
            if not isinstance(v, str) or not v or v != v.strip():
                raise PartitionError(
                    f"static partition key {v!r} must be a non-empty string without "
                    "leading or trailing spaces"
                )
            _check_key_text(v, "static partition key")
            if v in pos:
                raise PartitionError(f"static partition key {v!r} appears twice")
            pos[v] = len(pos)
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "_pos", pos)

    def key(self, i: int) -> str:
        if not 0 <= i < len(self.values):
            raise PartitionError(f"static partition index {i} is outside 0..{len(self.values) - 1}")
        return self.values[i]

    def index(self, key: str, *, now: TimeLike | None = None, asset: str | None = None) -> int:
        i = self._pos.get(key.strip()) if isinstance(key, str) else None
        if i is None:
            raise self._out_of_range(key, now, asset)
        return i

    def count(self, now: TimeLike | None = None) -> int:
        return len(self.values)

    def _valid_span(self, now: TimeLike | None) -> str:
        return _list_text(self.values)

    def describe(self) -> str:
        return f"static {_list_text(self.values, 5)}"

    def _value(self, i: int) -> object:
        return self.key(i)


_Dim: TypeAlias = TimeWindowPartitions | StaticPartitions


@dataclass(frozen=True)
class MultiPartitions(PartitionsDefinition):
    """Two dimensions, at most one of them time windows.

    Index ``i = outer * inner_size + inner`` where the first dimension is outer, so a
    contiguous range of the first dimension over every value of the second is one index
    range. Keys join the dimension keys in order with ``|``: ``'2013-01-05|eu'``. A time
    dimension that comes second must have an ``end`` so the layout never moves.
    """

    dims: tuple[tuple[str, PartitionsDefinition], ...]
    _inner_size: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        dims = tuple((name, d) for name, d in self.dims)
        if len(dims) != 2:
            raise PartitionError(
                f"multi-dimensional partitions need exactly two dimensions, got {len(dims)}"
            )
        names = [n for n, _ in dims]
        if len(set(names)) != 2:
            raise PartitionError(f"dimension names must differ, got {names}")
        for name, d in dims:
            if not isinstance(name, str) or not name.isidentifier():
                raise PartitionError(f"dimension name {name!r} must be an identifier")
            if not isinstance(d, (TimeWindowPartitions, StaticPartitions)):
                raise PartitionError(
                    f"dimension {name!r} must be time windows or static partitions, "
                    f"not {type(d).__name__}"
                )
        if all(isinstance(d, TimeWindowPartitions) for _, d in dims):
            raise PartitionError("at most one dimension may be time windows")
        inner = dims[1][1]
        if isinstance(inner, TimeWindowPartitions):
            if inner.size is None:
                raise PartitionError(
                    f"the second dimension {dims[1][0]!r} is open-ended time windows",
                    hint="put the time dimension first, or give it an end",
                )
            size = inner.size
        else:
            size = inner.count()
        object.__setattr__(self, "dims", dims)
        object.__setattr__(self, "_inner_size", size)

    @property
    def names(self) -> tuple[str, str]:
        """The dimension names in order (outer, inner)."""
        return self.dims[0][0], self.dims[1][0]

    @property
    def inner_size(self) -> int:
        """The index stride of the outer dimension."""
        return self._inner_size

    @property
    def time_dim(self) -> tuple[str, TimeWindowPartitions] | None:
        """``(name, definition)`` of the time dimension, if there is one."""
        for name, d in self.dims:
            if isinstance(d, TimeWindowPartitions):
                return name, d
        return None

    def _split(self, i: int) -> tuple[int, int]:
        return divmod(i, self._inner_size)

    def dims_of(self, i: int) -> dict[str, int]:
        """The per-dimension indices of index ``i``."""
        o, n = self._split(i)
        return {self.dims[0][0]: o, self.dims[1][0]: n}

    def index_of_dims(self, dims: Mapping[str, int]) -> int:
        """The index of per-dimension indices (no validity check)."""
        return dims[self.dims[0][0]] * self._inner_size + dims[self.dims[1][0]]

    def key(self, i: int) -> str:
        o, n = self._split(i)
        return f"{self.dims[0][1].key(o)}|{self.dims[1][1].key(n)}"

    def split_key(self, key: str) -> dict[str, str]:
        """``{dimension: key}`` of a multi key (not validated beyond its shape)."""
        parts = key.split("|")
        if len(parts) != 2:
            raise PartitionError(
                f"'{key}' is not a key of the form '<{self.dims[0][0]}>|<{self.dims[1][0]}>'",
                partition=key,
            )
        return {self.dims[0][0]: parts[0].strip(), self.dims[1][0]: parts[1].strip()}

    def index(self, key: str, *, now: TimeLike | None = None, asset: str | None = None) -> int:
        try:
            parts = self.split_key(key)
        except PartitionError:
            raise PartitionError(
                f"'{key}' is not a valid partition key; {self._valid_text(now)}",
                asset=asset,
                partition=key,
            ) from None
        idx: dict[str, int] = {}
        for name, d in self.dims:
            try:
                idx[name] = d.index(parts[name], now=now)
            except PartitionError:
                raise PartitionError(
                    f"'{key}' is outside the partitions ({name} '{parts[name]}'); "
                    f"{self._valid_text(now)}",
                    asset=asset,
                    partition=key,
                ) from None
        return self.index_of_dims(idx)

    def count(self, now: TimeLike | None = None) -> int:
        return self.dims[0][1].count(now) * self.dims[1][1].count(now)

    def all(self, now: TimeLike | None = None) -> RangeSet:
        outer, inner, n = self.dims[0][1].count(now), self.dims[1][1].count(now), self._inner_size
        if inner == n:
            return RangeSet.of(0, outer * n)
        return RangeSet._raw(tuple((o * n, o * n + inner) for o in range(outer)) if inner else ())

    def window_of(self, rs: RangeSet) -> tuple[datetime, datetime]:
        """The ``[start, end)`` spanned by the time dimension of ``rs``."""
        td = self.time_dim
        if td is None:
            raise PartitionError(f"{self.describe()} has no time dimension")
        pos = 0 if td[0] == self.dims[0][0] else 1
        times = RangeSet(r for box in _to_boxes(self, rs) for r in box[pos])
        return td[1].window_of(times)

    def _valid_span(self, now: TimeLike | None) -> str:
        (a, da), (b, db) = self.dims
        return f"'<{a}>|<{b}>' with {a} in {da._valid_span(now)} and {b} in {db._valid_span(now)}"

    def describe(self) -> str:
        (a, da), (b, db) = self.dims
        return f"{a}: {da.describe()} × {b}: {db.describe()}"

    def _value(self, i: int) -> object:
        o, n = self._split(i)
        return (self.dims[0][1]._value(o), self.dims[1][1]._value(n))


# --------------------------------------------------------------------------- factories


def _time(
    granularity: Granularity,
    start: TimeLike,
    end: TimeLike | None,
    timezone: str,
    fmt: str | None,
) -> TimeWindowPartitions:
    tz = _zone(timezone)
    first = _to_utc(start, tz, "start").astimezone(tz)
    last = None if end is None else _to_utc(end, tz, "end").astimezone(tz)
    return TimeWindowPartitions(granularity, first, last, timezone, fmt or "")


def hourly(
    start: TimeLike, end: TimeLike | None = None, timezone: str = "UTC", *, fmt: str | None = None
) -> TimeWindowPartitions:
    """Hourly windows from ``start`` (rounded up to an hour) to ``end`` (exclusive).

    Keys look like ``2013-01-05-14:00`` in local wall-clock time; see the module docstring
    for daylight-saving changes.
    """
    return _time("hourly", start, end, timezone, fmt)


def daily(
    start: TimeLike, end: TimeLike | None = None, timezone: str = "UTC", *, fmt: str | None = None
) -> TimeWindowPartitions:
    """Daily windows (local midnight to midnight); keys look like ``2013-01-05``."""
    return _time("daily", start, end, timezone, fmt)


def weekly(
    start: TimeLike, end: TimeLike | None = None, timezone: str = "UTC", *, fmt: str | None = None
) -> TimeWindowPartitions:
    """Monday-to-Monday weeks; the first is the first whole week at or after ``start``.

    Keys are the Monday: ``weekly(start="2013-01-01")`` starts at ``2013-01-07``.
    """
    return _time("weekly", start, end, timezone, fmt)


def monthly(
    start: TimeLike, end: TimeLike | None = None, timezone: str = "UTC", *, fmt: str | None = None
) -> TimeWindowPartitions:
    """Calendar months; keys look like ``2013-01``."""
    return _time("monthly", start, end, timezone, fmt)


def static(values: Iterable[str]) -> StaticPartitions:
    """A fixed set of keys, in the order given: ``static(["eu", "us"])``."""
    if isinstance(values, str):
        raise PartitionError(f"static() needs a list of keys, not the string {values!r}")
    return StaticPartitions(tuple(values))


def multi(
    *dims: tuple[str, PartitionsDefinition], **named: PartitionsDefinition
) -> MultiPartitions:
    """Two dimensions, the first outer.

    Example: ``multi(date=daily("2013-01-01"), region=static(["eu", "us"]))``; positional
    ``("name", definition)`` pairs work too.
    """
    return MultiPartitions(tuple(dims) + tuple(named.items()))


# --------------------------------------------------------------------------- boxes


def _dims(defn: PartitionsDefinition) -> list[tuple[str | None, _Dim]]:
    if isinstance(defn, MultiPartitions):
        return [(n, cast(_Dim, d)) for n, d in defn.dims]
    if isinstance(defn, (TimeWindowPartitions, StaticPartitions)):
        return [(None, defn)]
    raise PartitionError(f"unsupported partitions definition {type(defn).__name__}")


_Box: TypeAlias = tuple[RangeSet, ...]


def _to_boxes(defn: PartitionsDefinition, rs: RangeSet) -> list[_Box]:
    """Decompose ``rs`` into products of per-dimension sets, grouped so that boxes of a
    multi definition have distinct inner sets. O(number of ranges)."""
    if not rs:
        return []
    if not isinstance(defn, MultiPartitions):
        return [(rs,)]
    n = defn.inner_size
    full: list[tuple[int, int]] = []
    rows: dict[int, list[tuple[int, int]]] = {}
    for s, e in rs.ranges:
        o1, i1 = divmod(s, n)
        o2, i2 = divmod(e, n)
        if o1 == o2:
            rows.setdefault(o1, []).append((i1, i2))
            continue
        if i1:
            rows.setdefault(o1, []).append((i1, n))
            o1 += 1
        if o2 > o1:
            full.append((o1, o2))
        if i2:
            rows.setdefault(o2, []).append((0, i2))
    groups: dict[RangeSet, list[tuple[int, int]]] = {}
    if full:
        groups[RangeSet.of(0, n)] = full
    for o, parts in rows.items():
        groups.setdefault(RangeSet(parts), []).append((o, o + 1))
    boxes: list[_Box] = [(RangeSet(outer), inner) for inner, outer in groups.items()]
    boxes.sort(key=lambda box: box[0].ranges[0])
    return boxes


def _from_boxes(defn: PartitionsDefinition, boxes: Iterable[_Box]) -> RangeSet:
    if not isinstance(defn, MultiPartitions):
        return RangeSet(r for box in boxes for r in box[0])
    n = defn.inner_size
    row = RangeSet.of(0, n)
    out: list[tuple[int, int]] = []
    for outer, inner in boxes:
        inner = inner & row
        if inner == row:
            out.extend((a * n, b * n) for a, b in outer)
        elif inner:
            out.extend((o * n + s, o * n + e) for o in outer.indices() for s, e in inner)
    return RangeSet(out)


