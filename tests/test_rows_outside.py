"""The check that output rows lie inside the partitions being written (Polars engine),
against a row-by-row model of the predicate with SQL's three-valued logic."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Any

import polars as pl
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

import lakehouse as lh
from lakehouse.engines.polars import rows_outside
from lakehouse.partitions import ColumnIn, ColumnRange, RangeSet, predicate

UTC = timezone.utc
DAILY = lh.daily(start="2020-01-01", end="2020-01-31")
HOURLY = lh.hourly(start="2020-01-01", end="2020-01-03")
REGIONS = lh.static(["eu", "us", "apac"])
MULTI = lh.multi(date=DAILY, region=REGIONS)

days = st.dates(date(2019, 12, 28), date(2020, 2, 3))
hours = st.datetimes(datetime(2019, 12, 31, 20), datetime(2020, 1, 3, 4)).map(
    lambda d: d.replace(minute=0, second=0, microsecond=0)
)
regions = st.sampled_from(["eu", "us", "apac", "mars"])


def _holds(clause: ColumnRange | ColumnIn, value: Any) -> bool | None:
    if value is None:
        return None
    if isinstance(clause, ColumnIn):
        return value in clause.values
    start, end = clause.start, clause.end
    if isinstance(value, datetime) and value.tzinfo is None:  # naive column: UTC wall clock
        start = start.astimezone(UTC).replace(tzinfo=None)  # type: ignore[attr-defined]
        end = end.astimezone(UTC).replace(tzinfo=None)  # type: ignore[attr-defined]
    return start <= value < end  # type: ignore[operator]


def _and(values: list[bool | None]) -> bool | None:
    return False if False in values else (None if None in values else True)


def _or(values: list[bool | None]) -> bool | None:
    return True if True in values else (None if None in values else False)


def model(rows: list[dict[str, Any]], pred: Any, columns: list[str]) -> tuple[int, int, Any]:
    nulls = sum(any(r[c] is None for c in columns) for r in rows)
    outside = [
        r
        for r in rows
        if _or([_and([_holds(cl, r[cl.column]) for cl in conj]) for conj in pred]) is False
    ]
    first = None
    if outside:
        r = outside[0]
        first = r[columns[0]] if len(columns) == 1 else {c: r[c] for c in columns}
    return len(outside), nulls, first


def _near(edges: list[int], offset: Any) -> st.SearchStrategy[Any]:
    """Values at and next to the edges of the ranges written, or anywhere nearby."""
    return st.one_of(st.sampled_from(edges), st.integers(min(edges) - 3, max(edges) + 3)).map(
        offset
    )


@st.composite
def cases(draw: st.DrawFn) -> tuple[pa.Table | pl.DataFrame, Any, list[str], list[dict[str, Any]]]:
    kind = draw(st.sampled_from(["daily", "hourly", "hourly_naive", "static", "multi"]))
    defn = {"daily": DAILY, "static": REGIONS, "multi": MULTI}.get(kind, HOURLY)
    size = len(defn.all(None))
    ranges = [
        (s, s + draw(st.integers(1, 4)))
        for s in draw(st.lists(st.integers(0, size - 1), min_size=1, max_size=3))
    ]
    rs = RangeSet(ranges) & RangeSet.of(0, size)
    if kind == "multi":  # dates vary slowest: index = day * 3 + region
        edges = sorted({i // 3 + d for s, e in rs.ranges for i in (s, e - 1) for d in (-1, 0, 1)})
    else:
        edges = sorted({i + d for s, e in rs.ranges for i in (s, e - 1) for d in (-1, 0, 1)})
    day_of = _near(edges, lambda i: date(2020, 1, 1) + timedelta(days=i))
    if kind == "multi":
        columns = ["day", "region"]
        value_of = st.fixed_dictionaries({"day": st.none() | day_of, "region": st.none() | regions})
        schema = {"day": pl.Date, "region": pl.String}
    elif kind == "static":
        columns = ["region"]
        value_of = st.fixed_dictionaries({"region": st.none() | regions})
        schema = {"region": pl.String}
    elif kind == "daily":
        columns = ["day"]
        value_of = st.fixed_dictionaries({"day": st.none() | day_of})
        schema = {"day": pl.Date}
    else:
        columns = ["hour"]
        aware = kind == "hourly"
        tz = UTC if aware else None
        hour_of = _near(edges, lambda i: datetime(2020, 1, 1, tzinfo=tz) + timedelta(hours=i))
        value_of = st.fixed_dictionaries({"hour": st.none() | hour_of})
        schema = {"hour": pl.Datetime("us", "UTC" if aware else None)}
    pred = predicate(defn, rs, columns if len(columns) > 1 else columns[0])
    rows = draw(st.lists(value_of, max_size=30))
    if draw(st.booleans()):  # mostly inside, like real outputs, and at most one row not
        fine = [r for r in rows if model([r], pred, columns) == (0, 0, None)]
        rows = fine + rows[len(fine) :][:1]
    frame = pl.DataFrame(rows, schema=schema).with_columns(x=pl.int_range(pl.len()))
    data = frame if draw(st.booleans()) else frame.to_arrow()
    return data, pred, columns, rows


@settings(max_examples=400, deadline=None)
@given(cases())
def test_rows_outside_matches_a_row_by_row_model(case: Any) -> None:
    data, pred, columns, rows = case
    assert rows_outside(data, pred, columns) == model(rows, pred, columns)


def test_a_predicate_matching_nothing_puts_every_row_outside() -> None:
    frame = pl.DataFrame({"day": [date(2020, 1, 2), None]})
    assert rows_outside(frame, (), ["day"]) == (2, 1, date(2020, 1, 2))


def test_a_year_of_rows_inside_one_range() -> None:
    start = date(2013, 1, 1)
    frame = pl.DataFrame(
        {"day": pl.date_range(start, start + timedelta(days=364), "1d", eager=True)}
    )
    year = lh.daily(start="2013-01-01", end="2014-01-01")
    assert rows_outside(frame, predicate(year, RangeSet.of(0, 365), "day"), ["day"]) == (
        0,
        0,
        None,
    )
    # the last day alone: every earlier day is outside, the first of them named
    pred = predicate(year, RangeSet.of(364, 365), "day")
    assert rows_outside(frame.to_arrow(), pred, ["day"]) == (364, 0, start)
