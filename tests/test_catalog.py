"""Catalog conformance: the same tests on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import lakehouse as lh
from lakehouse.catalog import InputVersion, MaterializationRecord
from lakehouse.catalog.sql import SCHEMA_VERSION, SqlCatalog
from lakehouse.errors import CatalogError


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.db'}"
    return str(request.getfixturevalue("postgres_db_url"))


@pytest.fixture
def cat(url: str) -> Any:
    c = SqlCatalog(url)
    yield c
    c.close()


def rec(
    asset: str,
    start: int,
    end: int,
    seq: int,
    run: str = "r1",
    status: str = "materialized",
    code: str = "c1",
    **kw: Any,
) -> MaterializationRecord:
    return MaterializationRecord(
        run_id=run,
        asset=asset,
        start=start,
        end=end,
        partitions=None,
        status=status,
        code_version=code,
        version=str(seq),
        seq=seq,
        rows=end - start,
        started_at=1000.0 + seq,
        seconds=1.0,
        **kw,
    )


def test_schema_applies_on_open_and_reopens(url: str) -> None:
    opened = [SqlCatalog(url) for _ in range(2)]
    assert all(c.schema_version() == SCHEMA_VERSION for c in opened)
    for c in opened:
        c.close()


def test_concurrent_first_opens(url: str) -> None:
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            SqlCatalog(url).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_newer_or_unreadable_schema_version_is_refused(cat: Any, url: str) -> None:
    import sqlalchemy as sa

    from lakehouse.catalog.sql import meta_table

    for value, text in (
        (str(SCHEMA_VERSION + 1), "newer than this lakehouse"),
        ("x1", "unreadable schema version"),
    ):
        with cat.engine.begin() as conn:
            conn.execute(
                sa.update(meta_table)
                .where(meta_table.c.key == "schema_version")
                .values(value=value)
            )
        with pytest.raises(CatalogError, match=text) as info:
            SqlCatalog(url)
        assert "hint:" in str(info.value)


def test_run_roundtrip_and_state(cat: Any) -> None:
    cat.begin_run("r1", 1000.0, {"assets": ["a", "b"]})
    assert [r["run_id"] for r in cat.unfinished_runs()] == ["r1"]
    inputs = (InputVersion("a", "3", 3),)
    ids = cat.finish_run(
        "r1",
        "succeeded",
        1010.0,
        [rec("a", 0, 1, 3), rec("b", 0, 10, 5, inputs=inputs), rec("c", 0, 1, 1, status="failed")],
        {
            "checks": [
                {
                    "run_id": "r1",
                    "asset": "b",
                    "partitions": None,
                    "check_name": "x",
                    "severity": "error",
                    "passed": False,
                    "failing_rows": 2,
                    "detail": None,
                    "checked_at": 1009.0,
                    "pstart": 0,
                    "pend": 10,
                    "sample": "[]",
                }
            ]
        },
    )
    assert len(ids) == 3 and cat.unfinished_runs() == []
    st = cat.state()
    assert set(st) == {"a", "b"}
    assert (
        st["b"][0].inputs == inputs
        and st["b"][0].rows == 10
        and st["b"][0].materialized_at == 1006.0
    )
    assert [m["status"] for m in cat.materializations(run_id="r1")] == [
        "failed",
        "materialized",
        "materialized",
    ]
    assert (
        cat.failed_checks()[0]["failing_rows"] == 2
        and cat.rows("checks", asset="b")[0]["check_name"] == "x"
    )


def test_state_keeps_the_newest_write_per_partition(cat: Any) -> None:
    cat.finish_run("r1", "succeeded", 1.0, [rec("p", 0, 10, 5)])
    cat.finish_run("r2", "succeeded", 2.0, [rec("p", 3, 6, 7, run="r2")])
    # a late writer with an older table version only fills what nothing newer covers
    cat.finish_run("r3", "succeeded", 3.0, [rec("p", 2, 8, 6, run="r3")])
    rows = [(r.start, r.end, r.seq) for r in cat.state()["p"]]
    assert rows == [(0, 2, 5), (2, 3, 6), (3, 6, 7), (6, 8, 6), (8, 10, 5)]


def test_adoption_claims_a_dead_run_once(cat: Any) -> None:
    cat.begin_run("dead", 1.0, {"assets": ["a"]})
    results = []

    def adopt() -> None:
        results.append(
            cat.finish_run(
                "dead",
                "crashed",
                2.0,
                [rec("a", 0, 1, 1, run="dead", status="adopted")],
                only_if_running=True,
            )
        )

    threads = [threading.Thread(target=adopt) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(len(r) for r in results) == [0, 0, 1]
    assert len(cat.materializations("a")) == 1 and cat.runs()[0]["status"] == "crashed"


def test_hook_runs_inside_the_transaction(cat: Any) -> None:
    cat.begin_run("r1", 1.0, {})

    def boom(asset: str) -> None:
        raise RuntimeError(f"killed at {asset}")

    with pytest.raises(RuntimeError, match="killed at a"):
        cat.finish_run("r1", "succeeded", 2.0, [rec("a", 0, 1, 1)], hook=boom)
    assert cat.materializations() == [] and cat.state() == {}  # rolled back
    assert [r["run_id"] for r in cat.unfinished_runs()] == ["r1"]


def test_leases(cat: Any) -> None:
    assert cat.acquire_lease("r1", "a", 0, 10, ttl=30) is None
    assert cat.acquire_lease("r2", "a", 5, 15, ttl=30) == "r1"  # overlapping: held
    assert cat.acquire_lease("r2", "a", 10, 20, ttl=30) is None  # disjoint: fine
    assert cat.acquire_lease("r1", "a", 0, 10, ttl=30) is None  # re-entrant
    cat.commit_lease("r1", "a", 0, 10, "7", 7, "c1")  # committed: no longer blocks
    assert cat.acquire_lease("r3", "a", 0, 5, ttl=30) is None
    marks = cat.committed_leases("a")
    assert [(m["run_id"], m["seq"], m["code_version"]) for m in marks] == [("r1", 7, "c1")]
    assert cat.acquire_lease("r4", "b", 0, 1, ttl=0.2) is None
    assert cat.acquire_lease("r5", "b", 0, 1, ttl=30) == "r4"
    time.sleep(0.3)
    assert cat.acquire_lease("r5", "b", 0, 1, ttl=30) is None  # the holder stopped renewing
    cat.renew_leases("r5", ttl=60)
    assert {r["run_id"] for r in cat.leases()} == {"r1", "r2", "r3", "r5"}
    cat.begin_run("r2", 1.0, {})
    cat.finish_run("r2", "succeeded", 2.0, [])  # a finished run's leases go with it
    cat.release_leases("r3")
    cat.release_lease("r5", "b", 0, 1)
    assert {r["run_id"] for r in cat.leases()} == {"r1"}


def test_forget(cat: Any) -> None:
    cat.finish_run("r1", "succeeded", 1.0, [rec("a", 0, 1, 1), rec("b", 0, 1, 1)])
    cat.finish_run("r2", "succeeded", 1.0, [rec("a", 0, 1, 2, run="r2")])
    cat.forget(["a"])
    assert set(cat.state()) == {"b"} and {r["run_id"] for r in cat.runs()} == {"r1"}


@pytest.mark.parametrize("fmt", ["delta", "iceberg"])
def test_lakehouse_on_the_catalog(url: str, tmp_path: Path, fmt: str) -> None:
    @lh.asset(name="cat_a", code_version="1", format=fmt, checks=[lh.not_null("x")])
    def cat_a() -> pl.DataFrame:
        return pl.DataFrame({"x": [1, 2, 3]})

    @lh.asset(name="cat_b", code_version="1", format=fmt)
    def cat_b(cat_a: pl.LazyFrame) -> pl.LazyFrame:
        return cat_a.select(pl.col("x").sum())

    lake = lh.Lakehouse(tmp_path / "lake", assets=[cat_a, cat_b], catalog=url)
    assert lake.materialize().materialized == ["cat_a", "cat_b"]
    assert lake.read("cat_b").item() == 6
    assert not lake.status()["stale"].any() and lake.checks("cat_a").height == 1
    lake.close()
    again = lh.Lakehouse(tmp_path / "lake", assets=[cat_a, cat_b], catalog=url)
    assert not again.materialize().materialized
    if fmt == "iceberg":  # the Iceberg SQL catalog lives in the same database
        import sqlalchemy as sa

        eng = sa.create_engine(url)
        with eng.connect() as conn:
            names = {r[0] for r in conn.execute(sa.text("SELECT table_name FROM iceberg_tables"))}
        eng.dispose()
        assert names == {"cat_a", "cat_b"}
    again.close()


def test_corrupt_catalog_file_is_a_catalog_error(tmp_path: Path) -> None:
    bad = tmp_path / "catalog.db"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(CatalogError, match="cannot open the catalog") as info:
        SqlCatalog(f"sqlite:///{bad}")
    assert "hint:" in str(info.value)


@pytest.mark.postgres
def test_unreachable_postgres_is_a_catalog_error() -> None:
    with pytest.raises(CatalogError, match="cannot open the catalog") as info:
        SqlCatalog("postgresql+psycopg://nobody:secret@127.0.0.1:1/none?connect_timeout=2")
    assert "secret" not in str(info.value)


def test_begin_run_leases_every_range_at_once(cat: Any) -> None:
    """A run leases all its step ranges in its begin transaction; ranges another live run
    computes come back with that run as holder, the others with the state written over them."""
    cat.begin_run("w", 1.0, {})
    cat.finish_run("w", "succeeded", 2.0, [rec("a", 0, 4, 3, run="w"), rec("c", 0, 1, 1, run="w")])
    first = cat.begin_run("r1", 3.0, {}, leases=[("a", 0, 10), ("b", 0, 1)], ttl=30)
    assert {k: v[0] for k, v in first.items()} == {("a", 0, 10): None, ("b", 0, 1): None}
    assert [(r.start, r.end, r.seq) for r in first[("a", 0, 10)][1]] == [(0, 4, 3)]
    second = cat.begin_run("r2", 4.0, {}, leases=[("a", 5, 15), ("a", 20, 30), ("c", 0, 1)], ttl=30)
    assert {k: v[0] for k, v in second.items()} == {
        ("a", 5, 15): "r1", ("a", 20, 30): None, ("c", 0, 1): None}
    assert [r.seq for r in second[("c", 0, 1)][1]] == [1]
    cat.commit_leases("r1", [{"asset": "a", "start": 0, "end": 10, "version": "9", "seq": 9,
                              "code_version": "c1"}])
    holder, rows, markers = cat.acquire_lease_with_state("r2", "a", 5, 15, ttl=30)
    assert holder is None and [(m["run_id"], m["seq"]) for m in markers] == [("r1", 9)]
    cat.finish_run("r1", "succeeded", 5.0, [])
    assert {(r["run_id"], r["pstart"]) for r in cat.leases()} == {("r2", 5), ("r2", 20), ("r2", 0)}


def test_a_run_costs_two_catalog_transactions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Begin and finish, whatever the number of assets (lease markers are batched by the
    heartbeat; here it never fires)."""
    import sqlalchemy as sa

    from lakehouse.execution import leases

    monkeypatch.setattr(leases, "FLUSH_DELAY", 600.0)
    fns = []
    for i in range(12):
        ns: dict[str, Any] = {"pl": pl}
        params = f"a{i - 1}: pl.DataFrame" if i else ""
        body = f"a{i - 1}.with_columns(pl.col('x') + 1)" if i else "pl.DataFrame({'x': [1, 2]})"
        exec(f"def a{i}({params}) -> pl.DataFrame:\n    return {body}\n", ns)
        fns.append(lh.asset(name=f"a{i}")(ns[f"a{i}"]))
    lake = lh.Lakehouse(tmp_path / "lake", assets=fns)
    lake.plan()
    commits: list[int] = []
    sa.event.listen(lake.catalog.engine, "commit", lambda conn: commits.append(1))
    res = lake.materialize()
    assert len(res.materialized) == 12 and len(commits) == 2


