"""Partitions end to end on real Delta tables: ranges in one commit, mappings,
exact overwrites, merge, schema modes, out-of-range rows (issue: partitions)."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
from deltalake import DeltaTable

import lakehouse as lh
from lakehouse.errors import MaterializeError, PartitionError

DAYS = lh.daily(start="2013-01-01", end="2013-03-01")  # 59 days


def day_rows(ctx: lh.Context, per_day: int = 2, salt: int = 0) -> pl.DataFrame:
    start = ctx.partition.start.date()
    end = ctx.partition.end.date()
    days = pl.date_range(start, end - timedelta(days=1), "1d", eager=True)
    return pl.DataFrame({"day": days}).join(pl.DataFrame({"n": list(range(per_day))}), how="cross").with_columns(
        value=pl.col("n") + salt
    )


def commits(path: Path) -> int:
    return len(DeltaTable(str(path)).history())


def test_range_runs_in_one_call_and_one_commit(tmp_path: Path) -> None:
    calls: list[str] = []

    @lh.asset(partitions=DAYS, partition_column="day", code_version="1")
    def events(ctx: lh.Context) -> pl.DataFrame:
        calls.append(ctx.partition.key)
        return day_rows(ctx)

    lake = lh.Lakehouse(tmp_path, assets=[events])
    res = lake.materialize(partitions="2013-01-01..2013-01-31")
    assert calls == ["2013-01-01..2013-01-31"]
    assert res.assets["partitions"].to_list() == ["2013-01-01..2013-01-31"]
    assert commits(tmp_path / "events") == 1
    assert lake.read("events").height == 62
    # only the missing rest runs by default, again as one range
    lake.materialize()
    assert calls[-1] == "2013-02-01..2013-02-28"
    assert lake.plan().height == 0
    st = lake.status("events")
    assert st["count"].sum() == 59 and not st["stale"].any()
    assert lake.status("events", expand=True).height == 59


def test_rerunning_a_materialized_range_overwrites_exactly(tmp_path: Path) -> None:
    salt = {"v": 0}

    @lh.asset(partitions=DAYS, partition_column="day", code_version="1")
    def events(ctx: lh.Context) -> pl.DataFrame:
        return day_rows(ctx, salt=salt["v"])

    lake = lh.Lakehouse(tmp_path, assets=[events])
    lake.materialize()
    salt["v"] = 100
    lake.materialize(partitions="2013-01-10..2013-01-12", force=True)
    df = lake.read("events")
    assert df.height == 59 * 2
    changed = df.filter(pl.col("value") >= 100)["day"].unique().sort().to_list()
    assert changed == [date(2013, 1, 10), date(2013, 1, 11), date(2013, 1, 12)]
    hist = lake.history("events")
    assert hist["partitions"].to_list()[0] == "2013-01-10..2013-01-12"


def test_max_partitions_per_run_splits_into_chunks(tmp_path: Path) -> None:
    calls: list[str] = []

    @lh.asset(partitions=DAYS, partition_column="day", max_partitions_per_run=10, code_version="1")
    def events(ctx: lh.Context) -> pl.DataFrame:
        calls.append(ctx.partition.key)
        return day_rows(ctx)

    lake = lh.Lakehouse(tmp_path, assets=[events])
    lake.materialize(partitions="2013-01-01..2013-01-25")
    assert calls == ["2013-01-01..2013-01-10", "2013-01-11..2013-01-20", "2013-01-21..2013-01-25"]


def test_daily_to_monthly_rollup_and_exact_downstream_staleness(tmp_path: Path) -> None:
    salt = {"v": 0}

    @lh.asset(partitions=DAYS, partition_column="day", code_version="1")
    def daily_events(ctx: lh.Context) -> pl.DataFrame:
        return day_rows(ctx, salt=salt["v"])

    seen: list[tuple[str, int]] = []

    @lh.asset(partitions=lh.monthly(start="2013-01-01", end="2013-03-01"), partition_column="month",
              code_version="1")
    def monthly_totals(ctx: lh.Context, daily_events: pl.LazyFrame) -> pl.DataFrame:
        df = daily_events.collect()
        seen.append((ctx.partition.key, df["day"].n_unique()))
        return df.group_by(pl.col("day").dt.truncate("1mo").alias("month")).agg(pl.col("value").sum())

    lake = lh.Lakehouse(tmp_path, assets=[daily_events, monthly_totals])
    lake.materialize()
    # the input arrived filtered to the days of the months computed (one call for both months)
    assert seen == [("2013-01..2013-02", 59)]
    salt["v"] = 1
    lake.materialize("daily_events", partitions="2013-02-03", force=True)
    plan = lake.plan()
    assert plan.select("asset", "partitions", "reason").rows() == [("monthly_totals", "2013-02", "upstream_changed")]
    lake.materialize()
    assert seen[-1] == ("2013-02", 28)
    totals = dict(lake.read("monthly_totals").iter_rows())
    assert totals[date(2013, 1, 1)] == 31 and totals[date(2013, 2, 1)] == 28 + 2


def test_offset_mapping_reads_yesterday(tmp_path: Path) -> None:
    @lh.asset(partitions=DAYS, partition_column="day", code_version="1")
    def events(ctx: lh.Context) -> pl.DataFrame:
        return day_rows(ctx, per_day=1)

    seen: dict[str, list[date]] = {}

    @lh.asset(partitions=DAYS, partition_column="day", ins={"prev": lh.upstream("events", offset=-1)},
              code_version="1")
    def lagged(ctx: lh.Context, prev: pl.LazyFrame) -> pl.DataFrame:
        days = prev.collect()["day"].sort().to_list()
        seen[ctx.partition.key] = days
        return pl.DataFrame({"day": [d + timedelta(days=1) for d in days], "prev": days})

    lake = lh.Lakehouse(tmp_path, assets=[events, lagged])
    lake.materialize("events")
    lake.materialize("lagged", partitions="2013-01-05..2013-01-07")
    # the input holds exactly the previous day of each partition computed
    assert seen == {"2013-01-05..2013-01-07": [date(2013, 1, 4), date(2013, 1, 5), date(2013, 1, 6)]}
    # rewriting events' 2013-01-09 makes lagged's 2013-01-10 stale, nothing else
    lake.materialize("lagged")
    lake.materialize("events", partitions="2013-01-09", force=True)
    assert lake.plan().select("asset", "partitions", "reason").rows() == [
        ("lagged", "2013-01-10", "upstream_changed")]


def test_static_by_daily_multi_partitions(tmp_path: Path) -> None:
    parts = lh.multi(date=lh.daily(start="2013-01-01", end="2013-01-04"), region=lh.static(["eu", "us"]))

    @lh.asset(partitions=parts, partition_column=["day", "region"], code_version="1")
    def sales(ctx: lh.Context) -> pl.DataFrame:
        rows = []
        for key in ctx.partition.keys:
            d, region = key.split("|")
            rows.append({"day": date.fromisoformat(d), "region": region, "amount": 1})
        return pl.DataFrame(rows)

    lake = lh.Lakehouse(tmp_path, assets=[sales])
    lake.materialize(partitions=["2013-01-02|us"])
    assert lake.read("sales").rows() == [(date(2013, 1, 2), "us", 1)]
    lake.materialize()
    assert lake.read("sales").height == 6
    assert lake.plan().height == 0


def test_out_of_range_rows_are_rejected_before_commit(tmp_path: Path) -> None:
    @lh.asset(partitions=DAYS, partition_column="day", code_version="1")
    def leaky(ctx: lh.Context) -> pl.DataFrame:
        return pl.DataFrame({"day": [ctx.partition.start.date(), date(2013, 2, 20)]})

    lake = lh.Lakehouse(tmp_path, assets=[leaky])
    with pytest.raises(MaterializeError) as err:
        lake.materialize(partitions="2013-01-05")
    text = str(err.value)
    assert "leaky" in text and "2013-02-20" in text and "2013-01-05" in text
    assert not (tmp_path / "leaky" / "_delta_log").exists() or commits(tmp_path / "leaky") == 0


def test_failed_partition_run_keeps_published_data(tmp_path: Path) -> None:
    fail = {"on": False}

    @lh.asset(partitions=DAYS, partition_column="day", code_version="1")
    def events(ctx: lh.Context) -> pl.DataFrame:
        if fail["on"]:
            raise RuntimeError("source down")
        return day_rows(ctx)

    lake = lh.Lakehouse(tmp_path, assets=[events])
    lake.materialize(partitions="2013-01-01..2013-01-05")
    before = lake.read("events").sort("day", "n")
    fail["on"] = True
    res = lake.materialize(partitions="2013-01-01..2013-01-05", force=True, raise_on_error=False)
    assert not res.ok
    assert lake.read("events").sort("day", "n").equals(before)


def test_bad_partition_keys_name_asset_key_and_range(tmp_path: Path) -> None:
    @lh.asset(partitions=DAYS, partition_column="day", code_version="1")
    def events(ctx: lh.Context) -> pl.DataFrame:
        return day_rows(ctx)

    lake = lh.Lakehouse(tmp_path, assets=[events])
    with pytest.raises(PartitionError) as err:
        lake.materialize(partitions="2014-05-01")
    text = str(err.value)
    assert "events" in text and "2014-05-01" in text and "2013-01-01" in text


def test_merge_updates_and_inserts(tmp_path: Path) -> None:
    batch = {"rows": [(1, "a"), (2, "b")]}

    @lh.asset(write=lh.merge(on="id"), code_version="1")
    def customers() -> pl.DataFrame:
        return pl.DataFrame(batch["rows"], schema=["id", "name"], orient="row")

    lake = lh.Lakehouse(tmp_path, assets=[customers])
    lake.materialize()
    batch["rows"] = [(2, "B"), (3, "c")]
    lake.materialize(force=True)
    assert sorted(lake.read("customers").rows()) == [(1, "a"), (2, "B"), (3, "c")]


def test_merge_delete_missing_within_partitions(tmp_path: Path) -> None:
    batch = {"ids": [1, 2, 3]}

    @lh.asset(partitions=DAYS, partition_column="day", write=lh.merge(on=["day", "id"], delete_missing=True),
              code_version="1")
    def items(ctx: lh.Context) -> pl.DataFrame:
        d = ctx.partition.start.date()
        return pl.DataFrame({"day": [d] * len(batch["ids"]), "id": batch["ids"]})

    lake = lh.Lakehouse(tmp_path, assets=[items])
    lake.materialize(partitions="2013-01-01")
    lake.materialize(partitions="2013-01-02")
    batch["ids"] = [2, 4]
    lake.materialize(partitions="2013-01-01", force=True)
    got = sorted(lake.read("items").rows())
    assert got == [(date(2013, 1, 1), 2), (date(2013, 1, 1), 4),
                   (date(2013, 1, 2), 1), (date(2013, 1, 2), 2), (date(2013, 1, 2), 3)]


@pytest.mark.parametrize("mode", ["strict", "add_columns", "replace"])
def test_schema_modes(tmp_path: Path, mode: str) -> None:
    cols = {"extra": False}

    @lh.asset(schema=mode, code_version="1")
    def table() -> pl.DataFrame:
        df = pl.DataFrame({"id": [1, 2]})
        return df.with_columns(extra=pl.lit("x")) if cols["extra"] else df

    lake = lh.Lakehouse(tmp_path, assets=[table])
    lake.materialize()
    cols["extra"] = True
    res = lake.materialize(force=True, raise_on_error=False)
    if mode == "strict":
        assert not res.ok and "+ extra" in res.assets["error"][0]
        assert lake.read("table").columns == ["id"]
    else:
        assert res.ok and lake.read("table").columns == ["id", "extra"]
    if mode == "add_columns":
        cols["extra"] = False  # dropping a column is not additive
        bad = lake.materialize(force=True, raise_on_error=False)
        assert not bad.ok and "- extra" in bad.assets["error"][0]


def test_unpartitioned_upstream_feeds_every_partition(tmp_path: Path) -> None:
    @lh.asset(code_version="1")
    def rates() -> pl.DataFrame:
        return pl.DataFrame({"rate": [2]})

    @lh.asset(partitions=DAYS, partition_column="day", code_version="1")
    def scaled(ctx: lh.Context, rates: pl.DataFrame) -> pl.DataFrame:
        return day_rows(ctx, per_day=1).with_columns(value=pl.col("value") * rates["rate"][0])

    @lh.asset(code_version="1")
    def total(scaled: pl.LazyFrame) -> pl.LazyFrame:
        return scaled.select(pl.len().alias("n"))

    lake = lh.Lakehouse(tmp_path, assets=[rates, scaled, total])
    lake.materialize()
    assert lake.read("total")["n"].to_list() == [59]
    lake.materialize("rates", force=True)
    plan = lake.plan()
    assert plan.select("asset", "count", "reason").rows() == [("scaled", 59, "upstream_changed"),
                                                              ("total", 1, "upstream_stale")]


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

TEN = lh.daily(start="2013-01-01", end="2013-01-11")


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 9), st.integers(0, 9), st.booleans()), min_size=1, max_size=5))
def test_any_sequence_of_runs_matches_an_in_memory_model(tmp_path_factory, ops) -> None:
    import tempfile

    salt = {"v": 0}

    @lh.asset(partitions=TEN, partition_column="day", code_version="1")
    def ev(ctx: lh.Context) -> pl.DataFrame:
        return day_rows(ctx, per_day=1, salt=salt["v"])

    model: dict[date, int] = {}
    with tempfile.TemporaryDirectory(dir=tmp_path_factory.getbasetemp()) as tmp:
        lake = lh.Lakehouse(tmp, assets=[ev])
        for step, (a, b, force) in enumerate(ops, start=1):
            lo, hi = min(a, b), max(a, b)
            salt["v"] = step * 100
            keys = f"{TEN.key(lo)}..{TEN.key(hi)}"
            lake.materialize(partitions=keys, force=force)
            for i in range(lo, hi + 1):
                d = date(2013, 1, 1) + timedelta(days=i)
                if force or d not in model:
                    model[d] = step * 100
        got = {d: v for d, v in lake.read("ev").select("day", "value").iter_rows()}
        assert got == model
        st_ = lake.status("ev")
        assert st_.filter(~pl.col("stale"))["count"].sum() == len(model)
        assert st_.filter(pl.col("reason") == "partition_missing")["count"].sum() == 10 - len(model)


def test_out_of_range_rows_rejected_on_an_existing_table(tmp_path: Path) -> None:
    leak = {"on": False}

    @lh.asset(partitions=DAYS, partition_column="day", code_version="1")
    def grows(ctx: lh.Context) -> pl.DataFrame:
        rows = day_rows(ctx, per_day=1)
        return pl.concat([rows, rows.with_columns(day=pl.lit(date(2013, 2, 27)))]) if leak["on"] else rows

    lake = lh.Lakehouse(tmp_path, assets=[grows])
    lake.materialize(partitions="2013-01-01..2013-01-03")
    before = lake.read("grows").sort("day")
    leak["on"] = True
    with pytest.raises(MaterializeError) as err:
        lake.materialize(partitions="2013-01-02", force=True)
    text = str(err.value)
    assert "grows" in text and "2013-01-02" in text and "2013-02-27" in text and "nothing was published" in text
    assert lake.read("grows").sort("day").equals(before)
