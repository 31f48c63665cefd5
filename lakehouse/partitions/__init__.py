"""Partition algebra: definitions, keys, index ranges, mappings and predicates.

Partitions are addressed by an integer *index* ``0..N-1`` inside a definition, and sets of
partitions are :class:`RangeSet` values: sorted, disjoint, half-open index intervals. Every
operation here costs O(number of ranges), never O(number of partitions), so a catalog
that stores ranges plans 100,000 partitions as cheaply as ten.

Definitions (frozen, hashable, comparable):

* :func:`hourly`, :func:`daily`, :func:`weekly`, :func:`monthly` make
  :class:`TimeWindowPartitions`. Keys: hourly ``2013-01-05-14:00`` (``2013-01-05T14:00``
  and ``2013-01-05 14:00`` are accepted too), daily ``2013-01-05``, weekly
  ``2013-01-07`` (the Monday that starts the week: weeks are Monday-aligned), monthly
  ``2013-01``. Windows are computed in the definition's time zone. ``start`` is rounded
  up to the next window boundary and ``end`` (exclusive) down to one, so every partition
  is a whole window inside ``[start, end)``. A partition exists once its window has
  *ended*: ``count(now)`` counts the windows that end at or before ``min(end, now)``.
  Naive datetimes (and dates, and ISO strings without an offset) are read as wall-clock
  time in the definition's time zone.
* Hourly windows are fixed 3600-second steps in absolute (UTC) time from ``start``, so a
  daylight-saving change never duplicates or skips a window. Their keys are local
  wall-clock times; the two windows of the repeated hour at a fall-back change carry
  their UTC offset (``2013-10-27-02:00+02:00`` then ``2013-10-27-02:00+01:00``). An
  offset-less ambiguous key means the first of the two.
* :func:`static` makes :class:`StaticPartitions`; :func:`multi` makes a two-dimensional
  :class:`MultiPartitions` whose index is ``outer * inner_count + inner`` with the first
  dimension outer, and whose keys join the dimension keys with ``|``.

Example:
    >>> days = daily("2013-01-01", "2013-02-01")
    >>> days.count(), days.key(4), days.index("2013-01-05")
    (31, '2013-01-05', 4)
    >>> rs = days.parse("2013-01-01..2013-01-10, 2013-01-20")
    >>> rs
    RangeSet([(0, 10), (19, 20)])
    >>> days.format_ranges(rs)
    '2013-01-01..2013-01-10, 2013-01-20'
    >>> predicate_sql(predicate(days, rs, "day"))
    "(day >= '2013-01-01' AND day < '2013-01-11') OR (day >= '2013-01-20' AND day < '2013-01-21')"
"""

from __future__ import annotations

from .definitions import (
    Granularity,
    MultiPartitions,
    PartitionsDefinition,
    StaticPartitions,
    TimeLike,
    TimeWindowPartitions,
    daily,
    hourly,
    monthly,
    multi,
    static,
    weekly,
)
from .mappings import (
    MappingKind,
    PartitionMapping,
    Upstream,
    default_mapping,
    downstream_range,
    upstream,
    upstream_range,
    validate_mapping,
)
from .predicates import (
    ColumnIn,
    ColumnRange,
    Predicate,
    partition_value,
    predicate,
    predicate_matches,
    predicate_sql,
)
from .ranges import RangeSet

__all__ = [
    "ColumnIn",
    "ColumnRange",
    "Granularity",
    "MappingKind",
    "MultiPartitions",
    "PartitionMapping",
    "PartitionsDefinition",
    "Predicate",
    "RangeSet",
    "StaticPartitions",
    "TimeLike",
    "TimeWindowPartitions",
    "Upstream",
    "daily",
    "default_mapping",
    "downstream_range",
    "hourly",
    "monthly",
    "multi",
    "partition_value",
    "predicate",
    "predicate_matches",
    "predicate_sql",
    "static",
    "upstream",
    "upstream_range",
    "validate_mapping",
    "weekly",
]