def test_heartbeat_renews_leases_and_marks_finished_steps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a run lasts longer than its lease period, its leases stay alive; a finished
    step's lease turns "committed" shortly after (without waiting for the run's end)."""
    monkeypatch.setenv("LAKEHOUSE_LEASE_SECONDS", "0.6")

    @lh.asset(name="quick")
    def quick() -> pl.DataFrame:
        return pl.DataFrame({"x": [1]})

    @lh.asset(name="slow")
    def slow(quick: pl.DataFrame) -> pl.DataFrame:
        time.sleep(2.0)
        return quick

    lake = lh.Lakehouse(tmp_path / "lake", assets=[quick, slow])
    watcher = SqlCatalog(lake.settings.catalog_url)
    seen: list[tuple[float, dict[str, Any]]] = []
    runner = threading.Thread(target=lake.materialize)
    runner.start()
    while runner.is_alive():
        now = time.time()
        seen.extend((now, r) for r in watcher.leases())
        time.sleep(0.05)
    runner.join()
    watcher.close()
    late = [r for t, r in seen if r["asset"] == "slow" and t > seen[0][0] + 1.2]
    assert late and all(r["expires_at"] > t for t, r in seen if r["asset"] == "slow")
    assert any(r["asset"] == "quick" and r["state"] == "committed" for _, r in seen)
    assert lake.catalog.leases() == []
