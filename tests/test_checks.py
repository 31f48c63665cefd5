"""Data-quality checks and write-audit-publish on real Delta and Iceberg tables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest

import lakehouse as lh
from lakehouse import checks as lhchecks
from lakehouse.errors import DefinitionError, MaterializeError, UnknownAssetError

#: What the assets of a test return; tests flip it between runs.
DATA: dict[str, Any] = {}


@pytest.fixture(autouse=True)
def _clean_registries() -> Any:
    before = set(lhchecks.REGISTRY)
    DATA.clear()
    yield
    for key in set(lhchecks.REGISTRY) - before:
        lhchecks.REGISTRY.pop(key, None)


def _orders() -> pl.DataFrame:
    return DATA.get(
        "orders",
        pl.DataFrame(
            {"id": [1, 2, 3], "status": ["open", "closed", "open"], "amount": [10.0, 20.0, 5.0]}
        ),
    )


def _lake(tmp_path: Path, assets: list[Any], fmt: str = "delta") -> lh.Lakehouse:
    return lh.Lakehouse(tmp_path / "lake", assets=assets, format=fmt)


# --------------------------------------------------------------------------- declarations


@pytest.mark.parametrize(
    "make",
    [
        lambda: lh.not_null(),
        lambda: lh.not_null(""),
        lambda: lh.not_null("a", "a"),
        lambda: lh.unique(),
        lambda: lh.unique(3),
        lambda: lh.accepted_values("s", []),
        lambda: lh.accepted_values("s", "abc"),
        lambda: lh.accepted_values("s", 5),
        lambda: lh.row_count(),
        lambda: lh.row_count(min=-1),
        lambda: lh.row_count(min=5, max=1),
        lambda: lh.row_count(min=1.5),
        lambda: lh.row_count(min=True),
        lambda: lh.expect(42),
        lambda: lh.expect(""),
        lambda: lh.not_null("a", severity="fatal"),
        lambda: lh.unique("a", name=""),
        lambda: lh.check("")(lambda df: True),
        lambda: lh.check("x")(lambda df: True),
        lambda: lh.check("x")(lambda: True),
        lambda: lh.check("x", name="two")(lambda df, other: True),
        lambda: lh.check("x", name="star")(lambda *dfs: True),
        lambda: lh.check("x", name="ann")(_int_check),
        lambda: lh.check("x")(int),
    ],
)
def test_bad_check_declarations_raise_definition_errors(make: Any) -> None:
    with pytest.raises(DefinitionError) as info:
        make()
    assert "hint:" in str(info.value)


def _int_check(df: int) -> bool:
    return True


def test_bad_checks_argument_of_an_asset_names_the_asset() -> None:
    with pytest.raises(DefinitionError, match="asset 'bad_checks'.*not a check"):
        lh.asset(lambda: None, name="bad_checks", checks=["not_null(id)"])
    with pytest.raises(DefinitionError, match="two checks are named"):
        lh.asset(lambda: None, name="dup_checks", checks=[lh.not_null("a"), lh.not_null("a")])


def test_check_names_and_defaults() -> None:
    assert lh.expect(pl.col("x") > 0).name.startswith("expect(")
    assert lh.accepted_values("s", ["a"]).columns == ("s",)
    assert lh.unique(["a", "b"]).columns == ("a", "b")
    assert not lh.not_null("a", severity="warn").blocking

    @lh.check("somewhere")
    def positive(df: pl.DataFrame) -> bool:
        return bool((df["x"] > 0).all())

    assert (
        positive.kind == "custom"
        and positive.data_param == "df"
        and positive.data_type == "DataFrame"
    )
    assert positive(pl.DataFrame({"x": [1]})) is True  # still callable as the function


# ------------------------------------------------------------------------- blocking checks


def _pipeline(checks: list[Any], fmt: str | None = None) -> tuple[Any, Any]:
    @lh.asset(name="orders", checks=checks, code_version="1", format=fmt)
    def orders() -> pl.DataFrame:
        return _orders()

    @lh.asset(name="totals", code_version="1", format=fmt)
    def totals(orders: pl.LazyFrame) -> pl.LazyFrame:
        return orders.group_by("status").agg(pl.col("amount").sum()).sort("status")

    return orders, totals


@pytest.mark.parametrize("fmt", ["delta", "iceberg"])
def test_blocking_failure_publishes_nothing_blocks_downstream_and_is_retried(
    tmp_path: Path, fmt: str
) -> None:
    orders, totals = _pipeline(
        [lh.not_null("id"), lh.unique("id"), lh.accepted_values("status", ["open", "closed"])], fmt
    )
    lake = _lake(tmp_path, [orders, totals])
    assert lake.materialize().ok
    v_orders, v_totals = lake.table("orders").version, lake.table("totals").version
    good = lake.read("orders")

    DATA["orders"] = pl.DataFrame(
        {
            "id": [1, None, 1, 4],
            "status": ["open", "lost", "open", "closed"],
            "amount": [1.0, 2.0, 3.0, 4.0],
        }
    )
    res = lake.materialize(force=True, raise_on_error=False)
    rows = {r["asset"]: r for r in res.rows}
    assert rows["orders"]["status"] == "check_failed"
    assert rows["totals"]["status"] == "upstream_failed"
    err = rows["orders"]["error"]
    for name in ("not_null(id)", "unique(id)", "accepted_values(status)"):
        assert name in err
    assert "1 failing row" in err and '"lost"' in err and "nothing was published" in err
    # the tables did not move
    assert lake.table("orders").version == v_orders and lake.table("totals").version == v_totals
    assert lake.read("orders").equals(good)
    # status and plan say why, with the check and its failing rows
    st = {r["asset"]: r for r in lake.status().to_dicts()}
    assert st["orders"]["stale"] and st["orders"]["reason"] == "check_failed"
    assert "not_null(id)" in st["orders"]["cause"] or "unique(id)" in st["orders"]["cause"]
    assert "failing row" in st["orders"]["cause"]
    assert lake.plan().filter(pl.col("asset") == "orders")["reason"].to_list() == ["check_failed"]
    # raise_on_error: a MaterializeError carrying the result
    with pytest.raises(MaterializeError) as info:
        lake.materialize()
    assert info.value.result.failures["orders"]
    # history of checks: one row per check per run
    hist = lake.checks("orders")
    assert hist.height == 9 and set(hist["check"]) == {
        "not_null(id)",
        "unique(id)",
        "accepted_values(status)",
    }
    failed = hist.filter(~pl.col("passed"))
    assert failed.height == 6
    assert failed.filter(pl.col("check") == "unique(id)")["failing_rows"][0] == 2
    assert (
        json.loads(failed.filter(pl.col("check") == "accepted_values(status)")["sample"][0])[0][
            "status"
        ]
        == "lost"
    )
    # fixed data: the next materialize retries and publishes
    DATA.pop("orders")
    res = lake.materialize()
    assert res.materialized == ["orders", "totals"]
    assert not lake.status()["stale"].any()
    assert lake.read("totals")["amount"].sum() == 35.0


@pytest.mark.parametrize("fmt", ["delta", "iceberg"])
def test_first_run_failing_a_check_creates_no_table(tmp_path: Path, fmt: str) -> None:
    DATA["orders"] = pl.DataFrame({"id": [1, 1], "status": ["open", "open"], "amount": [1.0, 2.0]})
    orders, totals = _pipeline([lh.unique("id")], fmt)
    lake = _lake(tmp_path, [orders, totals])
    res = lake.materialize(raise_on_error=False)
    assert [r["status"] for r in res.rows] == ["check_failed", "upstream_failed"]
    assert lake.table("orders").version is None
    assert lake.status().filter(pl.col("asset") == "orders")["reason"][0] == "check_failed"
    if fmt == "delta":  # the stage was deleted, nothing else is in the folder
        assert (
            sorted(p.name for p in (tmp_path / "lake" / "orders").rglob("*") if p.is_file()) == []
        )


@pytest.mark.parametrize("fmt", ["delta", "iceberg"])
def test_warnings_publish_and_are_recorded(tmp_path: Path, fmt: str) -> None:
    orders, totals = _pipeline(
        [
            lh.row_count(max=2, severity="warn"),
            lh.expect(pl.col("amount") >= 6, severity="warn", name="big_enough"),
        ],
        fmt,
    )
    lake = _lake(tmp_path, [orders, totals])
    res = lake.materialize()
    assert res.ok and res.materialized == ["orders", "totals"]
    hist = lake.checks("orders")
    assert hist.height == 2 and not hist["passed"].any()
    assert set(hist["severity"]) == {"warn"}
    row = hist.filter(pl.col("check") == "big_enough").to_dicts()[0]
    assert row["failing_rows"] == 1 and json.loads(row["sample"])[0]["amount"] == 5.0
    assert json.loads(hist.filter(pl.col("check") == "row_count(max=2)")["detail"][0]) == {
        "rows": 3
    }
    assert not lake.status()["stale"].any()


def test_custom_checks_bool_checkresult_ctx_and_types(tmp_path: Path) -> None:
    orders, totals = _pipeline([])
    seen: dict[str, Any] = {}

    @lh.check("orders")
    def ids_positive(df: pl.DataFrame) -> bool:
        seen["df"] = type(df)
        return bool((df["id"] > 0).all())

    @lh.check("orders", severity="warn")
    def lazily(lf: pl.LazyFrame, ctx: lh.Context) -> lh.CheckResult:
        seen["lf"] = type(lf)
        seen["ctx"] = ctx.asset
        n = lf.select(pl.len()).collect().item()
        return lh.CheckResult(n > 5, {"rows": n}, failing_rows=5 - n)

    @lh.check("orders", name="arrow_ok")
    def arrow_check(table: pa.Table) -> bool:
        seen["table"] = type(table)
        return table.num_rows == 3

    lake = _lake(tmp_path, [orders, totals])
    assert lake.materialize().ok
    assert seen == {"df": pl.DataFrame, "lf": pl.LazyFrame, "ctx": "orders", "table": pa.Table}
    hist = {r["check"]: r for r in lake.checks("orders").to_dicts()}
    assert hist["ids_positive"]["passed"] and hist["arrow_ok"]["passed"]
    assert not hist["lazily"]["passed"] and json.loads(hist["lazily"]["detail"]) == {"rows": 3}
    assert hist["lazily"]["failing_rows"] == 2


def test_custom_check_errors_block_with_a_message(tmp_path: Path) -> None:
    orders, totals = _pipeline([])

    @lh.check("orders")
    def returns_text(df: pl.DataFrame) -> Any:
        return "yes"

    @lh.check("orders")
    def crashes(df: pl.DataFrame) -> bool:
        return 1 / 0 > 0

    lake = _lake(tmp_path, [orders, totals])
    res = lake.materialize(raise_on_error=False)
    err = res.failures["orders"]
    assert "returns_text" in err and "not a bool or lh.CheckResult" in err
    assert "crashes" in err and "ZeroDivisionError" in err
    assert lake.table("orders").version is None


def test_missing_column_and_bad_sql_fail_the_check(tmp_path: Path) -> None:
    orders, totals = _pipeline(
        [lh.not_null("nope"), lh.expect("amount >>> 3", name="bad_sql"), lh.expect("amount > 0")]
    )
    lake = _lake(tmp_path, [orders, totals])
    res = lake.materialize(raise_on_error=False)
    err = res.failures["orders"]
    assert "['nope'] are not in the output" in err and "bad_sql" in err
    hist = {r["check"]: r["passed"] for r in lake.checks("orders").to_dicts()}
    assert hist == {"not_null(nope)": False, "bad_sql": False, "expect(amount > 0)": True}


def test_check_of_an_unknown_asset_is_reported(tmp_path: Path) -> None:
    @lh.asset(name="chk_known", code_version="1")
    def chk_known() -> pl.DataFrame:
        return pl.DataFrame({"a": [1]})

    @lh.check("chk_knwon")
    def typo(df: pl.DataFrame) -> bool:
        return True

    lake = lh.Lakehouse(tmp_path / "lake")  # the global registry: check targets are validated
    try:
        with pytest.raises(UnknownAssetError, match="(?s)chk_knwon.*did you mean 'chk_known'"):
            lake.plan(select="chk_known")
    finally:
        lh.assets.REGISTRY.pop("chk_known", None)


def test_pandera_schema_as_a_check(tmp_path: Path) -> None:
    pa_pl = pytest.importorskip("pandera.polars")  # the 'pandera' extra
    schema = pa_pl.DataFrameSchema(
        {"id": pa_pl.Column(int, pa_pl.Check.gt(1)), "status": pa_pl.Column(str)},
        name="orders_schema",
    )
    orders, totals = _pipeline([schema])
    lake = _lake(tmp_path, [orders, totals])
    res = lake.materialize(raise_on_error=False)
    assert (
        res.failures["orders"].startswith("worker")
        or "pandera(orders_schema)" in res.failures["orders"]
    )
    row = lake.checks("orders").to_dicts()[0]
    assert (
        row["check"] == "pandera(orders_schema)" and not row["passed"] and row["failing_rows"] == 1
    )
    DATA["orders"] = pl.DataFrame({"id": [2, 3], "status": ["a", "b"], "amount": [1.0, 2.0]})
    assert lake.materialize().ok


# ----------------------------------------------------------------------------- partitions


def test_checks_run_per_partition_range(tmp_path: Path) -> None:
    import datetime as dt

    @lh.asset(
        name="daily_vals",
        partitions=lh.daily(start="2024-01-01", end="2024-01-07"),
        partition_column="day",
        max_partitions_per_run=2,
        code_version="1",
        checks=[lh.expect(pl.col("v") >= 0, name="non_negative")],
    )
    def daily_vals(ctx: lh.Context) -> pl.DataFrame:
        days = pl.date_range(
            ctx.partition.start.date(), ctx.partition.end.date(), closed="left", eager=True
        )
        bad = DATA.get("bad_day")
        return pl.DataFrame({"day": days, "v": [-1 if d == bad else 1 for d in days]})

    lake = _lake(tmp_path, [daily_vals])
    DATA["bad_day"] = dt.date(2024, 1, 4)
    res = lake.materialize(raise_on_error=False)
    by_range = {r["partitions"]: r["status"] for r in res.rows}
    assert by_range == {
        "2024-01-01..2024-01-02": "materialized",
        "2024-01-03..2024-01-04": "check_failed",
        "2024-01-05..2024-01-06": "materialized",
    }
    assert sorted(lake.read("daily_vals")["day"].dt.day().to_list()) == [1, 2, 5, 6]
    st = lake.status("daily_vals")
    failed = st.filter(pl.col("reason") == "check_failed")
    assert failed["partitions"].to_list() == ["2024-01-03..2024-01-04"]
    hist = lake.checks("daily_vals")
    assert hist.height == 3 and hist.filter(~pl.col("passed"))["partitions"].to_list() == [
        "2024-01-03..2024-01-04"
    ]
    DATA.pop("bad_day")
    res = lake.materialize()
    assert [r["partitions"] for r in res.rows] == ["2024-01-03..2024-01-04"]
    assert lake.read("daily_vals").height == 6 and not lake.status()["stale"].any()
