"""Examples for the partition algebra: definitions, keys, selections, mappings, predicates.

Property-based tests against brute-force models live in test_partitions_props.py.
"""

from __future__ import annotations

import doctest
import pickle
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

import lakehouse.partitions as partitions_module
from lakehouse.errors import LakehouseError, PartitionError
from lakehouse.partitions import (
    ColumnIn,
    ColumnRange,
    MultiPartitions,
    PartitionMapping,
    RangeSet,
    TimeWindowPartitions,
    Upstream,
    daily,
    default_mapping,
    downstream_range,
    hourly,
    monthly,
    multi,
    partition_value,
    predicate,
    predicate_matches,
    predicate_sql,
    static,
    upstream,
    upstream_range,
    validate_mapping,
    weekly,
)

UTC = timezone.utc
YEAR = daily("2013-01-01", "2014-01-01")
REGIONS = static(["eu", "us", "asia"])


def test_doctests() -> None:
    result = doctest.testmod(partitions_module)
    assert result.attempted > 0 and result.failed == 0


# ------------------------------------------------------------------------------ RangeSet


def test_rangeset_normalizes() -> None:
    rs = RangeSet([(5, 8), (0, 2), (2, 3), (9, 9), (7, 9), (-3, -1)])
    assert rs.ranges == ((-3, -1), (0, 3), (5, 9))
    assert rs == RangeSet(rs) == RangeSet(list(reversed(rs.ranges)))
    assert hash(rs) == hash(RangeSet([(0, 3), (5, 9), (-3, -1)]))
    assert len(rs) == 9 and bool(rs) and not RangeSet()
    assert list(rs) == [(-3, -1), (0, 3), (5, 9)]
    assert repr(RangeSet.of(0, 5)) == "RangeSet([(0, 5)])"
    assert RangeSet.of(5, 5) == RangeSet() == RangeSet.of(5, 2)


def test_rangeset_algebra_examples() -> None:
    a = RangeSet([(0, 10), (20, 30)])
    b = RangeSet([(5, 25)])
    assert (a | b).ranges == ((0, 30),)
    assert (a & b).ranges == ((5, 10), (20, 25))
    assert (a - b).ranges == ((0, 5), (25, 30))
    assert (b - a).ranges == ((10, 20),)
    assert a.union(b) == a | b and a.intersection(b) == a & b and a.difference(b) == a - b
    assert RangeSet.of(3, 4).issubset(a) and not b.issubset(a)
    assert RangeSet.of(10, 20).isdisjoint(a)


def test_rangeset_membership_and_helpers() -> None:
    rs = RangeSet([(0, 3), (10, 12)])
    assert [i for i in range(-1, 14) if i in rs] == [0, 1, 2, 10, 11]
    assert "1" not in rs and 1.0 not in rs
    assert list(rs.indices()) == [0, 1, 2, 10, 11]
    assert rs.min() == 0 and rs.max() == 11
    assert rs.span() == RangeSet.of(0, 12)
    assert not rs.is_contiguous and RangeSet.of(0, 1).is_contiguous
    assert rs.shift(5).ranges == ((5, 8), (15, 17))
    assert rs.clip(1, 11).ranges == ((1, 3), (10, 11))
    assert RangeSet.from_indices([3, 1, 2, 7, 7]).ranges == ((1, 4), (7, 8))
    with pytest.raises(ValueError):
        RangeSet().min()
    with pytest.raises(ValueError):
        RangeSet().max()


def test_rangeset_split() -> None:
    rs = RangeSet([(0, 5), (10, 11)])
    assert rs.split(2) == [
        RangeSet.of(0, 2),
        RangeSet.of(2, 4),
        RangeSet.of(4, 5),
        RangeSet.of(10, 11),
    ]
    assert rs.split(100) == [RangeSet.of(0, 5), RangeSet.of(10, 11)]
    with pytest.raises(ValueError):
        rs.split(0)


def test_rangeset_is_immutable_and_picklable() -> None:
    rs = RangeSet.of(0, 3)
    with pytest.raises(AttributeError):
        rs.ranges = ()  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(rs)) == rs


