"""Column lineage analysers against hand-written expectations.

Polars plans read real Parquet files (each upstream a folder, mapped back to its asset by
path); SQL runs against a real DuckDB connection whose views stand for the upstreams.
Each expectation is the full set of ``(column, source_asset, source_column, kind)`` rows.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import duckdb
import polars as pl
import pytest

from lakehouse.engines import column_lineage as cl
from lakehouse.engines.column_lineage import (
    AGGREGATED,
    FILTER,
    IDENTITY,
    TRANSFORMED,
    UNKNOWN,
    ColumnLineage,
    SourceTable,
    analyse,
    capture_collects,
    mark,
    polars_lineage,
    relation_lineage,
    sql_lineage,
)

Row = tuple[str | None, str | None, str | None, str]


def rows(lineage: ColumnLineage) -> set[Row]:
    return {(e.column, e.source_asset, e.source_column, e.kind) for e in lineage.edges}


@pytest.fixture()
def tables(tmp_path: Path) -> tuple[pl.LazyFrame, pl.LazyFrame, list[SourceTable]]:
    """Two upstream tables as Parquet folders: ``orders`` and ``customers``."""
    (tmp_path / "orders").mkdir()
    (tmp_path / "customers").mkdir()
    pl.DataFrame({"k": [1, 2, 3], "amount": [1.0, 2.0, 3.0], "status": ["a", "b", "a"],
                  "region": ["n", "s", "n"]}).write_parquet(tmp_path / "orders" / "part-0.parquet")
    pl.DataFrame({"k": [1, 2], "amount": [5.0, 6.0], "name": ["x", "y"]}).write_parquet(
        tmp_path / "customers" / "part-0.parquet")
    sources = [SourceTable("orders", str(tmp_path / "orders")),
               SourceTable("customers", f"file://{tmp_path / 'customers'}")]
    return (pl.scan_parquet(tmp_path / "orders" / "*.parquet"),
            pl.scan_parquet(tmp_path / "customers" / "*.parquet"), sources)


def test_select_and_rename(tables):
    o, _, src = tables
    got = polars_lineage(o.select(pl.col("k").alias("key"), "amount").rename({"amount": "value"}), src)
    assert rows(got) == {("key", "orders", "k", IDENTITY), ("value", "orders", "amount", IDENTITY)}
    assert got.note is None


def test_with_columns_overwrites_and_adds(tables):
    o, _, src = tables
    q = o.with_columns(amount=pl.col("amount") * 2, label=pl.col("status").str.to_uppercase(),
                       flag=pl.when(pl.col("region") == "n").then(pl.col("k")).otherwise(0),
                       as_int=pl.col("amount").cast(pl.Int64), const=pl.lit(1))
    assert rows(polars_lineage(q, src)) == {
        ("k", "orders", "k", IDENTITY),
        ("amount", "orders", "amount", TRANSFORMED),
        ("status", "orders", "status", IDENTITY),
        ("region", "orders", "region", IDENTITY),
        ("label", "orders", "status", TRANSFORMED),
        ("flag", "orders", "region", TRANSFORMED),
        ("flag", "orders", "k", TRANSFORMED),
        ("as_int", "orders", "amount", TRANSFORMED),
        # a literal has no source column: no row
    }


def test_filters_are_filter_keys_of_the_whole_output(tables):
    o, _, src = tables
    q = o.filter(pl.col("status") == "a").select("k").filter(pl.col("k") > 1)
    assert rows(polars_lineage(q, src)) == {
        ("k", "orders", "k", IDENTITY),
        (None, "orders", "status", FILTER),
        (None, "orders", "k", FILTER),
    }


def test_join_both_sides_with_suffix(tables):
    o, c, src = tables
    q = o.join(c, on="k", how="left", suffix="_cust")
    assert rows(polars_lineage(q, src)) == {
        ("k", "orders", "k", IDENTITY),
        ("amount", "orders", "amount", IDENTITY),
        ("status", "orders", "status", IDENTITY),
        ("region", "orders", "region", IDENTITY),
        ("amount_cust", "customers", "amount", IDENTITY),
        ("name", "customers", "name", IDENTITY),
        (None, "orders", "k", FILTER),
        (None, "customers", "k", FILTER),
    }


def test_join_variants(tables):
    o, c, src = tables
    full = rows(polars_lineage(o.join(c, on="k", how="full", coalesce=True).select("k", "name"), src))
    assert full == {("k", "orders", "k", IDENTITY), ("k", "customers", "k", IDENTITY),
                    ("name", "customers", "name", IDENTITY),
                    (None, "orders", "k", FILTER), (None, "customers", "k", FILTER)}
    # a right join keeps the right keys; the left side keeps its names, the right gets the suffix
    right = rows(polars_lineage(o.join(c, on="k", how="right").select("k", "amount", "amount_right"), src))
    assert right == {("k", "customers", "k", IDENTITY), ("amount", "orders", "amount", IDENTITY),
                     ("amount_right", "customers", "amount", IDENTITY),
                     (None, "orders", "k", FILTER), (None, "customers", "k", FILTER)}
    semi = rows(polars_lineage(o.join(c, on="k", how="semi").select("amount"), src))
    assert semi == {("amount", "orders", "amount", IDENTITY), (None, "orders", "k", FILTER),
                    (None, "customers", "k", FILTER)}
    expr_key = rows(polars_lineage(
        o.join(c, left_on=pl.col("k") + 1, right_on="k").select("status", "name", "k_right"), src))
    assert expr_key == {("status", "orders", "status", IDENTITY), ("name", "customers", "name", IDENTITY),
                        ("k_right", "customers", "k", IDENTITY),
                        (None, "orders", "k", FILTER), (None, "customers", "k", FILTER)}
    cross = rows(polars_lineage(o.select("k").join(c.select("k"), how="cross"), src))
    assert cross == {("k", "orders", "k", IDENTITY), ("k_right", "customers", "k", IDENTITY)}


def test_group_by_agg(tables):
    o, _, src = tables
    q = o.group_by("region", big=pl.col("amount") > 1).agg(
        total=pl.col("amount").sum(), doubled=(pl.col("amount") * 2).mean(), n=pl.len(),
        first_status=pl.col("status").first())
    assert rows(polars_lineage(q, src)) == {
        ("region", "orders", "region", IDENTITY),
        ("big", "orders", "amount", TRANSFORMED),
        ("total", "orders", "amount", AGGREGATED),
        ("doubled", "orders", "amount", AGGREGATED),
        ("first_status", "orders", "status", AGGREGATED),
        # pl.len() counts rows: it reads no column
    }


def test_window_functions(tables):
    o, _, src = tables
    q = o.select("k", share=pl.col("amount") / pl.col("amount").sum().over("region"),
                 rnk=pl.col("amount").rank().over("region", order_by="k"), running=pl.col("amount").cum_sum(),
                 prev=pl.col("status").shift(1))
    assert rows(polars_lineage(q, src)) == {
        ("k", "orders", "k", IDENTITY),
        ("share", "orders", "amount", AGGREGATED),
        ("share", "orders", "region", AGGREGATED),
        ("rnk", "orders", "amount", AGGREGATED),
        ("rnk", "orders", "region", AGGREGATED),
        ("rnk", "orders", "k", AGGREGATED),
        ("running", "orders", "amount", AGGREGATED),
        ("prev", "orders", "status", AGGREGATED),
    }


def test_unions(tables):
    o, c, src = tables
    vertical = pl.concat([o.select("k", "amount"), c.select("k", pl.col("amount") + 1)])
    assert rows(polars_lineage(vertical, src)) == {
        ("k", "orders", "k", IDENTITY), ("k", "customers", "k", IDENTITY),
        ("amount", "orders", "amount", IDENTITY), ("amount", "customers", "amount", TRANSFORMED),
    }
    diagonal = pl.concat([o.select("k", "status"), c.select("k", "name")], how="diagonal")
    assert rows(polars_lineage(diagonal, src)) == {
        ("k", "orders", "k", IDENTITY), ("k", "customers", "k", IDENTITY),
        ("status", "orders", "status", IDENTITY), ("name", "customers", "name", IDENTITY),
    }
    horizontal = pl.concat([o.select("k"), c.select(pl.col("name").alias("who"))], how="horizontal")
    assert rows(polars_lineage(horizontal, src)) == {
        ("k", "orders", "k", IDENTITY), ("who", "customers", "name", IDENTITY)}


def test_pivot_and_unpivot(tables):
    o, _, src = tables
    # a pivot is planned as a group-by whose value columns pick `amount` by `status`
    pivot = o.pivot(on="status", on_columns=["a", "b"], index="k", values="amount")
    assert rows(polars_lineage(pivot, src)) == {
        ("k", "orders", "k", IDENTITY),
        ("a", "orders", "amount", AGGREGATED), ("a", "orders", "status", AGGREGATED),
        ("b", "orders", "amount", AGGREGATED), ("b", "orders", "status", AGGREGATED),
    }
    unpivot = o.unpivot(index="k", on=["amount", "region"])
    assert rows(polars_lineage(unpivot, src)) == {
        ("k", "orders", "k", IDENTITY),
        ("value", "orders", "amount", TRANSFORMED), ("value", "orders", "region", TRANSFORMED),
    }


def test_sort_under_limit_is_a_filter_and_unique_subset_too(tables):
    o, _, src = tables
    assert rows(polars_lineage(o.select("k", "amount").sort("amount").head(2), src)) == {
        ("k", "orders", "k", IDENTITY), ("amount", "orders", "amount", IDENTITY),
        (None, "orders", "amount", FILTER)}
    assert rows(polars_lineage(o.select("k", "amount").sort("amount"), src)) == {
        ("k", "orders", "k", IDENTITY), ("amount", "orders", "amount", IDENTITY)}
    assert (None, "orders", "region", FILTER) in rows(polars_lineage(o.unique(subset=["region"]), src))


def test_python_udfs_are_unknown_never_guessed(tables):
    o, _, src = tables
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        udf = o.select("k", plus=pl.col("amount").map_elements(lambda v: v + 1, return_dtype=pl.Float64))
    got = polars_lineage(udf, src)
    assert rows(got) == {("k", "orders", "k", IDENTITY), ("plus", None, None, UNKNOWN)}
    assert "plus" in (got.note or "")
    opaque = o.select("k", "amount").map_batches(lambda df: df).select("k")
    assert rows(polars_lineage(opaque, src)) == {("k", None, None, UNKNOWN)}


def test_unmapped_inputs_are_unknown(tables):
    o, _, src = tables
    other = pl.LazyFrame({"k": [1], "z": [2]})
    got = polars_lineage(o.join(other, on="k").select("status", "z"), src)
    assert rows(got) == {("status", "orders", "status", IDENTITY), ("z", None, None, UNKNOWN),
                         (None, "orders", "k", FILTER)}


def test_marked_inputs_map_without_paths():
    # an in-memory frame has no path; the step's marker names its table
    lf = mark(pl.LazyFrame({"a": [1, 2], "b": ["x", "y"]}), "tok:up")
    got = polars_lineage(lf.select(c=pl.col("a") + 1, b=pl.col("b")), [SourceTable("up", "mem://", "p", "tok:up")])
    assert rows(got) == {("c", "up", "a", TRANSFORMED), ("b", "up", "b", IDENTITY)}
    # the marker costs nothing at execution: the optimizer drops it
    assert cl.MARK not in lf.explain()
    assert lf.collect().columns == ["a", "b"]


def test_unsupported_polars_version_falls_back_to_unknown(tables, monkeypatch):
    o, _, src = tables
    monkeypatch.setattr(cl._polars, "SUPPORTED_POLARS", ((0, 1), (0, 2)))
    got = polars_lineage(o.select("k"), src)
    assert rows(got) == {("k", None, None, UNKNOWN)}
    assert "outside the range" in (got.note or "")
    monkeypatch.setattr(cl._polars, "SUPPORTED_POLARS", ((2, 0), (99, 0)))
    monkeypatch.setattr(cl._polars, "SUPPORTED_IR_MAJOR", frozenset({-1}))
    got = polars_lineage(o.select("k"), src)
    assert rows(got) == {("k", None, None, UNKNOWN)}
    assert "plan format" in (got.note or "")


def test_analysis_never_executes_the_query(tables):
    o, _, src = tables
    calls = []

    def spy(df: pl.DataFrame) -> pl.DataFrame:
        calls.append(1)
        return df

    polars_lineage(o.map_batches(spy, schema=o.collect_schema()).select("k"), src)
    assert calls == []


def test_eager_result_traced_through_the_captured_collect(tables):
    o, _, src = tables
    original = pl.LazyFrame.collect
    with capture_collects() as captured:
        assert pl.LazyFrame.collect is not original
        df = o.group_by("region").agg(pl.col("amount").sum()).collect()
        unrelated = o.select("k").collect()
    assert rows(analyse(df, src, captured=captured)) == {
        ("region", "orders", "region", IDENTITY), ("amount", "orders", "amount", AGGREGATED)}
    assert rows(analyse(unrelated, src, captured=captured)) == {("k", "orders", "k", IDENTITY)}
    # an eager frame that no collect() returned has no plan
    built = df.with_columns(extra=pl.lit(1))
    got = analyse(built, src, captured=captured)
    assert rows(got) == {(c, None, None, UNKNOWN) for c in built.columns}
    # outside the block collect() is the library's own again
    assert pl.LazyFrame.collect is original


def test_capture_records_only_its_own_thread(tables):
    import threading

    o, _, _ = tables
    seen: list[int] = []
    with capture_collects() as captured:
        t = threading.Thread(target=lambda: seen.append(o.select("k").collect().height))
        t.start()
        t.join()
        mine = o.select("amount").collect()
    assert seen == [3]
    assert len(captured) == 1 and captured[0][1] is mine


def test_json_round_trip(tables):
    o, c, src = tables
    got = polars_lineage(o.join(c, on="k").select("status", "name"), src)
    back = ColumnLineage.from_json(got.to_json())
    assert back == got
    assert ColumnLineage.from_json(None) is None


# --------------------------------------------------------------------------- SQL


SCHEMAS = {"orders": {"k": "BIGINT", "amount": "DOUBLE", "status": "VARCHAR", "Region": "VARCHAR"},
           "customers": {"k": "BIGINT", "amount": "DOUBLE", "name": "VARCHAR"}}
ASSETS = {"orders": "sales/orders", "customers": "crm/customers"}


def sql_rows(sql: str, columns: list[str] | None = None) -> set[Row]:
    return rows(sql_lineage(sql, SCHEMAS, ASSETS, columns))


def test_sql_select_rename_and_expressions():
    assert sql_rows("select k as key, amount * 2 as doubled, upper(status) s, Region from orders") == {
        ("key", "sales/orders", "k", IDENTITY),
        ("doubled", "sales/orders", "amount", TRANSFORMED),
        ("s", "sales/orders", "status", TRANSFORMED),
        ("region", "sales/orders", "Region", IDENTITY),
    }


def test_sql_cte_group_by_all_and_filters():
    sql = """
        with paid as (select k, amount * 1.2 as gross, Region from orders where status = 'paid')
        select Region as area, sum(gross) as Total from paid group by all having count(*) > 1
    """
    assert sql_rows(sql, ["area", "Total"]) == {
        ("area", "sales/orders", "Region", IDENTITY),
        ("Total", "sales/orders", "amount", AGGREGATED),
        (None, "sales/orders", "status", FILTER),
    }


def test_sql_joins_both_sides():
    sql = """select o.k, o.amount, c.amount as customer_amount, c.name
             from orders o left join customers c on o.k = c.k"""
    assert sql_rows(sql) == {
        ("k", "sales/orders", "k", IDENTITY),
        ("amount", "sales/orders", "amount", IDENTITY),
        ("customer_amount", "crm/customers", "amount", IDENTITY),
        ("name", "crm/customers", "name", IDENTITY),
        (None, "sales/orders", "k", FILTER),
        (None, "crm/customers", "k", FILTER),
    }
    using = sql_rows("select * from orders join (select k, name from customers) c using (k)",
                     ["k", "amount", "status", "Region", "name"])
    assert using == {
        ("k", "sales/orders", "k", IDENTITY), ("k", "crm/customers", "k", IDENTITY),
        ("amount", "sales/orders", "amount", IDENTITY), ("status", "sales/orders", "status", IDENTITY),
        ("Region", "sales/orders", "Region", IDENTITY), ("name", "crm/customers", "name", IDENTITY),
        (None, "sales/orders", "k", FILTER), (None, "crm/customers", "k", FILTER),
    }
    # DuckDB returns two columns named `amount` here; which is which cannot be told: unknown
    dup = sql_rows("select * from orders join customers using (k)",
                   ["k", "amount", "status", "Region", "amount", "name"])
    assert {r[3] for r in dup} == {UNKNOWN}


def test_sql_subqueries():
    sql = """select k, (select max(amount) from customers c where c.k = o.k) as best
             from orders o where k in (select k from customers where name <> 'x')"""
    assert sql_rows(sql) == {
        ("k", "sales/orders", "k", IDENTITY),
        ("best", "crm/customers", "amount", AGGREGATED),
        (None, "sales/orders", "k", FILTER),
        (None, "crm/customers", "k", FILTER),
        (None, "crm/customers", "name", FILTER),
    }
    derived = "select t.s, t.n from (select status as s, count(*) as n from orders group by status) t"
    assert sql_rows(derived) == {("s", "sales/orders", "status", IDENTITY)}


def test_sql_window_union_and_limit():
    window = "select k, rank() over (partition by Region order by amount) as r from orders"
    assert sql_rows(window) == {("k", "sales/orders", "k", IDENTITY),
                                ("r", "sales/orders", "Region", AGGREGATED),
                                ("r", "sales/orders", "amount", AGGREGATED)}
    union = "select k, amount from orders union all select k, amount + 1 from customers"
    assert sql_rows(union) == {("k", "sales/orders", "k", IDENTITY), ("k", "crm/customers", "k", IDENTITY),
                               ("amount", "sales/orders", "amount", IDENTITY),
                               ("amount", "crm/customers", "amount", TRANSFORMED)}
    top = "select k from orders order by amount desc limit 3"
    assert sql_rows(top) == {("k", "sales/orders", "k", IDENTITY), (None, "sales/orders", "amount", FILTER)}


def test_sql_pivot_and_foreign_tables_are_unknown():
    # PIVOT's output columns depend on the data: unknown is the stated answer
    got = sql_lineage("select * from orders pivot (sum(amount) for status in ('a', 'b'))", SCHEMAS, ASSETS,
                      ["k", "Region", "a", "b"])
    assert {r[3] for r in rows(got)} == {UNKNOWN}
    foreign = sql_lineage("select x from read_parquet('elsewhere.parquet')", SCHEMAS, ASSETS, ["x"])
    assert rows(foreign) == {("x", None, None, UNKNOWN)}
    broken = sql_lineage("select nonsense from", SCHEMAS, ASSETS, ["a"])
    assert rows(broken) == {("a", None, None, UNKNOWN)}


def test_duckdb_relations_from_sql_and_from_the_relation_api():
    import pyarrow as pa

    con = duckdb.connect()
    con.register("__orders", pa.table({"k": [1, 2], "amount": [1.0, 2.0], "status": ["a", "b"]}))
    con.execute("create temp view orders as select * from __orders")
    src = [SourceTable("sales/orders", "mem://orders", "orders")]
    rel = con.sql("with t as (select k, amount from orders where status = 'a') select k, sum(amount) s from t "
                  "group by k")
    assert rows(relation_lineage(rel, src, con)) == {
        ("k", "sales/orders", "k", IDENTITY), ("s", "sales/orders", "amount", AGGREGATED),
        (None, "sales/orders", "status", FILTER)}
    api = con.view("orders").filter("amount > 1").project("k, amount * 2 as twice")
    assert rows(analyse(api, src, con=con)) == {
        ("k", "sales/orders", "k", IDENTITY), ("twice", "sales/orders", "amount", TRANSFORMED),
        (None, "sales/orders", "amount", FILTER)}
    con.close()


def test_other_values_are_unknown():
    import pyarrow as pa

    got = analyse(pa.table({"a": [1]}), [])
    assert rows(got) == {("a", None, None, UNKNOWN)}
    assert analyse(object(), []).edges == ()


# ------------------------------------------------------------------- property


def test_random_pipelines_match_a_reference_model(tmp_path: Path) -> None:
    """Random chains of renames, derived columns, filters and projections: the analyser
    agrees with a model that tracks each column's sources by hand."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    (tmp_path / "t").mkdir()
    pl.DataFrame({"a": [1, 2], "b": [3, 4], "c": [5, 6]}).write_parquet(tmp_path / "t" / "part.parquet")
    src = [SourceTable("t", str(tmp_path / "t"))]
    rank = {IDENTITY: 0, TRANSFORMED: 1, AGGREGATED: 2}

    op = st.one_of(
        st.tuples(st.just("rename"), st.integers(0, 50)),
        st.tuples(st.just("derive"), st.integers(0, 50), st.integers(0, 50)),
        st.tuples(st.just("filter"), st.integers(0, 50)),
        st.tuples(st.just("select"), st.integers(0, 50)),
        st.tuples(st.just("total"), st.integers(0, 50)),
    )

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(op, min_size=1, max_size=8))
    def check(ops: list[tuple]) -> None:
        lf = pl.scan_parquet(tmp_path / "t" / "*.parquet")
        model: dict[str, dict[tuple[str, str], str]] = {c: {("t", c): IDENTITY} for c in "abc"}
        indirect: set[tuple[str, str]] = set()
        fresh = iter(f"n{i}" for i in range(100))
        for step in ops:
            cols = list(model)

            def pick(i: int, cols: list[str] = cols) -> str:
                return cols[i % len(cols)]

            if step[0] == "rename":
                old, new = pick(step[1]), next(fresh)
                lf = lf.rename({old: new})
                model = {(new if k == old else k): v for k, v in model.items()}
            elif step[0] == "derive":
                x, y, new = pick(step[1]), pick(step[2]), next(fresh)
                lf = lf.with_columns((pl.col(x) + pl.col(y)).alias(new))
                merged: dict[tuple[str, str], str] = {}
                for s, k in [*model[x].items(), *model[y].items()]:
                    kind = max(TRANSFORMED, k, key=rank.__getitem__)
                    merged[s] = max(merged.get(s, kind), kind, key=rank.__getitem__)
                model[new] = merged
            elif step[0] == "filter":
                col = pick(step[1])
                lf = lf.filter(pl.col(col) > 0)
                indirect |= set(model[col])
            elif step[0] == "select":
                keep = [c for i, c in enumerate(cols) if (step[1] >> i) & 1] or cols[:1]
                lf = lf.select(keep)
                model = {c: model[c] for c in keep}
            else:  # a window total keeps the rows: aggregated over the partition
                col, new = pick(step[1]), next(fresh)
                lf = lf.with_columns(pl.col(col).sum().over(pick(step[1] + 1)).alias(new))
                part = pick(step[1] + 1)
                model[new] = {s: AGGREGATED for s in [*model[col], *model[part]]}
        expected = {(c, a, s, k) for c, srcs in model.items() for (a, s), k in srcs.items()}
        expected |= {(None, a, s, FILTER) for a, s in indirect}
        assert rows(polars_lineage(lf, src)) == expected

    check()
