"""Steps read an upstream that their run replaced whole from the files its write reported
(``WriteResult.files``), without opening the Delta table. The frame they get must be
exactly what a Delta reader gives: same columns, types and values, for every type."""

from __future__ import annotations

import datetime as dt
import decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lakehouse as lh

# Polars types and a value strategy for each (None is added to every column)
TYPES: dict[str, tuple[Any, Any]] = {
    "i8": (pl.Int8, st.integers(-128, 127)),
    "i64": (pl.Int64, st.integers(-(2**63), 2**63 - 1)),
    "u16": (pl.UInt16, st.integers(0, 2**16 - 1)),
    "u32": (pl.UInt32, st.integers(0, 2**32 - 1)),
    "f32": (pl.Float32, st.floats(width=32, allow_nan=False)),
    "f64": (pl.Float64, st.floats(allow_nan=True)),
    "bool": (pl.Boolean, st.booleans()),
    "str": (pl.String, st.text(max_size=8)),
    "cat": (pl.Categorical, st.sampled_from(["a", "b", "c"])),
    "bin": (pl.Binary, st.binary(max_size=8)),
    "date": (pl.Date, st.dates(dt.date(1900, 1, 1), dt.date(2200, 1, 1))),
    "ts_us": (
        pl.Datetime("us"),
        st.datetimes(dt.datetime(1900, 1, 1), dt.datetime(2200, 1, 1)),
    ),
    "ts_ns": (
        pl.Datetime("ns"),
        st.datetimes(dt.datetime(1970, 1, 1), dt.datetime(2200, 1, 1)),
    ),
    "ts_utc": (
        pl.Datetime("us", "UTC"),
        st.datetimes(dt.datetime(1900, 1, 1), dt.datetime(2200, 1, 1), timezones=st.just(dt.UTC)),
    ),
    "dec": (
        pl.Decimal(10, 2),
        st.decimals(-(10**7), 10**7, places=2, allow_nan=False, allow_infinity=False),
    ),
    "list": (pl.List(pl.Int32), st.lists(st.integers(-(2**31), 2**31 - 1), max_size=3)),
    "struct": (
        pl.Struct({"x": pl.Int64, "y": pl.String}),
        st.fixed_dictionaries({"x": st.integers(-5, 5), "y": st.text(max_size=3)}),
    ),
}


@st.composite
def frames(draw: st.DrawFn) -> pl.DataFrame:
    names = draw(st.lists(st.sampled_from(sorted(TYPES)), min_size=1, max_size=5, unique=True))
    n = draw(st.integers(0, 6))
    data = {}
    for name in names:
        dtype, values = TYPES[name]
        column = draw(st.lists(st.one_of(st.none(), values), min_size=n, max_size=n))
        if name == "dec":
            column = [None if v is None else decimal.Decimal(v) for v in column]
        data[name] = pl.Series(name, column, dtype=dtype)
    return pl.DataFrame(data)


def _lake(path: Path, frame: pl.DataFrame, seen: dict[str, Any]) -> Any:
    @lh.asset(code_version="1")
    def up() -> pl.DataFrame:
        return frame

    @lh.asset(code_version="1")
    def down(up: pl.LazyFrame) -> pl.DataFrame:
        seen["frame"] = up.collect()
        return pl.DataFrame({"rows": [seen["frame"].height]})

    return lh.Lakehouse(path, assets=[up, down])


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(frames())
def test_reading_the_written_files_equals_a_delta_read(tmp_path: Path, frame: pl.DataFrame) -> None:
    import uuid

    seen: dict[str, Any] = {}
    lake = _lake(tmp_path / uuid.uuid4().hex, frame, seen)
    lake.materialize()
    expected = lake.read("up")  # through the Delta log
    got = seen["frame"]
    assert got.schema == expected.schema
    assert got.equals(expected)


def test_the_files_are_used_only_for_a_whole_local_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Which inputs get the files: upstreams replaced whole in this run; not partition
    writes, not a version the run did not write."""
    from lakehouse.engines import polars as engine

    scans: list[tuple[str, tuple[str, ...]]] = []
    real = engine.scan

    def spy(source: Any) -> Any:
        files = source.ref.files
        scans.append((source.ref.asset, () if files is None else files.paths))
        return real(source)

    monkeypatch.setattr(engine, "scan", spy)

    @lh.asset(code_version="1")
    def whole() -> pl.DataFrame:
        return pl.DataFrame({"x": [1, 2, 3]})

    @lh.asset(
        partitions=lh.daily(start="2024-01-01", end="2024-01-03"),
        partition_column="day",
        code_version="1",
        max_partitions_per_run=1,
    )
    def daily(ctx: lh.Context) -> pl.DataFrame:
        return pl.DataFrame({"day": [ctx.partition.start.date()], "x": [1]})

    @lh.asset(code_version="1")
    def both(whole: pl.LazyFrame, daily: pl.LazyFrame) -> pl.DataFrame:
        return pl.DataFrame({"n": [whole.collect().height + daily.collect().height]})

    lake = lh.Lakehouse(tmp_path / "lake", assets=[whole, daily, both])
    lake.materialize(partitions="all")
    assert lake.read("both")["n"].to_list() == [5]
    files = dict(scans)
    assert len(files["whole"]) == 1 and Path(files["whole"][0]).is_file()
    assert files["daily"] == ()  # a partitioned table: its log is read
    # the next run reads an upstream it did not write: through the log
    scans.clear()
    lake.materialize("both", force=True)
    assert dict(scans) == {"whole": (), "daily": ()}
    # an upstream rewritten in the run again reports its files (of the new version)
    scans.clear()
    lake.materialize(["whole", "both"], force=True)
    assert len(dict(scans)["whole"]) == 1 and dict(scans)["whole"] != files["whole"]
    assert lake.read("both")["n"].to_list() == [5]
