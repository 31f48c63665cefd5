"""Row predicates of partition ranges: neutral form, SQL text, and row checks."""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TypeAlias

from lakehouse.errors import PartitionError

from .definitions import _UTC, PartitionsDefinition, StaticPartitions, _Dim, _dims, _to_boxes
from .ranges import RangeSet

# --------------------------------------------------------------------------- predicates


@dataclass(frozen=True)
class ColumnRange:
    """``start <= column < end``: dates for daily/weekly/monthly, aware UTC datetimes for hourly."""

    column: str
    start: object
    end: object


@dataclass(frozen=True)
class ColumnIn:
    """``column IN values``."""

    column: str
    values: tuple[object, ...]


Predicate: TypeAlias = tuple[tuple[ColumnRange | ColumnIn, ...], ...]
"""An OR of ANDs of column conditions; the empty tuple matches nothing."""


def partition_value(defn: PartitionsDefinition, i: int) -> object:
    """The partition column value of index ``i``: the window start's local date for
    daily/weekly/monthly, its aware UTC datetime for hourly, the key for static, and a
    tuple of those (dimension order) for multi-dimensional partitions."""
    return defn._value(i)


def _conditions(d: _Dim, column: str, rs: RangeSet) -> list[ColumnRange | ColumnIn]:
    if isinstance(d, StaticPartitions):
        return [ColumnIn(column, tuple(d.values[i] for i in rs.indices()))]
    return [ColumnRange(column, d._value(s), d._value(e)) for s, e in rs.ranges]


def predicate(defn: PartitionsDefinition, rs: RangeSet, columns: str | Sequence[str]) -> Predicate:
    """The exact filter selecting the partitions ``rs`` of ``defn``.

    ``columns`` names the partition column, or one per dimension in order for
    multi-dimensional partitions. Each contiguous time range becomes one ColumnRange;
    static values become one ColumnIn; multi-dimensional sets become one conjunction per
    group of time ranges sharing the same static values.
    """
    cols = [columns] if isinstance(columns, str) else list(columns)
    dims = _dims(defn)
    if len(cols) != len(dims):
        raise PartitionError(
            f"{defn.describe()} needs {len(dims)} partition column(s), got {cols}",
            hint="name one column per dimension, in dimension order",
        )
    clauses: list[tuple[ColumnRange | ColumnIn, ...]] = []
    for box in _to_boxes(defn, rs):
        per_dim = [
            _conditions(d, col, part) for (_, d), col, part in zip(dims, cols, box, strict=True)
        ]
        clauses.extend(itertools.product(*per_dim))
    return tuple(clauses)


_PLAIN_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")
_RESERVED_WORDS = (
    "all and any as asc between by case cast check column create current default delete "
    "desc distinct drop else end except exists false fetch for from full group having in "
    "inner insert intersect into is join left like limit not null offset on or order "
    "outer right select table then to true union update user using values when where with"
)
_RESERVED = frozenset(_RESERVED_WORDS.split())


def _quote_ident(name: str) -> str:
    if _PLAIN_IDENT.match(name) and name not in _RESERVED:
        return name
    return '"' + name.replace('"', '""') + '"'


def _literal(value: object) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(_UTC).replace(tzinfo=None)
        text = value.isoformat(sep=" ", timespec="microseconds" if value.microsecond else "seconds")
        return f"'{text}'"
    if isinstance(value, date):
        return f"'{value.isoformat()}'"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def predicate_sql(pred: Predicate) -> str:
    """Render a predicate as SQL accepted by DuckDB and by deltalake's predicate parser.

    Dates are ``'2013-01-01'``, datetimes ``'2013-01-01 00:00:00'`` in UTC, strings are
    quoted with ``''`` escaping, identifiers are double-quoted when needed. The empty
    predicate is ``FALSE``.
    """
    if not pred:
        return "FALSE"
    out = []
    for clause in pred:
        conds = []
        for c in clause:
            col = _quote_ident(c.column)
            if isinstance(c, ColumnRange):
                conds.append(f"{col} >= {_literal(c.start)} AND {col} < {_literal(c.end)}")
            else:
                values = ", ".join(_literal(v) for v in c.values)
                conds.append(f"{col} IN ({values})" if c.values else "FALSE")
        out.append("(" + (" AND ".join(conds) or "TRUE") + ")")
    return " OR ".join(out)


def predicate_matches(pred: Predicate, row: Mapping[str, object]) -> bool:
    """Evaluate a predicate on one row of column values in Python."""
    for clause in pred:
        ok = True
        for c in clause:
            v = row[c.column]
            ok = (
                bool(c.start <= v < c.end)  # type: ignore[operator]
                if isinstance(c, ColumnRange)
                else v in c.values
            )
            if not ok:
                break
        if ok:
            return True
    return False