def test_huge_ranges_never_iterate_indices() -> None:
    # 10**15 indices per range: any O(indices) loop would never finish.
    big = 10**15
    a = RangeSet([(0, big), (2 * big, 3 * big)])
    b = RangeSet([(big // 2, 5 * big // 2)])
    assert len(a | b) == 3 * big
    assert len(a & b) == big
    assert (a - b).ranges == ((0, big // 2), (5 * big // 2, 3 * big))
    assert big + 1 not in a and 2 * big in a
    assert len(a.split(big // 4)) == 8


def test_large_hourly_definition_is_cheap() -> None:
    h = hourly("2000-01-01", timezone="Europe/Berlin")
    now = datetime(2011, 6, 1, 12, 30, tzinfo=UTC)
    n = h.count(now)
    assert n > 100_000
    rs = h.all(now)
    assert rs == RangeSet.of(0, n)
    assert h.index(h.key(n - 1), now=now) == n - 1
    assert h.window_of(rs)[1] == datetime(2011, 6, 1, 12, tzinfo=UTC)
    assert len(predicate(h, rs - RangeSet.of(500, 600), "ts")) == 2
    m = monthly("2000-01-01", timezone="Europe/Berlin")
    mapped = downstream_range(default_mapping(h, m), h, m, rs, now)
    assert mapped == RangeSet.of(0, 137)  # Jan 2000 .. May 2011, June still running
    back = upstream_range(default_mapping(h, m), h, m, RangeSet.of(136, 137), now)
    assert len(back) == 31 * 24


# ------------------------------------------------------------------------------ time windows


def test_daily_keys_and_windows() -> None:
    d = daily("2013-01-01", "2013-02-01")
    assert d.count() == 31 and d.all() == RangeSet.of(0, 31)
    assert d.key(0) == "2013-01-01" and d.key(30) == "2013-01-31"
    assert d.index("2013-01-05") == 4
    assert d.window(4) == (datetime(2013, 1, 5, tzinfo=UTC), datetime(2013, 1, 6, tzinfo=UTC))
    assert d.window_of(RangeSet([(1, 3), (9, 10)])) == (
        datetime(2013, 1, 2, tzinfo=UTC),
        datetime(2013, 1, 11, tzinfo=UTC),
    )
    assert d.index_of_time(datetime(2013, 1, 5, 23, 59, tzinfo=UTC)) == 4
    assert d.index_of_time("2012-12-31T12:00") == -1
    assert d.index_of_time(date(2013, 3, 1)) == 59
    assert partition_value(d, 4) == date(2013, 1, 5)
    assert d.start == datetime(2013, 1, 1, tzinfo=UTC) and d.end == datetime(2013, 2, 1, tzinfo=UTC)
    assert d.size == 31


def test_start_and_end_forms_are_equivalent() -> None:
    a = daily("2013-01-01", "2013-02-01")
    b = daily(date(2013, 1, 1), datetime(2013, 2, 1))
    c = daily(datetime(2013, 1, 1, tzinfo=UTC), "2013-02-01T00:00:00Z")
    d = daily("2012-12-31T06:00", "2013-02-01T23:59")  # rounded up / down to whole days
    assert a == b == c == d and len({a, b, c, d}) == 1
    assert a != daily("2013-01-01", "2013-02-01", timezone="Europe/Berlin")
    assert a != monthly("2013-01-01", "2013-02-01")


def test_weekly_is_monday_aligned() -> None:
    w = weekly("2013-01-01", "2013-02-01")  # 2013-01-01 is a Tuesday
    assert w.key(0) == "2013-01-07" and w.window(0)[0].weekday() == 0
    assert w.count() == 3  # 01-07, 01-14, 01-21 (the week of 01-28 ends in February)
    assert w.index("2013-01-14") == 1
    with pytest.raises(PartitionError, match="Tuesday; weekly partitions start on Mondays"):
        w.index("2013-01-08")
    assert weekly("2013-01-07").key(0) == "2013-01-07"
    assert partition_value(w, 1) == date(2013, 1, 14)


def test_monthly_keys() -> None:
    m = monthly("2013-01-15", "2014-01-01")  # starts with the first whole month
    assert m.key(0) == "2013-02" and m.count() == 11
    assert m.index("2013-12") == 10
    assert m.window(0) == (datetime(2013, 2, 1, tzinfo=UTC), datetime(2013, 3, 1, tzinfo=UTC))
    assert partition_value(m, 0) == date(2013, 2, 1)
    assert monthly("2013-01").key(0) == "2013-01"


def test_hourly_keys_accept_separators() -> None:
    h = hourly("2013-01-05", "2013-01-06")
    assert h.key(14) == "2013-01-05-14:00"
    assert h.index("2013-01-05-14:00") == h.index("2013-01-05T14:00") == 14
    assert h.index("2013-01-05 14:00") == 14
    assert h.index("2013-01-05T15:00+01:00") == 14  # an explicit offset is honoured
    assert partition_value(h, 14) == datetime(2013, 1, 5, 14, tzinfo=UTC)
    assert hourly("2013-01-05T13:30").key(0) == "2013-01-05-14:00"


def test_hourly_dst_fall_back_keys_are_unique() -> None:
    h = hourly("2013-10-27", "2013-10-28", timezone="Europe/Berlin")
    assert h.count() == 25
    keys = [h.key(i) for i in range(25)]
    assert len(set(keys)) == 25
    assert keys[1:5] == [
        "2013-10-27-01:00",
        "2013-10-27-02:00+02:00",
        "2013-10-27-02:00+01:00",
        "2013-10-27-03:00",
    ]
    assert [h.index(k) for k in keys] == list(range(25))
    assert h.index("2013-10-27-02:00") == 2  # without an offset: the first of the two
    for i in range(24):
        start, end = (t.astimezone(UTC) for t in h.window(i))
        assert end - start == timedelta(hours=1)
        assert h.window(i)[1] == h.window(i + 1)[0]


def test_hourly_dst_spring_forward_skips_nothing() -> None:
    h = hourly("2013-03-31", "2013-04-01", timezone="Europe/Berlin")
    assert h.count() == 23
    assert [h.key(i) for i in range(1, 4)] == [
        "2013-03-31-01:00",
        "2013-03-31-03:00",
        "2013-03-31-04:00",
    ]
    with pytest.raises(PartitionError, match="does not exist in Europe/Berlin"):
        h.index("2013-03-31-02:00")


def test_daily_in_dst_timezone() -> None:
    d = daily("2013-03-30", "2013-11-01", timezone="Europe/Berlin")
    # (aware datetimes sharing a tzinfo subtract as wall-clock times: compare in UTC)
    lengths = {d.window(i)[1].astimezone(UTC) - d.window(i)[0] for i in range(d.count())}
    assert lengths == {timedelta(hours=23), timedelta(hours=24), timedelta(hours=25)}
    spring = d.window(d.index("2013-03-31"))
    assert spring[0].isoformat() == "2013-03-31T00:00:00+01:00"
    assert spring[1].isoformat() == "2013-04-01T00:00:00+02:00"
    assert d.index_of_time(datetime(2013, 3, 31, 22, 30, tzinfo=UTC)) == d.index("2013-04-01")
    assert partition_value(d, 1) == date(2013, 3, 31)


def test_open_ended_counts_complete_windows_up_to_now() -> None:
    d = daily("2013-01-01")
    assert d.end is None and d.size is None
    assert d.count(now="2013-01-05T12:00") == 4  # the 5th is still running
    assert d.count(now=datetime(2013, 1, 5, tzinfo=UTC)) == 4  # ...and ends at midnight
    assert d.count(now=datetime(2013, 1, 5, 0, 0, 1, tzinfo=UTC)) == 4
    assert d.count(now="2012-06-01") == 0 and d.all(now="2012-06-01") == RangeSet()
    assert d.count() > 4000  # default now is the current time
    assert d.index("2013-01-04", now="2013-01-05T12:00") == 3
    with pytest.raises(PartitionError, match=r"valid keys are 2013-01-01\.\.2013-01-04"):
        d.index("2013-01-05", now="2013-01-05T12:00")
    with pytest.raises(PartitionError, match="none yet"):
        d.index("2013-01-01", now="2013-01-01T23:00")
    # a closed definition is also capped by now
    assert YEAR.count(now="2013-02-01") == 31
    assert YEAR.count(now="2020-01-01") == 365


def test_naive_now_is_local_time() -> None:
    d = daily("2013-01-01", timezone="America/New_York")
    assert d.count(now=datetime(2013, 1, 3)) == 2
    assert d.count(now=datetime(2013, 1, 3, 4, tzinfo=UTC)) == 1  # still Jan 2 in New York


def test_time_definition_errors() -> None:
    with pytest.raises(PartitionError, match="unknown timezone"):
        daily("2013-01-01", timezone="Mars/Olympus")
    with pytest.raises(PartitionError, match="cannot read start"):
        daily("01/01/2013")
    with pytest.raises(PartitionError, match="no complete daily window"):
        daily("2013-01-02", "2013-01-01")
    with pytest.raises(PartitionError, match="no complete"):
        daily("2013-01-01T01:00", "2013-01-02")
    with pytest.raises(PartitionError, match="granularity"):
        TimeWindowPartitions("yearly", datetime(2013, 1, 1, tzinfo=UTC))  # type: ignore[arg-type]
    with pytest.raises(PartitionError, match="outside"):
        YEAR.key(365)
    with pytest.raises(PartitionError, match="outside"):
        YEAR.key(-1)


def test_custom_format() -> None:
    d = daily("2013-01-01", "2013-02-01", fmt="%Y%m%d")
    assert d.key(4) == "20130105" and d.index("20130105") == 4
    assert d != daily("2013-01-01", "2013-02-01")
    with pytest.raises(PartitionError, match="separator"):
        daily("2013-01-01", fmt="%Y|%m|%d")
    with pytest.raises(PartitionError, match="uniquely"):
        daily("2013-01-01", fmt="%Y-%m")


def test_index_errors_name_key_and_valid_range() -> None:
    with pytest.raises(PartitionError) as exc:
        YEAR.index("2014-02-01", asset="flights")
    text = str(exc.value)
    assert "flights" in text and "2014-02-01" in text
    assert "valid keys are 2013-01-01..2013-12-31" in text
    assert exc.value.asset == "flights" and exc.value.partition == "2014-02-01"
    with pytest.raises(PartitionError) as exc:
        YEAR.index("yesterday", asset="flights")
    assert "yesterday" in str(exc.value) and "2013-01-01..2013-12-31" in str(exc.value)
    assert isinstance(exc.value, ValueError) and isinstance(exc.value, LakehouseError)


# ------------------------------------------------------------------------------ static, multi


def test_static() -> None:
    assert REGIONS.key(1) == "us" and REGIONS.index("asia") == 2 and REGIONS.count() == 3
    assert partition_value(REGIONS, 0) == "eu"
    assert static(("a", "b")) == static(["a", "b"]) != static(["b", "a"])
    with pytest.raises(PartitionError, match="twice"):
        static(["a", "a"])
    with pytest.raises(PartitionError, match="separator"):
        static(["a|b"])
    with pytest.raises(PartitionError, match="list of keys"):
        static("eu")
    with pytest.raises(PartitionError, match="at least one"):
        static([])
    with pytest.raises(PartitionError) as exc:
        REGIONS.index("mars", asset="sales")
    assert (
        "sales" in str(exc.value) and "mars" in str(exc.value) and "eu, us, asia" in str(exc.value)
    )


def test_multi_layout_and_keys() -> None:
    m = multi(date=daily("2013-01-01", "2013-01-11"), region=REGIONS)
    assert isinstance(m, MultiPartitions) and m.names == ("date", "region")
    assert m.count() == 30 and m.all() == RangeSet.of(0, 30) and m.inner_size == 3
    assert m.key(0) == "2013-01-01|eu" and m.key(5) == "2013-01-02|asia"
    assert m.index("2013-01-02|asia") == 5
    assert m.split_key("2013-01-02|asia") == {"date": "2013-01-02", "region": "asia"}
    assert m.dims_of(5) == {"date": 1, "region": 2}
    assert m.index_of_dims({"date": 1, "region": 2}) == 5
    assert partition_value(m, 5) == (date(2013, 1, 2), "asia")
    assert m.time_dim is not None and m.time_dim[0] == "date"
    # a contiguous time range over every region is one index range
    assert m.parse("2013-01-02|eu..2013-01-04|asia") == RangeSet.of(3, 12)
    assert m.window_of(RangeSet([(4, 5), (9, 10)])) == (
        datetime(2013, 1, 2, tzinfo=UTC),
        datetime(2013, 1, 5, tzinfo=UTC),
    )
    assert multi(("date", daily("2013-01-01", "2013-01-11")), ("region", REGIONS)) == m
    assert m != multi(region=REGIONS, date=daily("2013-01-01", "2013-01-11"))
    with pytest.raises(PartitionError) as exc:
        m.index("2013-01-02|mars", asset="sales")
    text = str(exc.value)
    assert "sales" in text and "2013-01-02|mars" in text and "eu, us, asia" in text
    assert "2013-01-01..2013-01-10" in text
    with pytest.raises(PartitionError, match="valid keys"):
        m.index("2013-01-02")


def test_multi_time_inner_and_validation() -> None:
    m = multi(region=static(["eu", "us"]), day=daily("2013-01-01", "2013-01-11"))
    assert m.key(10) == "us|2013-01-01" and m.index("us|2013-01-03") == 12
    now = "2013-01-04T12:00"  # three days complete
    assert m.count(now) == 6
    assert m.all(now) == RangeSet([(0, 3), (10, 13)])
    with pytest.raises(PartitionError, match="put the time dimension first"):
        multi(region=REGIONS, day=daily("2013-01-01"))
    with pytest.raises(PartitionError, match="exactly two"):
        multi(region=REGIONS)
    with pytest.raises(PartitionError, match="at most one"):
        multi(a=daily("2013-01-01"), b=daily("2013-01-01", "2013-02-01"))
    with pytest.raises(PartitionError, match="time windows or static"):
        multi(a=REGIONS, b=m)


def test_multi_open_ended_outer_time() -> None:
    m = multi(date=daily("2013-01-01"), region=REGIONS)
    assert m.count(now="2013-01-03") == 6 and m.all(now="2013-01-03") == RangeSet.of(0, 6)
    with pytest.raises(PartitionError, match="valid keys"):
        m.index("2013-01-03|eu", now="2013-01-03")


def test_definitions_hashable_comparable_picklable() -> None:
    defs = [YEAR, REGIONS, hourly("2013-01-01", timezone="Europe/Berlin"), multi(d=YEAR, r=REGIONS)]
    for d in defs:
        copy = pickle.loads(pickle.dumps(d))
        assert copy == d and hash(copy) == hash(d)
        assert copy.key(0) == d.key(0)
    assert len(set(defs + [pickle.loads(pickle.dumps(d)) for d in defs])) == 4
    with pytest.raises(AttributeError):
        YEAR.granularity = "hourly"  # type: ignore[misc]


def test_describe() -> None:
    assert YEAR.describe() == "daily 2013-01-01..2013-12-31 (365 partitions, UTC)"
    assert daily("2013-01-01", timezone="Europe/Berlin").describe() == (
        "daily from 2013-01-01, open-ended (Europe/Berlin)"
    )
    assert REGIONS.describe() == "static eu, us, asia"
    assert "×" in multi(d=YEAR, r=REGIONS).describe()


# ------------------------------------------------------------------------------ parse, format


def test_parse_forms() -> None:
    assert YEAR.parse("2013-01-05") == RangeSet.of(4, 5)
    assert YEAR.parse("2013-01-01..2013-01-31") == RangeSet.of(0, 31)
    assert YEAR.parse(["2013-01-01", "2013-01-03..2013-01-04"]) == RangeSet([(0, 1), (2, 4)])
    assert YEAR.parse("2013-01-01, 2013-01-02 , 2013-03-01") == RangeSet([(0, 2), (59, 60)])
    assert YEAR.parse("all") == YEAR.all()
    assert YEAR.parse(RangeSet.of(3, 9)) == RangeSet.of(3, 9)
    assert YEAR.parse([]) == RangeSet()
    assert REGIONS.parse("eu..us") == RangeSet.of(0, 2)
    assert REGIONS.parse(["asia", "eu"]) == RangeSet([(0, 1), (2, 3)])
    open_days = daily("2013-01-01")
    assert open_days.parse("all", now="2013-01-11") == RangeSet.of(0, 10)


def test_parse_errors_name_asset_key_and_range() -> None:
    cases = ["2013-01-01..2014-01-05", "2012-12-31", "not-a-day", "2013-02-30"]
    for selection in cases:
        with pytest.raises(PartitionError) as exc:
            YEAR.parse(selection, asset="flights")
        text = str(exc.value)
        assert "asset 'flights'" in text
        assert "valid keys are 2013-01-01..2013-12-31" in text
        bad = selection.split("..")[-1]
        assert bad in text
    with pytest.raises(PartitionError, match="backwards"):
        YEAR.parse("2013-02-01..2013-01-01", asset="flights")
    with pytest.raises(PartitionError, match="outside"):
        YEAR.parse(RangeSet.of(360, 370), asset="flights")
    with pytest.raises(PartitionError, match="empty partition key"):
        YEAR.parse("2013-01-01,,2013-01-02")
    with pytest.raises(PartitionError, match="strings"):
        YEAR.parse([1, 2])  # type: ignore[list-item]
    with pytest.raises(PartitionError):
        YEAR.parse(5)  # type: ignore[arg-type]


def test_format_ranges() -> None:
    rs = RangeSet([(0, 31), (59, 60)])
    assert YEAR.format_ranges(rs) == "2013-01-01..2013-01-31, 2013-03-01"
    assert YEAR.parse(YEAR.format_ranges(rs)) == rs
    assert YEAR.format_ranges(RangeSet()) == ""
    many = RangeSet((i, i + 1) for i in range(0, 100, 2))
    text = YEAR.format_ranges(many, max_ranges=2)
    assert text == "2013-01-01, 2013-01-03, ... and 48 more in 48 ranges"
    m = multi(date=YEAR, region=REGIONS)
    assert m.format_ranges(RangeSet.of(1, 5)) == "2013-01-01|us..2013-01-02|us"


# ------------------------------------------------------------------------------ mappings


def test_default_mappings() -> None:
    days = daily("2013-01-01")
    months = monthly("2013-01-01")
    assert default_mapping(days, days) == PartitionMapping("identity")
    assert default_mapping(None, None) == PartitionMapping("identity")
    assert default_mapping(days, None) == PartitionMapping("all")
    assert default_mapping(None, days) == PartitionMapping("all")
    assert default_mapping(days, months) == PartitionMapping("time_window")
    assert default_mapping(months, days) == PartitionMapping("time_window")
    assert default_mapping(days, daily("2014-01-01")) == PartitionMapping("time_window")
    md = multi(date=days, region=REGIONS)
    assert default_mapping(days, md) == PartitionMapping("time_window")
    assert default_mapping(md, days) == PartitionMapping("time_window")
    assert default_mapping(md, md) == PartitionMapping("identity")
    assert default_mapping(md, REGIONS) == PartitionMapping("identity")
    assert default_mapping(static(["eu", "us", "x"]), static(("eu", "us"))) == (
        PartitionMapping("identity")
    )
    for up, down in [(days, REGIONS), (REGIONS, days), (REGIONS, static(["mars"]))]:
        with pytest.raises(PartitionError) as exc:
            default_mapping(up, down)
        assert exc.value.hint and "upstream(" in exc.value.hint


def test_month_needs_its_days_and_day_affects_its_month() -> None:
    days, months = YEAR, monthly("2013-01-01", "2014-01-01")
    tw = default_mapping(days, months)
    feb = months.parse("2013-02")
    assert upstream_range(tw, days, months, feb) == days.parse("2013-02-01..2013-02-28")
    assert downstream_range(tw, days, months, days.parse("2013-01-31..2013-02-01")) == (
        months.parse("2013-01..2013-02")
    )
    # the reverse direction: every day needs its month; a month affects its days
    tw2 = default_mapping(months, days)
    assert upstream_range(tw2, months, days, days.parse("2013-03-05")) == months.parse("2013-03")
    assert downstream_range(tw2, months, days, months.parse("2013-03")) == (
        days.parse("2013-03-01..2013-03-31")
    )


def test_hour_needs_its_day() -> None:
    days = daily("2013-01-01", "2013-01-03")
    hours = hourly("2013-01-01", "2013-01-03")
    tw = default_mapping(days, hours)
    assert upstream_range(tw, days, hours, hours.parse("2013-01-02-05:00")) == days.parse(
        "2013-01-02"
    )
    assert downstream_range(tw, days, hours, days.parse("2013-01-02")) == RangeSet.of(24, 48)


def test_week_month_overlap() -> None:
    weeks = weekly("2013-01-01", "2013-04-01")
    months = monthly("2013-01-01", "2013-04-01")
    tw = default_mapping(weeks, months)
    # the week of 2013-01-28 runs into February: both months need it
    assert upstream_range(tw, weeks, months, months.parse("2013-02")) == weeks.parse(
        "2013-01-28..2013-02-25"
    )
    assert downstream_range(tw, weeks, months, weeks.parse("2013-01-28")) == months.parse(
        "2013-01..2013-02"
    )


def test_offsets() -> None:
    days = YEAR
    yesterday = upstream("flights", offset=-1)
    assert yesterday == Upstream("flights", PartitionMapping("offset", -1, -1))
    m = yesterday.mapping
    assert m is not None
    assert upstream_range(m, days, days, days.parse("2013-01-05")) == days.parse("2013-01-04")
    assert upstream_range(m, days, days, days.parse("2013-01-01")) == RangeSet()  # clipped
    assert downstream_range(m, days, days, days.parse("2013-01-04")) == days.parse("2013-01-05")
    assert downstream_range(m, days, days, days.parse("2013-12-31")) == RangeSet()  # clipped
    window = upstream("flights", start_offset=-1, end_offset=0).mapping
    assert window == PartitionMapping("offset", -1, 0)
    assert upstream_range(window, days, days, days.parse("2013-01-05..2013-01-06")) == (
        days.parse("2013-01-04..2013-01-06")
    )
    assert downstream_range(window, days, days, days.parse("2013-01-04")) == (
        days.parse("2013-01-04..2013-01-05")
    )
    # offsets across definitions with different starts go by time, not by index
    later = daily("2013-06-01", "2014-01-01")
    assert upstream_range(m, days, later, later.parse("2013-06-01")) == days.parse("2013-05-31")
    assert downstream_range(m, days, later, days.parse("2013-06-01")) == later.parse("2013-06-02")
    # offsets need matching granularity
    with pytest.raises(PartitionError, match="one granularity"):
        upstream_range(m, days, monthly("2013-01-01"), RangeSet.of(0, 1))
    with pytest.raises(PartitionError, match="one granularity"):
        validate_mapping(m, daily("2013-01-01", timezone="Europe/Berlin"), days)


def test_offset_with_open_ended_now() -> None:
    days = daily("2013-01-01")
    nxt = PartitionMapping("offset", 1, 1)
    now = "2013-01-10T12:00"  # nine complete days
    assert upstream_range(nxt, days, days, days.parse("2013-01-08", now=now), now) == RangeSet.of(
        8, 9
    )
    assert upstream_range(nxt, days, days, RangeSet.of(8, 9), now) == RangeSet()


def test_all_last_and_unpartitioned() -> None:
    days = daily("2013-01-01", "2013-01-11")
    all_m, last = PartitionMapping("all"), PartitionMapping("last")
    assert upstream_range(all_m, days, REGIONS, RangeSet.of(1, 2)) == RangeSet.of(0, 10)
    assert downstream_range(all_m, days, REGIONS, RangeSet.of(3, 4)) == RangeSet.of(0, 3)
    assert upstream_range(last, days, REGIONS, RangeSet.of(0, 3)) == RangeSet.of(9, 10)
    assert downstream_range(last, days, REGIONS, RangeSet.of(0, 9)) == RangeSet()
    assert downstream_range(last, days, REGIONS, RangeSet.of(9, 10)) == RangeSet.of(0, 3)
    assert upstream_range(last, days, None, RangeSet.of(0, 1), "2013-01-05") == RangeSet.of(3, 4)
    # partitioned upstream -> unpartitioned downstream
    m = default_mapping(days, None)
    assert upstream_range(m, days, None, RangeSet.of(0, 1)) == days.all()
    assert downstream_range(m, days, None, RangeSet.of(4, 5)) == RangeSet.of(0, 1)
    # unpartitioned upstream -> partitioned downstream
    m = default_mapping(None, days)
    assert upstream_range(m, None, days, RangeSet.of(2, 5)) == RangeSet.of(0, 1)
    assert downstream_range(m, None, days, RangeSet.of(0, 1)) == days.all()
    assert downstream_range(m, None, days, RangeSet()) == RangeSet()
    ident = default_mapping(None, None)
    assert upstream_range(ident, None, None, RangeSet.of(0, 1)) == RangeSet.of(0, 1)
    assert downstream_range(ident, None, None, RangeSet.of(0, 1)) == RangeSet.of(0, 1)
    with pytest.raises(PartitionError, match="partitions on both sides"):
        upstream_range(PartitionMapping("offset", -1, -1), days, None, RangeSet.of(0, 1))
    with pytest.raises(PartitionError) as exc:
        validate_mapping(PartitionMapping("time_window"), None, days, asset="report")
    assert "report" in str(exc.value)


def test_multi_mappings() -> None:
    days = daily("2013-01-01", "2013-01-11")
    md = multi(date=days, region=REGIONS)
    tw = default_mapping(days, md)
    # a multi downstream reads the days of its partitions
    sel = md.parse(["2013-01-02|us", "2013-01-05|eu..2013-01-06|eu"])
    assert upstream_range(tw, days, md, sel) == days.parse("2013-01-02, 2013-01-05..2013-01-06")
    # a changed day affects every region of that day
    assert downstream_range(tw, days, md, days.parse("2013-01-03")) == md.parse(
        "2013-01-03|eu..2013-01-03|asia"
    )
    # a daily downstream of a multi upstream needs every region of its day
    tw2 = default_mapping(md, days)
    assert upstream_range(tw2, md, days, days.parse("2013-01-03")) == RangeSet.of(6, 9)
    assert downstream_range(tw2, md, days, md.parse("2013-01-03|us")) == days.parse("2013-01-03")
    # identity on equal multi definitions
    ident = default_mapping(md, md)
    assert upstream_range(ident, md, md, sel) == sel == downstream_range(ident, md, md, sel)
    # monthly × region downstream of daily × region: per region, the month needs its days
    mm = multi(month=monthly("2013-01-01", "2013-03-01"), region=REGIONS)
    d2 = multi(date=daily("2013-01-01", "2013-03-01"), region=REGIONS)
    tw3 = default_mapping(d2, mm)
    feb_us = mm.parse("2013-02|us")
    expected = RangeSet((3 * i + 1, 3 * i + 2) for i in range(31, 59))
    assert upstream_range(tw3, d2, mm, feb_us) == expected
    assert downstream_range(tw3, d2, mm, d2.parse("2013-01-31|asia")) == mm.parse("2013-01|asia")
    # offsets on multi definitions move the time dimension only
    off = PartitionMapping("offset", -1, -1)
    assert upstream_range(off, md, md, md.parse("2013-01-05|us")) == md.parse("2013-01-04|us")
    # a region-only downstream needs all days of its region
    by_region = default_mapping(md, REGIONS)
    assert upstream_range(by_region, md, REGIONS, REGIONS.parse("us")) == RangeSet(
        (3 * i + 1, 3 * i + 2) for i in range(10)
    )
    assert downstream_range(by_region, md, REGIONS, md.parse("2013-01-07|asia")) == RangeSet.of(
        2, 3
    )


def test_upstream_factory() -> None:
    assert upstream("x") == Upstream("x")
    assert upstream("x", partitions="all").mapping == PartitionMapping("all")
    assert upstream("x", partitions="last").mapping == PartitionMapping("last")
    assert upstream("x", start_offset=-6).mapping == PartitionMapping("offset", -6, 0)
    assert upstream("x", end_offset=2).mapping == PartitionMapping("offset", 0, 2)
    assert upstream("x", since_last_run=True).since_last_run
    for kwargs in [
        {"offset": -1, "start_offset": -2},
        {"partitions": "all", "offset": -1},
        {"start_offset": 1, "end_offset": 0},
        {"partitions": "some"},
    ]:
        with pytest.raises(PartitionError) as exc:
            upstream("x", **kwargs)  # type: ignore[arg-type]
        assert exc.value.asset == "x"
    with pytest.raises(PartitionError):
        upstream("")
    with pytest.raises(PartitionError, match="takes no offsets"):
        PartitionMapping("all", -1, -1)
    with pytest.raises(PartitionError, match="unknown partition mapping"):
        PartitionMapping("nearest")  # type: ignore[arg-type]
    assert PartitionMapping("offset", -1, 0).describe() == "offset -1..+0"


# ------------------------------------------------------------------------------ predicates


def test_predicate_time() -> None:
    rs = YEAR.parse("2013-01-01..2013-01-31, 2013-03-01")
    pred = predicate(YEAR, rs, "day")
    assert pred == (
        (ColumnRange("day", date(2013, 1, 1), date(2013, 2, 1)),),
        (ColumnRange("day", date(2013, 3, 1), date(2013, 3, 2)),),
    )
    assert predicate_sql(pred) == (
        "(day >= '2013-01-01' AND day < '2013-02-01') OR "
        "(day >= '2013-03-01' AND day < '2013-03-02')"
    )
    h = hourly("2013-01-01", "2013-01-02", timezone="Europe/Berlin")
    hp = predicate(h, RangeSet.of(0, 2), "ts")
    assert hp == (
        (
            ColumnRange(
                "ts", datetime(2012, 12, 31, 23, tzinfo=UTC), datetime(2013, 1, 1, 1, tzinfo=UTC)
            ),
        ),
    )
    assert predicate_sql(hp) == "(ts >= '2012-12-31 23:00:00' AND ts < '2013-01-01 01:00:00')"
    assert predicate(YEAR, RangeSet(), "day") == () and predicate_sql(()) == "FALSE"


def test_predicate_static_and_multi() -> None:
    pred = predicate(static(["eu", "o'hare"]), RangeSet.of(0, 2), "Region")
    assert pred == ((ColumnIn("Region", ("eu", "o'hare")),),)
    assert predicate_sql(pred) == """("Region" IN ('eu', 'o''hare'))"""
    md = multi(date=YEAR, region=REGIONS)
    # January for every region plus two regions of February 1st
    rs = md.parse("2013-01-01|eu..2013-02-01|us")
    pred = predicate(md, rs, ["date", "region"])
    assert pred == (
        (
            ColumnRange("date", date(2013, 1, 1), date(2013, 2, 1)),
            ColumnIn("region", ("eu", "us", "asia")),
        ),
        (ColumnRange("date", date(2013, 2, 1), date(2013, 2, 2)), ColumnIn("region", ("eu", "us"))),
    )
    assert predicate_sql(pred).startswith(
        "(date >= '2013-01-01' AND date < '2013-02-01' AND region IN"
    )
    with pytest.raises(PartitionError, match="2 partition column"):
        predicate(md, rs, "date")
    # disjoint days with the same regions share one clause per contiguous run
    rs2 = md.parse(["2013-01-01|us", "2013-01-02|us", "2013-01-05|us"])
    assert len(predicate(md, rs2, ["date", "region"])) == 2


def test_predicate_quoting() -> None:
    pred = ((ColumnIn("select", ("a",)), ColumnIn('we"ird col', (1,))),)
    assert predicate_sql(pred) == """("select" IN ('a') AND "we""ird col" IN (1))"""
    assert predicate_matches(pred, {"select": "a", 'we"ird col': 1})
    assert not predicate_matches(pred, {"select": "b", 'we"ird col': 1})


def _sample_table(defn: MultiPartitions) -> list[dict[str, object]]:
    rows = []
    for i in defn.all().indices():
        value = partition_value(defn, i)
        assert isinstance(value, tuple)
        rows.append({"i": i, "day": value[0], "region": value[1]})
    return rows


def test_predicate_sql_runs_in_duckdb_and_deltalake(tmp_path: Path) -> None:
    import duckdb
    import pyarrow as pa
    from deltalake import DeltaTable, write_deltalake

    md = multi(day=daily("2013-01-01", "2013-01-21"), region=static(["eu", "us", "o'hare"]))
    h = hourly("2013-03-30", "2013-04-01", timezone="Europe/Berlin")
    rs = md.parse(
        ["2013-01-01|us..2013-01-04|eu", "2013-01-09|o'hare", "2013-01-10|eu..2013-01-15|o'hare"]
    )
    hrs = RangeSet([(1, 5), (20, 30)])
    rows = _sample_table(md)
    table = pa.Table.from_pylist(rows)
    htable = pa.table(
        {
            "i": list(range(h.count())),
            "ts": pa.array(
                [partition_value(h, i) for i in range(h.count())], pa.timestamp("us", "UTC")
            ),
        }
    )
    sql = predicate_sql(predicate(md, rs, ["day", "region"]))
    hsql = predicate_sql(predicate(h, hrs, "ts"))

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("t", table)
    con.register("h", htable)
    assert {r[0] for r in con.execute(f"select i from t where {sql}").fetchall()} == set(
        rs.indices()
    )
    assert {r[0] for r in con.execute(f"select i from h where {hsql}").fetchall()} == set(
        hrs.indices()
    )

    for path, tab, where, expected in [
        (tmp_path / "m", table, sql, rs),
        (tmp_path / "h", htable, hsql, hrs),
    ]:
        write_deltalake(str(path), tab)
        dt = DeltaTable(str(path))
        dt.delete(where)
        remaining = set(DeltaTable(str(path)).to_pyarrow_table().column("i").to_pylist())
        assert remaining == set(range(tab.num_rows)) - set(expected.indices())


def test_definitions_compare_instants_not_wall_clock() -> None:
    # 01:00 EDT and 01:00 EST share a wall-clock time but are an hour apart
    first = hourly(datetime(2013, 11, 3, 1, fold=0), timezone="America/New_York")
    second = hourly(datetime(2013, 11, 3, 1, fold=1), timezone="America/New_York")
    assert first != second and hash(first) != hash(second)
    assert first.key(0) == "2013-11-03-01:00-04:00" and second.key(0) == "2013-11-03-01:00-05:00"
    tw = default_mapping(first, second)
    assert tw == PartitionMapping("time_window")
    assert upstream_range(tw, first, second, RangeSet.of(0, 1), "2013-11-04") == RangeSet.of(1, 2)
