"""Property tests: the partition algebra against brute-force models.

Every model here works index by index (sets of ints, window overlaps), on definitions
small enough to enumerate; the library must agree while working on ranges only.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from lakehouse.partitions import (
    MultiPartitions,
    PartitionMapping,
    PartitionsDefinition,
    RangeSet,
    StaticPartitions,
    TimeWindowPartitions,
    daily,
    default_mapping,
    downstream_range,
    hourly,
    monthly,
    multi,
    partition_value,
    predicate,
    predicate_matches,
    static,
    upstream_range,
    weekly,
)

UTC = timezone.utc
PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FACTORIES = {"hourly": hourly, "daily": daily, "weekly": weekly, "monthly": monthly}
MAX_SIZE = {"hourly": 120, "daily": 70, "weekly": 20, "monthly": 14}
TIMEZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Australia/Lord_Howe",  # 30-minute daylight-saving shifts
]
# daylight-saving changes near which hourly windows and daily windows are most fragile
TRANSITIONS = [
    datetime(2013, 3, 31),
    datetime(2013, 10, 27),
    datetime(2013, 3, 10),
    datetime(2013, 11, 3),
    datetime(2013, 4, 7),
    datetime(2013, 10, 6),
    datetime(2021, 3, 28),
    datetime(2021, 10, 31),
]


# ------------------------------------------------------------------------------ strategies


@st.composite
def rangesets(draw: st.DrawFn, lo: int = 0, hi: int = 80) -> RangeSet:
    parts = draw(st.lists(st.tuples(st.integers(lo, hi), st.integers(0, 12)), max_size=6))
    return RangeSet((s, s + n) for s, n in parts)


@st.composite
def starts(draw: st.DrawFn) -> datetime:
    if draw(st.booleans()):
        base = draw(st.sampled_from(TRANSITIONS))
        return base - timedelta(hours=draw(st.integers(0, 96)))
    day = draw(st.dates(date(2012, 1, 1), date(2024, 12, 31)))  # wholly in the past
    return datetime(
        day.year, day.month, day.day, draw(st.integers(0, 23)), draw(st.sampled_from([0, 30]))
    )


@st.composite
def time_defs(
    draw: st.DrawFn,
    granularity: str | None = None,
    tz: str | None = None,
    start: datetime | None = None,
) -> TimeWindowPartitions:
    g = granularity or draw(st.sampled_from(sorted(FACTORIES)))
    zone = tz or draw(st.sampled_from(TIMEZONES))
    first = start or draw(starts())
    size = draw(st.integers(1, MAX_SIZE[g]))
    factory = FACTORIES[g]
    probe = factory(first, None, zone)
    return factory(first, probe.window(size)[0], zone)


@st.composite
def static_defs(draw: st.DrawFn) -> StaticPartitions:
    values = draw(
        st.lists(st.text("abcxyz'_ ", min_size=1, max_size=4), min_size=1, max_size=5, unique=True)
    )
    assume(all(v == v.strip() for v in values))
    return static(values)


@st.composite
def multi_defs(draw: st.DrawFn) -> MultiPartitions:
    t = draw(time_defs(granularity=draw(st.sampled_from(["daily", "hourly", "monthly"]))))
    s = draw(static_defs())
    if draw(st.booleans()):
        return multi(time=t, cat=s)
    return multi(cat=s, time=t)


definitions = st.one_of(time_defs(), static_defs(), multi_defs())


def subsets(defn: PartitionsDefinition) -> st.SearchStrategy[RangeSet]:
    valid = defn.all()
    return rangesets(0, valid.max() + 1 if valid else 1).map(lambda rs: rs & valid)


def as_set(rs: RangeSet) -> set[int]:
    return set(rs.indices())


def is_normalized(rs: RangeSet) -> bool:
    rr = rs.ranges
    return all(s < e for s, e in rr) and all(rr[i][1] < rr[i + 1][0] for i in range(len(rr) - 1))


# ------------------------------------------------------------------------------ RangeSet


@PROPS
@given(rangesets(-20), rangesets(-20))
def test_rangeset_matches_set_model(a: RangeSet, b: RangeSet) -> None:
    sa, sb = as_set(a), as_set(b)
    for rs, model in [(a | b, sa | sb), (a & b, sa & sb), (a - b, sa - sb), (b - a, sb - sa)]:
        assert as_set(rs) == model
        assert is_normalized(rs)
        assert rs == RangeSet.from_indices(model)
        assert len(rs) == len(model)
    assert a.issubset(b) == sa.issubset(sb)
    assert a.isdisjoint(b) == sa.isdisjoint(sb)
    for i in range(-25, 100):
        assert (i in a) == (i in sa)
    assert (a == b) == (sa == sb)
    if sa == sb:
        assert hash(a) == hash(b)


@PROPS
@given(rangesets(), st.integers(1, 7))
def test_rangeset_split(rs: RangeSet, max_size: int) -> None:
    chunks = rs.split(max_size)
    assert all(c.is_contiguous and len(c) <= max_size for c in chunks)
    assert [i for c in chunks for i in c.indices()] == list(rs.indices())
    # only the last chunk of each range may be short
    assert len(chunks) == sum(-(-(e - s) // max_size) for s, e in rs)


# ------------------------------------------------------------------------------ keys, windows


@PROPS
@given(definitions)
def test_key_index_round_trip(defn: PartitionsDefinition) -> None:
    n = defn.count()
    keys = [defn.key(i) for i in range(n)]
    assert len(set(keys)) == n
    for i, k in enumerate(keys):
        assert defn.index(k) == i
    assert defn.all() == RangeSet.of(0, n) or isinstance(defn, MultiPartitions)


@PROPS
@given(definitions, st.data())
def test_parse_format_round_trip(defn: PartitionsDefinition, data: st.DataObject) -> None:
    rs = data.draw(subsets(defn))
    assert defn.parse(defn.format_ranges(rs)) == rs
    assert defn.parse(list(defn.keys(rs))) == rs
    assert defn.parse("all") == defn.all()


@PROPS
@given(time_defs())
def test_windows_tile_time(d: TimeWindowPartitions) -> None:
    n = d.count()
    for i in range(-1, n + 1):
        local, local_end = d.window(i)
        start, end = local.astimezone(UTC), local_end.astimezone(UTC)  # instants
        assert start < end and d.window(i + 1)[0].astimezone(UTC) == end
        assert d.index_of_time(local) == d.index_of_time(start) == i
        assert d.index_of_time(end - timedelta(microseconds=1)) == i
        assert d.index_of_time(local_end) == i + 1
        if d.granularity == "hourly":
            assert end - start == timedelta(hours=1)
        else:  # the first instant of a local day
            before = (start - timedelta(microseconds=1)).astimezone(local.tzinfo)
            assert before.date() < local.date()
            if d.granularity == "weekly":
                assert local.weekday() == 0
            if d.granularity == "monthly":
                assert local.day == 1
    assert d.window(0)[0] == d.start and d.end == d.window(n)[0]


@PROPS
@given(time_defs(), st.integers(0, 3600 * 24 * 40))
def test_open_ended_count(d: TimeWindowPartitions, seconds: int) -> None:
    opened = TimeWindowPartitions(d.granularity, d.start, None, d.timezone)
    now = d.start.astimezone(UTC) + timedelta(seconds=seconds - 3600 * 24)
    complete = sum(1 for i in range(0, 2000) if opened.window(i)[1] <= now)
    assert opened.count(now) == complete
    assert d.count(now) == min(complete, d.count())


# ------------------------------------------------------------------------------ mappings


def overlap(a: tuple[datetime, datetime], b: tuple[datetime, datetime]) -> bool:
    # as instants: wall times of one zone compare without their DST fold
    (a0, a1), (b0, b1) = ((t.astimezone(timezone.utc) for t in w) for w in (a, b))
    return a0 < b1 and b0 < a1


def facets(
    defn: PartitionsDefinition, i: int
) -> tuple[tuple[datetime, datetime] | None, dict[str, str]]:
    """The time window and the static values (by dimension name) of partition ``i``."""
    if isinstance(defn, TimeWindowPartitions):
        return defn.window(i), {}
    if isinstance(defn, StaticPartitions):  # the static dimension is always called "cat"
        return None, {"cat": defn.key(i)}
    assert isinstance(defn, MultiPartitions)
    window, values = None, {}
    for name, idx in defn.dims_of(i).items():
        sub = dict(defn.dims)[name]
        if isinstance(sub, TimeWindowPartitions):
            window = sub.window(idx)
        else:
            values[name] = sub.key(idx)
    return window, values


def overlap_model(up: PartitionsDefinition, down: PartitionsDefinition, d: int) -> set[int]:
    dw, dv = facets(down, d)
    out = set()
    for u in up.all().indices():
        uw, uv = facets(up, u)
        if uw is not None and dw is not None and not overlap(uw, dw):
            continue
        if any(uv[k] != v for k, v in dv.items() if k in uv):
            continue
        out.add(u)
    return out


def check_against_model(
    mapping: PartitionMapping,
    up: PartitionsDefinition,
    down: PartitionsDefinition,
    down_rs: RangeSet,
    up_rs: RangeSet,
    model: dict[int, set[int]],
) -> None:
    """``model[d]`` is the upstream set downstream partition ``d`` needs."""
    needed = set().union(*(model[d] for d in down_rs.indices()))
    assert as_set(upstream_range(mapping, up, down, down_rs)) == needed
    affected = {d for d, ups in model.items() if ups & as_set(up_rs)}
    assert as_set(downstream_range(mapping, up, down, up_rs)) == affected


PAIRS = [
    ("daily", "monthly"),
    ("hourly", "daily"),
    ("weekly", "daily"),
    ("weekly", "monthly"),
    ("hourly", "weekly"),
]


@PROPS
@given(st.sampled_from(PAIRS), st.booleans(), st.sampled_from(TIMEZONES), st.booleans(), st.data())
def test_time_window_mapping_matches_overlap_model(
    pair: tuple[str, str], flip: bool, tz: str, same_tz: bool, data: st.DataObject
) -> None:
    fine, coarse = pair
    start = data.draw(starts())
    a = data.draw(time_defs(fine, tz, start))
    b = data.draw(
        time_defs(coarse, tz if same_tz else data.draw(st.sampled_from(TIMEZONES)), start)
    )
    up, down = (b, a) if flip else (a, b)
    mapping = default_mapping(up, down)
    assert mapping == PartitionMapping("time_window")
    model = {d: overlap_model(up, down, d) for d in down.all().indices()}
    check_against_model(mapping, up, down, data.draw(subsets(down)), data.draw(subsets(up)), model)


@PROPS
@given(
    st.sampled_from(sorted(FACTORIES)),
    st.sampled_from(TIMEZONES),
    st.integers(-3, 3),
    st.integers(0, 3),
    st.integers(-10, 10),
    st.data(),
)
def test_offset_mapping_matches_model(
    g: str, tz: str, lo: int, width: int, shift: int, data: st.DataObject
) -> None:
    up = data.draw(time_defs(g, tz))
    probe = FACTORIES[g](up.start, None, tz)
    down_start = probe.window(shift)[0]
    down = data.draw(time_defs(g, tz, down_start))
    mapping = PartitionMapping("offset", lo, lo + width)
    # keyed by instant: two wall times of a repeated DST hour compare (and hash) equal in
    # one zone, whatever their fold
    def instant(i: int, defn: PartitionsDefinition) -> datetime:
        return defn.window(i)[0].astimezone(timezone.utc)

    starts_up = {instant(u, up): u for u in up.all().indices()}
    model = {
        d: {
            starts_up[instant(d + o, down)]
            for o in range(lo, lo + width + 1)
            if instant(d + o, down) in starts_up
        }
        for d in down.all().indices()
    }
    check_against_model(mapping, up, down, data.draw(subsets(down)), data.draw(subsets(up)), model)
    if lo == 0 and width == 0:  # identity by time
        same = default_mapping(up, down)
        check_against_model(same, up, down, data.draw(subsets(down)), data.draw(subsets(up)), model)


@PROPS
@given(st.data())
def test_multi_mappings_match_model(data: st.DataObject) -> None:
    cats = data.draw(static_defs())
    start = data.draw(starts())
    tz = data.draw(st.sampled_from(TIMEZONES))
    g1, g2 = data.draw(
        st.sampled_from(
            [("daily", "daily"), ("daily", "monthly"), ("hourly", "daily"), ("daily", "weekly")]
        )
    )
    t1 = data.draw(time_defs(g1, tz, start))
    t2 = data.draw(time_defs(g2, tz, start))

    def wrap(t: TimeWindowPartitions, outer: bool) -> MultiPartitions:
        return multi(time=t, cat=cats) if outer else multi(cat=cats, time=t)

    shapes = [
        (wrap(t1, data.draw(st.booleans())), t2),
        (t1, wrap(t2, data.draw(st.booleans()))),
        (wrap(t1, data.draw(st.booleans())), wrap(t2, data.draw(st.booleans()))),
        (wrap(t1, data.draw(st.booleans())), cats),
    ]
    up, down = data.draw(st.sampled_from(shapes))
    if data.draw(st.booleans()):
        up, down = down, up
    mapping = default_mapping(up, down)
    model = {d: overlap_model(up, down, d) for d in down.all().indices()}
    check_against_model(mapping, up, down, data.draw(subsets(down)), data.draw(subsets(up)), model)


@PROPS
@given(definitions, definitions, st.data())
def test_all_and_last(
    up: PartitionsDefinition, down: PartitionsDefinition, data: st.DataObject
) -> None:
    down_rs, up_rs = data.draw(subsets(down)), data.draw(subsets(up))
    everything = PartitionMapping("all")
    assert upstream_range(everything, up, down, down_rs) == (up.all() if down_rs else RangeSet())
    assert downstream_range(everything, up, down, up_rs) == (down.all() if up_rs else RangeSet())
    last = PartitionMapping("last")
    tail = up.all().max()
    assert upstream_range(last, up, down, down_rs) == (
        RangeSet.of(tail, tail + 1) if down_rs else RangeSet()
    )
    assert downstream_range(last, up, down, up_rs) == (down.all() if tail in up_rs else RangeSet())


# ------------------------------------------------------------------------------ predicates


def row_of(defn: PartitionsDefinition, i: int, columns: list[str]) -> dict[str, object]:
    value = partition_value(defn, i)
    values = value if isinstance(defn, MultiPartitions) else (value,)
    return dict(zip(columns, values, strict=True))  # type: ignore[call-overload]


@PROPS
@given(definitions, st.data())
def test_predicate_selects_exactly(defn: PartitionsDefinition, data: st.DataObject) -> None:
    rs = data.draw(subsets(defn))
    columns = ["a", "b"] if isinstance(defn, MultiPartitions) else ["a"]
    pred = predicate(defn, rs, columns)
    for i in defn.all().indices():
        assert predicate_matches(pred, row_of(defn, i, columns)) == (i in rs), i
    if isinstance(defn, TimeWindowPartitions):
        assert len(pred) == len(rs.ranges)
    elif isinstance(defn, StaticPartitions):
        assert len(pred) == (1 if rs else 0)
    else:
        assert len(pred) <= 3 * len(rs.ranges)
