"""Sets of partition indexes: sorted, disjoint, half-open ranges (O(ranges) algebra)."""

from __future__ import annotations

import bisect
import heapq
import operator
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

# --------------------------------------------------------------------------- RangeSet


def _merge_sorted(items: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Merge ranges sorted by start into disjoint, non-adjacent, non-empty ranges."""
    out: list[tuple[int, int]] = []
    for s, e in items:
        if s >= e:
            continue
        if out and s <= out[-1][1]:
            if e > out[-1][1]:
                out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return tuple(out)


@dataclass(frozen=True, init=False)
class RangeSet:
    """An immutable set of integer indices stored as sorted, disjoint half-open ranges.

    The constructor normalizes: it sorts, merges overlapping and adjacent ranges and
    drops empty ones, so equal sets are equal values with equal hashes.

    Example:
        >>> RangeSet([(5, 8), (0, 2), (2, 3), (9, 9)])
        RangeSet([(0, 3), (5, 8)])
        >>> rs = RangeSet.of(0, 10) - RangeSet.of(3, 5)
        >>> len(rs), 4 in rs, rs.ranges
        (8, False, ((0, 3), (5, 10)))
    """

    ranges: tuple[tuple[int, int], ...]

    def __init__(self, ranges: Iterable[tuple[int, int]] = ()) -> None:
        items = [(operator.index(s), operator.index(e)) for s, e in ranges]
        items.sort()
        object.__setattr__(self, "ranges", _merge_sorted(items))

    @classmethod
    def _raw(cls, ranges: tuple[tuple[int, int], ...]) -> RangeSet:
        obj = object.__new__(cls)
        object.__setattr__(obj, "ranges", ranges)
        return obj

    @classmethod
    def of(cls, start: int, end: int) -> RangeSet:
        """The indices ``start <= i < end`` (empty when ``end <= start``)."""
        start, end = operator.index(start), operator.index(end)
        return cls._raw(((start, end),) if start < end else ())

    @classmethod
    def from_indices(cls, indices: Iterable[int]) -> RangeSet:
        """Build from individual indices (costs O(k log k) in their number)."""
        return cls((i, i + 1) for i in indices)

    # -- set algebra, each linear in the number of ranges
    def union(self, other: RangeSet) -> RangeSet:
        """Indices in either set."""
        if not other.ranges:
            return self
        if not self.ranges:
            return other
        return RangeSet._raw(_merge_sorted(heapq.merge(self.ranges, other.ranges)))

    def intersection(self, other: RangeSet) -> RangeSet:
        """Indices in both sets."""
        a, b = self.ranges, other.ranges
        out: list[tuple[int, int]] = []
        i = j = 0
        while i < len(a) and j < len(b):
            s = max(a[i][0], b[j][0])
            e = min(a[i][1], b[j][1])
            if s < e:
                out.append((s, e))
            if a[i][1] < b[j][1]:
                i += 1
            else:
                j += 1
        return RangeSet._raw(tuple(out))

    def difference(self, other: RangeSet) -> RangeSet:
        """Indices in this set and not in ``other``."""
        b = other.ranges
        if not b or not self.ranges:
            return self
        out: list[tuple[int, int]] = []
        j = 0
        for s, e in self.ranges:
            cur = s
            while j < len(b) and b[j][1] <= cur:
                j += 1
            k = j
            while k < len(b) and b[k][0] < e:
                bs, be = b[k]
                if bs > cur:
                    out.append((cur, bs))
                cur = max(cur, be)
                if cur >= e:
                    break
                k += 1
            if cur < e:
                out.append((cur, e))
            j = k
        return RangeSet._raw(tuple(out))

    __or__ = union
    __and__ = intersection
    __sub__ = difference

    def issubset(self, other: RangeSet) -> bool:
        """Whether every index of this set is in ``other``."""
        return not (self - other)

    def isdisjoint(self, other: RangeSet) -> bool:
        """Whether the two sets share no index."""
        return not (self & other)

    # -- container protocol
    def __contains__(self, index: object) -> bool:
        if not isinstance(index, int):
            return False
        pos = bisect.bisect_right(self.ranges, index, key=operator.itemgetter(0)) - 1
        return pos >= 0 and index < self.ranges[pos][1]

    def __len__(self) -> int:
        return sum(e - s for s, e in self.ranges)

    def __bool__(self) -> bool:
        return bool(self.ranges)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(self.ranges)

    def __repr__(self) -> str:
        return f"RangeSet({list(self.ranges)!r})"

    # -- helpers
    def indices(self) -> Iterator[int]:
        """Every index in ascending order (this one is O(number of indices))."""
        for s, e in self.ranges:
            yield from range(s, e)

    def split(self, max_size: int) -> list[RangeSet]:
        """Contiguous chunks of at most ``max_size`` indices, in order."""
        if max_size < 1:
            raise ValueError(f"max_size must be at least 1, not {max_size}")
        return [
            RangeSet._raw(((c, min(c + max_size, e)),))
            for s, e in self.ranges
            for c in range(s, e, max_size)
        ]

    def min(self) -> int:
        """The smallest index; ValueError when empty."""
        if not self.ranges:
            raise ValueError("min() of an empty RangeSet")
        return self.ranges[0][0]

    def max(self) -> int:
        """The largest index (inclusive); ValueError when empty."""
        if not self.ranges:
            raise ValueError("max() of an empty RangeSet")
        return self.ranges[-1][1] - 1

    def span(self) -> RangeSet:
        """The smallest contiguous set covering this one."""
        return RangeSet.of(self.ranges[0][0], self.ranges[-1][1]) if self.ranges else self

    @property
    def is_contiguous(self) -> bool:
        """Whether the set is a single range (the empty set is not)."""
        return len(self.ranges) == 1

    def shift(self, delta: int) -> RangeSet:
        """Every index moved by ``delta``."""
        return RangeSet._raw(tuple((s + delta, e + delta) for s, e in self.ranges))

    def clip(self, start: int, end: int) -> RangeSet:
        """The indices ``start <= i < end`` of this set."""
        return self & RangeSet.of(start, end)


_EMPTY = RangeSet()

