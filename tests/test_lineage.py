"""Lineage end to end on real tables: column lineage recorded per code version,
followed through the graph; provenance trees that survive rewrites and definition
changes; impact analysis of a bad version (issue: lineage)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest

import lakehouse as lh
from lakehouse.engines import column_lineage as cl
from lakehouse.errors import UnknownAssetError

ID, TR, AGG, FK, UNK = "identity", "transformed", "aggregated", "filter/join key", "unknown"


def col_rows(lake: lh.Lakehouse, name: str) -> set[tuple]:
    return {tuple(r) for r in lake.lineage(name).columns.iter_rows()}


def pipeline(fmt: str = "delta") -> list:
    @lh.asset(format=fmt)
    def orders() -> pl.DataFrame:
        return pl.DataFrame({"id": [1, 2, 3, 4], "customer": ["a", "b", "a", "c"],
                             "amount": [10.0, 20.0, 5.0, 7.5], "status": ["paid", "paid", "open", "paid"]})

    @lh.asset(format=fmt)
    def customers() -> pl.DataFrame:
        return pl.DataFrame({"customer": ["a", "b", "c"], "country": ["de", "fr", "de"],
                             "amount": [1.0, 2.0, 3.0]})

    @lh.asset(format=fmt)
    def enriched(orders: pl.LazyFrame, customers: pl.LazyFrame) -> pl.LazyFrame:
        return (orders.filter(pl.col("status") == "paid")
                .join(customers, on="customer", how="left", suffix="_limit")
                .select("id", "customer", "country", net=pl.col("amount") * 0.8, limit="amount_limit"))

    @lh.asset(engine="duckdb", format=fmt)
    def by_country(enriched):
        return """
            with t as (select country, net from enriched where net > 1)
            select country, sum(net) as revenue, count(*) as n from t group by all
        """

    return [orders, customers, enriched, by_country]


EXPECTED_ENRICHED = {
    ("id", "orders", "id", ID), ("customer", "orders", "customer", ID), ("country", "customers", "country", ID),
    ("net", "orders", "amount", TR), ("limit", "customers", "amount", ID),
    (None, "orders", "status", FK), (None, "orders", "customer", FK), (None, "customers", "customer", FK),
}
EXPECTED_BY_COUNTRY = {("country", "enriched", "country", ID), ("revenue", "enriched", "net", AGG),
                       (None, "enriched", "net", FK)}


@pytest.mark.parametrize("fmt", ["delta", "iceberg"])
def test_columns_recorded_for_polars_and_duckdb_assets(tmp_path: Path, fmt: str) -> None:
    lake = lh.Lakehouse(tmp_path / "lake", assets=pipeline(fmt))
    lake.materialize()
    assert col_rows(lake, "enriched") == EXPECTED_ENRICHED
    assert col_rows(lake, "by_country") == EXPECTED_BY_COUNTRY
    # roots built eagerly from Python data: their origin is outside the lakehouse
    assert col_rows(lake, "orders") == {(c, None, None, UNK) for c in ("id", "customer", "amount", "status")}
    cols = lake.lineage("by_country").columns
    assert cols.columns == ["column", "source_asset", "source_column", "kind"]
    assert cols.schema["source_asset"] == pl.String


def test_lineage_is_computed_once_per_code_version(tmp_path: Path, monkeypatch) -> None:
    calls: list[str] = []
    real = cl.analyse

    def counting(value, sources, **kw):
        calls.append(type(value).__name__)
        return real(value, sources, **kw)

    monkeypatch.setattr(cl, "analyse", counting)
    assets = pipeline()
    lake = lh.Lakehouse(tmp_path / "lake", assets=assets)
    lake.materialize()
    assert len(calls) == 4
    lake.materialize(force=True)  # same code: the hot path skips the analysis
    assert len(calls) == 4
    rows = lake.catalog.rows("code_versions")
    assert len(rows) == 4 and all(r["column_lineage"] for r in rows)

    @lh.asset
    def enriched(orders: pl.LazyFrame, customers: pl.LazyFrame) -> pl.LazyFrame:  # a new code version
        return (orders.join(customers, on="customer", suffix="_limit")
                .select("id", "customer", "country", net=pl.col("amount") - pl.col("amount_limit"),
                        limit="amount_limit"))

    lake2 = lh.Lakehouse(tmp_path / "lake", assets=[*assets[:2], enriched, assets[3]])
    lake2.materialize()
    assert len(calls) == 5  # only the changed asset was analysed again
    assert col_rows(lake2, "enriched") == {
        ("id", "orders", "id", ID), ("customer", "orders", "customer", ID), ("country", "customers", "country", ID),
        ("net", "orders", "amount", TR), ("net", "customers", "amount", TR), ("limit", "customers", "amount", ID),
        (None, "orders", "customer", FK), (None, "customers", "customer", FK)}
    assert len(lake2.catalog.rows("code_versions")) == 5


def test_column_lineage_through_the_whole_graph(tmp_path: Path) -> None:
    lake = lh.Lakehouse(tmp_path / "lake", assets=pipeline())
    lake.materialize()
    up = lake.column_lineage("by_country.revenue")
    assert up.columns == ["asset", "column", "source_asset", "source_column", "kind", "depth"]
    got = {tuple(r) for r in up.iter_rows()}
    assert got == {
        ("by_country", "revenue", "enriched", "net", AGG, 1),
        ("by_country", None, "enriched", "net", FK, 1),
        ("enriched", "net", "orders", "amount", TR, 2),
        ("enriched", None, "orders", "status", FK, 2),
        ("enriched", None, "orders", "customer", FK, 2),
        ("enriched", None, "customers", "customer", FK, 2),
        ("orders", "amount", None, None, UNK, 3),
        ("orders", "status", None, None, UNK, 3),
        ("orders", "customer", None, None, UNK, 3),
        ("customers", "customer", None, None, UNK, 3),
    }
    direct = {tuple(r) for r in lake.column_lineage("by_country.revenue", indirect=False).iter_rows()}
    assert direct == {("by_country", "revenue", "enriched", "net", AGG, 1),
                      ("enriched", "net", "orders", "amount", TR, 2), ("orders", "amount", None, None, UNK, 3)}

    down = {tuple(r) for r in lake.column_lineage("orders.amount", direction="downstream").iter_rows()}
    assert down == {("enriched", "net", "orders", "amount", TR, 1),
                    ("by_country", "revenue", "enriched", "net", AGG, 2),
                    ("by_country", None, "enriched", "net", FK, 2)}
    key = {tuple(r) for r in lake.column_lineage("customers.customer", direction="downstream").iter_rows()}
    assert key == {("enriched", None, "customers", "customer", FK, 1)}


def test_column_lineage_errors_name_the_asset_and_the_fix(tmp_path: Path) -> None:
    lake = lh.Lakehouse(tmp_path / "lake", assets=pipeline())
    with pytest.raises(UnknownAssetError, match="no recorded column lineage") as err:
        lake.column_lineage("enriched.net")
    assert "materialize" in str(err.value)
    lake.materialize()
    with pytest.raises(UnknownAssetError, match="no column 'nope'") as err:
        lake.column_lineage("enriched.nope")
    assert err.value.asset == "enriched" and "net" in str(err.value)
    with pytest.raises(UnknownAssetError):
        lake.column_lineage("nowhere.x")
    with pytest.raises(ValueError, match="direction"):
        lake.column_lineage("enriched.net", direction="sideways")


def test_namespaced_assets_and_eager_results(tmp_path: Path) -> None:
    @lh.asset(namespace="sales")
    def raw() -> pl.DataFrame:
        return pl.DataFrame({"k": [1, 2], "v": [1.0, 2.0]})

    @lh.asset(namespace="sales")
    def eager(raw: pl.LazyFrame) -> pl.DataFrame:  # built lazily, collected at the end
        return raw.with_columns(w=pl.col("v") * 2).collect()

    @lh.asset(namespace="sales")
    def opaque(raw: pl.DataFrame) -> pl.DataFrame:  # eager all the way: no plan
        return raw.with_columns(w=pl.col("v") * 2)

    lake = lh.Lakehouse(tmp_path / "lake", assets=[raw, eager, opaque])
    lake.materialize()
    assert col_rows(lake, "sales/eager") == {("k", "sales/raw", "k", ID), ("v", "sales/raw", "v", ID),
                                             ("w", "sales/raw", "v", TR)}
    assert col_rows(lake, "sales/opaque") == {(c, None, None, UNK) for c in ("k", "v", "w")}
    up = lake.column_lineage("sales/eager.w")
    assert ("sales/eager", "w", "sales/raw", "v", TR, 1) in {tuple(r) for r in up.iter_rows()}


DAYS = lh.daily(start="2013-01-01", end="2013-03-01")


def day_frame(ctx: lh.Context, salt: float = 0.0) -> pl.DataFrame:
    start, end = ctx.partition.start.date(), ctx.partition.end.date()
    days = pl.date_range(start, end - timedelta(days=1), "1d", eager=True)
    return pl.DataFrame({"day": days, "value": [float(i) + salt for i in range(len(days))]})


def partitioned(salt: dict[str, float]) -> list:
    @lh.asset(partitions=DAYS, partition_column="day", code_version="1")
    def events(ctx: lh.Context) -> pl.DataFrame:
        return day_frame(ctx, salt["v"])

    @lh.asset(partitions=DAYS, partition_column="day", code_version="1")
    def daily_totals(events: pl.LazyFrame) -> pl.LazyFrame:
        return events.group_by("day").agg(total=pl.col("value").sum())

    @lh.asset(code_version="1")
    def overall(daily_totals: pl.LazyFrame) -> pl.LazyFrame:
        return daily_totals.select(pl.col("total").sum())

    return [events, daily_totals, overall]


def test_partition_filters_of_the_step_are_not_reported(tmp_path: Path) -> None:
    lake = lh.Lakehouse(tmp_path / "lake", assets=partitioned({"v": 0.0}))
    lake.materialize(partitions="2013-01-01..2013-01-31")
    assert col_rows(lake, "daily_totals") == {("day", "events", "day", ID), ("total", "events", "value", AGG)}


def test_provenance_tree_of_partitioned_versions(tmp_path: Path) -> None:
    salt = {"v": 0.0}
    lake = lh.Lakehouse(tmp_path / "lake", assets=partitioned(salt))
    lake.materialize("events", partitions="2013-01-01..2013-01-31")
    lake.materialize("events", partitions="2013-02-01..2013-02-28")
    lake.materialize()
    prov = lake.provenance("overall")
    assert prov.columns == ["asset", "version", "partitions", "input", "input_version", "run_id", "code_version",
                            "materialized_at", "depth"]
    by_depth = {d: sorted((r["asset"], r["partitions"]) for r in prov.filter(pl.col("depth") == d).to_dicts())
                for d in (0, 1, 2)}
    assert by_depth[0] == [("overall", None)]
    assert by_depth[1] == [("daily_totals", "2013-01-01..2013-02-28")]
    # the events table version daily_totals read is made of both backfill commits
    assert by_depth[2] == [("events", "2013-01-01..2013-01-31"), ("events", "2013-02-01..2013-02-28")]
    assert prov.filter(pl.col("asset") == "events")["input"].to_list() == [None, None]

    # depth limits how far up it goes
    assert set(lake.provenance("overall", depth=0)["asset"]) == {"overall"}
    assert set(lake.provenance("overall", depth=1)["asset"]) == {"overall", "daily_totals"}

    # one partition of daily_totals recomputed from a rewritten January: only January counts upstream
    first_overall = lake.history("overall")["version"][0]
    salt["v"] = 100.0
    lake.materialize("events", partitions="2013-01-05", force=True)
    lake.materialize("daily_totals", partitions="2013-01-05")
    newest = lake.provenance("daily_totals")
    mats = {(r["asset"], r["partitions"], r["version"]) for r in newest.to_dicts()}
    assert ("daily_totals", "2013-01-05", lake.history("daily_totals")["version"][0]) in mats
    assert ("events", "2013-01-05", lake.history("events")["version"][0]) in mats

    # the old version of overall still shows what it was made from, after the rewrite
    old = lake.provenance("overall", version=first_overall)
    assert sorted(old.filter(pl.col("asset") == "events")["partitions"].to_list()) == [
        "2013-01-01..2013-01-31", "2013-02-01..2013-02-28"]


def test_provenance_survives_rewrites_and_definition_changes(tmp_path: Path) -> None:
    assets = pipeline()
    lake = lh.Lakehouse(tmp_path / "lake", assets=assets)
    lake.materialize()
    v0 = lake.table("by_country").version
    first = lake.provenance("by_country")
    lake.materialize("orders", force=True)
    lake.materialize()
    assert lake.table("orders").version == "1"
    again = lake.provenance("by_country", version=v0)
    assert again.drop("materialized_at").equals(first.drop("materialized_at"))
    assert again.filter(pl.col("asset") == "enriched").sort("input")["input_version"].to_list() == ["0", "0"]

    # the definitions change: enriched no longer reads customers, by_country is removed
    @lh.asset
    def enriched(orders: pl.LazyFrame) -> pl.LazyFrame:
        return orders.select("id", "customer", country=pl.lit("de"), net="amount", limit="amount")

    changed = lh.Lakehouse(tmp_path / "lake", assets=[assets[0], enriched])
    changed.materialize()
    old = changed.provenance("by_country", version=v0)  # a removed asset, from the catalog alone
    assert old.drop("materialized_at").equals(first.drop("materialized_at"))
    assert changed.history("by_country")["version"].to_list() == ["1", "0"]
    assert changed.provenance("enriched").filter(pl.col("depth") == 0)["input"].to_list() == ["orders"]
    with pytest.raises(UnknownAssetError, match="no recorded version '9'"):
        changed.provenance("enriched", version=9)
    with pytest.raises(UnknownAssetError):
        changed.provenance("never_defined")


@pytest.mark.parametrize("fmt", ["delta", "iceberg"])
def test_impact_of_a_bad_version(tmp_path: Path, fmt: str) -> None:
    lake = lh.Lakehouse(tmp_path / "lake", assets=pipeline(fmt))
    lake.materialize()
    bad = lake.table("orders").version
    imp = lake.impact("orders", version=bad)
    assert imp.columns == ["asset", "partitions", "version", "input", "input_version", "run_id", "code_version",
                           "materialized_at", "current", "depth"]
    assert sorted(zip(imp["asset"], imp["depth"], imp["current"], strict=True)) == [
        ("by_country", 2, True), ("enriched", 1, True)]
    # fixed upstream and recomputed downstream: the old consumers are no longer current
    lake.materialize("orders", force=True)
    lake.materialize()
    imp = lake.impact("orders", version=bad)
    assert sorted(zip(imp["asset"], imp["current"], strict=True)) == [("by_country", False), ("enriched", False)]
    assert lake.impact("orders").height == 2  # the new version: its own consumers
    assert lake.impact("by_country").height == 0
    # provenance of the old downstream version still names the bad upstream version
    old = lake.history("by_country")["version"][-1]
    prov = lake.provenance("by_country", version=old)
    assert prov.filter(pl.col("asset") == "orders")["version"].to_list() == [bad]


def test_impact_follows_only_the_partitions_that_carried_the_version(tmp_path: Path) -> None:
    salt = {"v": 0.0}
    lake = lh.Lakehouse(tmp_path / "lake", assets=partitioned(salt))
    lake.materialize("events", partitions="2013-01-01..2013-01-31")
    january = lake.table("events").version
    lake.materialize("events", partitions="2013-02-01..2013-02-28")
    lake.materialize("daily_totals", partitions="2013-02-01..2013-02-28")  # reads only February
    lake.materialize("daily_totals", partitions="2013-01-10")  # reads January 10
    lake.materialize("overall")
    imp = lake.impact("events", version=january)
    rows = sorted((r["asset"], r["partitions"], r["depth"]) for r in imp.to_dicts())
    assert rows == [("daily_totals", "2013-01-10", 1), ("overall", None, 2)]
    # a later overwrite of January 10 ends January's reach for consumers after it
    lake.materialize("events", partitions="2013-01-10", force=True)
    lake.materialize("daily_totals", partitions="2013-01-10", force=True)
    imp = lake.impact("events", version=january)
    assert sorted(imp.filter(pl.col("depth") == 1)["partitions"].to_list()) == ["2013-01-10"]
    assert imp.filter(pl.col("depth") == 1)["current"].to_list() == [False]


def test_history_columns(tmp_path: Path) -> None:
    lake = lh.Lakehouse(tmp_path / "lake", assets=pipeline())
    lake.materialize()
    lake.materialize("orders", force=True)
    hist = lake.history("orders")
    for col in ("version", "partitions", "run_id", "code_version", "rows", "seconds", "outcome"):
        assert col in hist.columns
    assert hist["version"].to_list() == ["1", "0"]
    assert hist["rows"].to_list() == [4, 4]
    assert set(hist["outcome"]) == {"materialized"}


def test_thread_executor_records_lineage(tmp_path: Path) -> None:
    lake = lh.Lakehouse(tmp_path / "lake", assets=pipeline(), executor="threads", max_workers=2)
    lake.materialize()
    assert col_rows(lake, "enriched") == EXPECTED_ENRICHED
    assert col_rows(lake, "by_country") == EXPECTED_BY_COUNTRY


@pytest.mark.postgres
def test_lineage_in_a_postgres_catalog(tmp_path: Path, postgres_db_url: str) -> None:
    lake = lh.Lakehouse(tmp_path / "lake", assets=pipeline(), catalog=postgres_db_url)
    lake.materialize()
    assert col_rows(lake, "enriched") == EXPECTED_ENRICHED
    assert lake.provenance("by_country").height == 5  # by_country, enriched (2 inputs), orders, customers
    assert {tuple(r)[:2] for r in lake.column_lineage("by_country.country").iter_rows()} >= {
        ("by_country", "country"), ("enriched", "country")}


@pytest.mark.s3
def test_lineage_on_object_storage(s3_bucket, tmp_path: Path) -> None:
    lake = lh.Lakehouse(s3_bucket.uri, assets=pipeline(), storage_options=s3_bucket.storage_options,
                        local_dir=str(tmp_path / "state"))
    lake.materialize()
    assert col_rows(lake, "enriched") == EXPECTED_ENRICHED
    assert col_rows(lake, "by_country") == EXPECTED_BY_COUNTRY


@pytest.mark.dask
def test_lineage_and_events_from_dask_workers(tmp_path: Path) -> None:
    import json

    path = tmp_path / "events.jsonl"
    with lh.DaskExecutor(n_workers=1, threads_per_worker=1) as ex:
        lake = lh.Lakehouse(tmp_path / "lake", assets=pipeline(), executor=ex,
                            openlineage={"transport": "file", "path": str(path)})
        lake.materialize()
    assert col_rows(lake, "enriched") == EXPECTED_ENRICHED  # analysed on the worker
    assert col_rows(lake, "by_country") == EXPECTED_BY_COUNTRY
    events = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(events) == 8
    done = next(e for e in events if e["job"]["name"] == "enriched" and e["eventType"] == "COMPLETE")
    assert set(done["outputs"][0]["facets"]["columnLineage"]["fields"]) == {"id", "customer", "country", "net",
                                                                           "limit"}
    assert done["run"]["facets"]["lakehouse"]["worker"] != ""
