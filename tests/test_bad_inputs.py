"""A generated suite of bad inputs.

Each bad input must raise a :class:`~lakehouse.LakehouseError` subclass whose message
names the asset (and the partition, where there is one) and says what to do (``hint:``),
publish nothing, and leave the lakehouse usable: a good asset still materializes after.
The last test checks that at least 100 bad inputs were tried.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lakehouse as lh
from lakehouse.errors import (
    CatalogError,
    ConfigError,
    CycleError,
    DefinitionError,
    DuplicateAssetError,
    LakehouseError,
    MaterializeError,
    OutputError,
    PartitionError,
    SchemaError,
    StorageError,
    UnknownAssetError,
)
from lakehouse.graph import AssetGraph

TRIED = [0]
DATA: dict[str, Any] = {}


def expect(
    fn: Callable[[], Any],
    kind: type[LakehouseError] | tuple[type[LakehouseError], ...],
    asset: str | None = None,
    partition: str | None = None,
    hint: bool = True,
) -> LakehouseError:
    """Run one bad input: the right error, naming the asset/partition, with a fix."""
    TRIED[0] += 1
    with pytest.raises(LakehouseError) as info:
        fn()
    err = info.value
    text = str(err)
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(err, MaterializeError) and not issubclass(MaterializeError, kinds):
        assert any(k.__name__ in text or _describes(k, text) for k in kinds), text
    else:
        assert isinstance(err, kinds), (type(err), text)
    if asset is not None:
        assert asset in text, text
    if partition is not None:
        assert partition in text, text
    if hint:
        assert "hint:" in text, text
    return err


def _describes(kind: type[LakehouseError], text: str) -> bool:
    words = {
        OutputError: "not table data",
        SchemaError: "schema",
        PartitionError: "partition",
        StorageError: "storage",
        lh.CheckFailedError: "check",
    }
    return words.get(kind, "\0") in text


# ---------------------------------------------------------------------------- the lake


def _good() -> Any:
    @lh.asset(name="good", code_version="1")
    def good() -> pl.DataFrame:
        return pl.DataFrame({"id": [1, 2, 3]})

    return good


@pytest.fixture
def base(tmp_path: Path) -> Any:
    """A lakehouse holding one materialized good asset; after each bad input: nothing was
    published, and the good asset still materializes."""
    good = _good()
    lake = lh.Lakehouse(tmp_path / "lake", assets=[good])
    lake.materialize()
    version = lake.table("good").version

    class Base:
        root = tmp_path / "lake"

        def lake(self, *assets: Any, **kw: Any) -> lh.Lakehouse:
            return lh.Lakehouse(self.root, assets=[good, *assets], **kw)

    yield Base()
    after = lh.Lakehouse(tmp_path / "lake", assets=[good])
    assert after.table("good").version == version  # nothing published
    tables = {p.name for p in (tmp_path / "lake").iterdir() if not p.name.startswith(".")}
    assert tables <= {"good"} | DATA.pop("allowed_tables", set()), tables
    assert after.materialize(force=True).materialized == ["good"]  # still usable


# ------------------------------------------------------------------ bad declarations


def _fn(name: str = "bad") -> Callable[..., Any]:
    def bad() -> None:
        return None

    bad.__name__ = name
    return bad


BAD_DECLARATIONS: list[tuple[str, dict[str, Any]]] = [
    ("engine", {"engine": "spark"}),
    ("format", {"format": "parquet"}),
    ("write", {"write": "upsert"}),
    ("write_obj", {"write": 3}),
    ("schema", {"schema": "loose"}),
    ("replace_append", {"schema": "replace", "write": "append"}),
    ("code_version", {"code_version": 3}),
    ("partitions_obj", {"partitions": "daily", "partition_column": "day"}),
    ("column_without_partitions", {"partition_column": "day"}),
    ("partitions_without_column", {"partitions": lh.daily(start="2024-01-01")}),
    ("column_count", {"partitions": lh.daily(start="2024-01-01"), "partition_column": ["a", "b"]}),
    ("max_parts_zero", {"max_partitions_per_run": 0}),
    ("max_parts_text", {"max_partitions_per_run": "7"}),
    ("retries", {"retries": -1}),
    ("retries_text", {"retries": "2"}),
    ("max_age", {"max_age": "soon"}),
    ("unknown_kwarg", {"colour": "red"}),
    ("ins_unknown", {"ins": {"nope": "good"}}),
    ("deps_entry", {"deps": [""]}),
    ("checks_entry", {"checks": ["not_null(id)"]}),
    ("checks_dup", {"checks": [lh.unique("id"), lh.unique("id")]}),
    ("namespace", {"namespace": "/"}),
    ("merge_keys", {"write": "merge"}),
]


@pytest.mark.parametrize(("case", "kwargs"), BAD_DECLARATIONS, ids=[c for c, _ in BAD_DECLARATIONS])
def test_bad_decorator_arguments(base: Any, case: str, kwargs: dict[str, Any]) -> None:
    name = f"bad_{case}"
    err = expect(lambda: lh.asset(name=name, **kwargs)(_fn(name)), DefinitionError, asset=name)
    assert err.asset is not None and name in err.asset


def test_bad_signatures(base: Any) -> None:
    def star(*args: Any) -> None: ...
    def kw(**kwargs: Any) -> None: ...
    def default(good: Any = None) -> None: ...
    def two_ctx(ctx: lh.Context, context: lh.Context) -> None: ...

    for fn in (star, kw, default, two_ctx):
        expect(lambda fn=fn: lh.asset(fn), DefinitionError, asset=fn.__name__)
    expect(lambda: lh.asset(lambda: None), DefinitionError)  # a lambda needs a name
    expect(lambda: lh.asset(42), DefinitionError)
    expect(lambda: lh.asset(name="ns/x")(_fn()), DefinitionError, asset="ns/x")
    expect(lambda: lh.merge(on=[]), DefinitionError)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=st.one_of(
        st.just("   "), st.just("a/b"), st.text(min_size=1, max_size=8).map(lambda s: f"{s}/{s}")
    )
)
def test_bad_asset_names(base: Any, name: str) -> None:
    expect(lambda: lh.asset(name=name)(_fn()), DefinitionError)


# --------------------------------------------------------------------------- graphs


def _spec(name: str, ups: list[str]) -> lh.AssetSpec:
    return lh.AssetSpec(name, None, lambda: None, deps=tuple(ups), defined_at=f"test:{name}")


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(n=st.integers(min_value=1, max_value=6), extra=st.integers(min_value=0, max_value=3))
def test_cycles_name_the_path(base: Any, n: int, extra: int) -> None:
    names = [f"cy{i}" for i in range(n)]
    specs = [_spec(names[i], [names[(i + 1) % n]]) for i in range(n)]
    specs += [_spec(f"ok{i}", [names[0]]) for i in range(extra)]
    err = expect(lambda: AssetGraph(specs), CycleError)
    assert all(nm in str(err) for nm in names)
    expect(lambda: base.lake(*specs).plan(), CycleError)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    up=st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=10).filter(
        lambda s: s != "good"
    )
)
def test_unknown_upstreams(base: Any, up: str) -> None:
    expect(lambda: base.lake(_spec("needs", [up])).plan(), UnknownAssetError, asset="needs")


def test_duplicates_and_unknown_selections(base: Any) -> None:
    a1, a2 = _spec("dup", []), _spec("dup", [])
    expect(lambda: base.lake(a1, a2).plan(), DuplicateAssetError, asset="dup")
    lake = base.lake()
    for sel in ("nope", "+nope", "nope+", ["good", "nope"]):
        expect(lambda sel=sel: lake.materialize(sel), UnknownAssetError, asset="nope")
    expect(lambda: lake.history("nope"), UnknownAssetError, asset="nope")
    expect(lambda: lake.read("nope"), UnknownAssetError, asset="nope")


# ---------------------------------------------------------------------- return types


@pytest.mark.parametrize(
    "value",
    [{"a": 1}, [1, 2], "select 1", 42, None, {1, 2}, 3.5, b"bytes"],
    ids=["dict", "list", "sql_for_polars", "int", "none", "set", "float", "bytes"],
)
def test_wrong_return_types(base: Any, value: Any) -> None:
    @lh.asset(name="bad_return", code_version="1")
    def bad_return() -> Any:
        return value

    expect(lambda: base.lake(bad_return).materialize(), OutputError, asset="bad_return")


# ----------------------------------------------------------------------- schema drift


DRIFT = [
    ("strict", {"id": [1], "v": [1]}, {"id": [1], "v": [1], "extra": [1]}),
    ("strict", {"id": [1], "v": [1]}, {"id": [1]}),
    ("strict", {"id": [1], "v": [1]}, {"id": [1], "v": ["x"]}),
    ("add_columns", {"id": [1], "v": [1]}, {"id": [1]}),
    ("add_columns", {"id": [1], "v": [1]}, {"id": [1], "v": ["text"]}),
    ("add_columns", {"id": [1], "v": [1.5]}, {"id": [1], "v": [True]}),
]


@pytest.mark.parametrize("fmt", ["delta", "iceberg"])
@pytest.mark.parametrize(("mode", "first", "second"), DRIFT)
def test_schema_drift_under_each_mode(
    base: Any, fmt: str, mode: str, first: dict[str, Any], second: dict[str, Any]
) -> None:
    @lh.asset(name="drift", code_version="1", schema=mode, format=fmt)
    def drift() -> pl.DataFrame:
        return pl.DataFrame(DATA.get("drift", first))

    DATA["allowed_tables"] = {"drift"}
    lake = base.lake(drift)
    lake.materialize("drift")
    version = lake.table("drift").version
    before = lake.read("drift")
    DATA["drift"] = second
    expect(lambda: lake.materialize("drift", force=True), SchemaError, asset="drift")
    assert lake.table("drift").version == version and lake.read("drift").equals(before)
    DATA.pop("drift")


def test_replace_schema_needs_a_full_overwrite(base: Any) -> None:
    @lh.asset(
        name="rep",
        code_version="1",
        schema="replace",
        partitions=lh.static(["a", "b"]),
        partition_column="k",
    )
    def rep(ctx: lh.Context) -> pl.DataFrame:
        return pl.DataFrame(
            DATA.get("rep", {"k": list(ctx.partition.keys), "v": [1] * len(ctx.partition.keys)})
        )

    DATA["allowed_tables"] = {"rep"}
    lake = base.lake(rep)
    lake.materialize("rep")
    DATA["rep"] = {"k": ["a"], "v": ["text"]}
    expect(lambda: lake.materialize("rep", partitions="a", force=True), SchemaError, asset="rep")
    DATA.pop("rep")


# ------------------------------------------------------------------------ partitions


def _daily_asset() -> Any:
    @lh.asset(
        name="days",
        code_version="1",
        partitions=lh.daily(start="2024-01-01", end="2024-02-01"),
        partition_column="day",
    )
    def days(ctx: lh.Context) -> pl.DataFrame:
        out = DATA.get("days")
        if out is not None:
            return pl.DataFrame(out)
        ds = pl.date_range(
            ctx.partition.start.date(), ctx.partition.end.date(), closed="left", eager=True
        )
        return pl.DataFrame({"day": ds, "v": [1] * len(ds)})

    return days


@pytest.mark.parametrize(
    "keys",
    [
        "2099-01-01",
        "2023-12-31",
        "not-a-date",
        "2024-01-05..2024-01-01",
        "2024-13-01",
        "2024-01-01..2099-01-01",
        ["2024-01-01", "nope"],
        123,
        "2024/01/02",
        "2024-01-01..",
        "..2024-01-03",
        "all..2024-01-02",
    ],
)
def test_bad_partition_keys_and_ranges(base: Any, keys: Any) -> None:
    lake = base.lake(_daily_asset())
    expect(lambda: lake.materialize("days", partitions=keys), (PartitionError, ConfigError))


@pytest.mark.parametrize(
    "rows",
    [
        {"day": [dt.date(2024, 1, 9)], "v": [1]},  # outside the partition written
        {"day": [None], "v": [1]},  # null partition value
        {"v": [1]},  # no partition column
    ],
)
def test_bad_partition_output(base: Any, rows: dict[str, Any]) -> None:
    DATA["days"] = rows
    lake = base.lake(_daily_asset())
    expect(
        lambda: lake.materialize("days", partitions="2024-01-02"),
        PartitionError,
        asset="days",
        partition="2024-01-02",
    )
    DATA.pop("days")


def test_static_partitions_and_unpartitioned(base: Any) -> None:
    @lh.asset(
        name="regions", code_version="1", partitions=lh.static(["eu", "us"]), partition_column="r"
    )
    def regions(ctx: lh.Context) -> pl.DataFrame:
        return pl.DataFrame({"r": list(ctx.partition.keys)})

    lake = base.lake(regions)
    expect(lambda: lake.materialize("regions", partitions="asia"), PartitionError, asset="regions")
    expect(lambda: lake.materialize("good", partitions="2024-01-01"), PartitionError)
    expect(lambda: lh.static([]), PartitionError)
    expect(lambda: lh.daily(start="yesterday-ish"), PartitionError)
    expect(lambda: lh.daily(start="2024-02-01", end="2024-01-01"), PartitionError)


# --------------------------------------------------------------------------- storage


def test_unreachable_or_unwritable_storage(base: Any, tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    good = _good()
    expect(
        lambda: lh.Lakehouse(
            blocker / "lake", assets=[good], local_dir=str(tmp_path / "st1")
        ).materialize(),
        StorageError,
        asset="good",
    )
    expect(
        lambda: lh.Lakehouse(
            "/proc/lakehouse-wh", assets=[good], local_dir=str(tmp_path / "st2")
        ).materialize(),
        StorageError,
        asset="good",
    )
    expect(
        lambda: lh.Lakehouse(
            tmp_path / "ok", assets=[good], local_dir="/proc/lakehouse-state"
        ).plan(),
        (CatalogError, StorageError, ConfigError),
    )


# --------------------------------------------------------------------------- catalog


def test_corrupt_or_newer_catalog(base: Any, tmp_path: Path) -> None:
    import sqlalchemy as sa

    from lakehouse.catalog.sql import SCHEMA_VERSION, meta_table

    good = _good()
    corrupt = tmp_path / "corrupt"
    (corrupt / ".lakehouse").mkdir(parents=True)
    (corrupt / ".lakehouse" / "catalog.db").write_bytes(b"garbage" * 500)
    expect(lambda: lh.Lakehouse(corrupt, assets=[good]).plan(), CatalogError)
    for value in (str(SCHEMA_VERSION + 1), "banana"):
        where = tmp_path / f"v_{value}"
        lake = lh.Lakehouse(where, assets=[good])
        lake.plan()
        with lake.catalog.engine.begin() as conn:
            conn.execute(
                sa.update(meta_table)
                .where(meta_table.c.key == "schema_version")
                .values(value=value)
            )
        lake.close()
        expect(lambda where=where: lh.Lakehouse(where, assets=[good]).plan(), CatalogError)
    expect(
        lambda: lh.Lakehouse(tmp_path / "x", assets=[good], catalog="nosuchdb://x").plan(),
        CatalogError,
    )


# -------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    "kwargs",
    [
        {"format": "parquet"},
        {"executor": "spark"},
        {"max_workers": 0},
        {"max_workers": "many"},
        {"storage_options": "not json"},
        {"storage_options": 5},
        {"progress": "maybe"},
        {"colour": "blue"},
        {"engine": "pandas"},
        {"max_workers": -2},
        {"iceberg_catalog": "[1, 2]"},
    ],
)
def test_malformed_settings(base: Any, kwargs: dict[str, Any]) -> None:
    expect(
        lambda: lh.Lakehouse(**{"warehouse": str(base.root), **kwargs}, assets=[_good()]),
        ConfigError,
    )


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("LAKEHOUSE_FORMAT", "orc"),
        ("LAKEHOUSE_EXECUTOR", "ray!"),
        ("LAKEHOUSE_MAX_WORKERS", "-3"),
        ("LAKEHOUSE_PROGRESS", "sometimes"),
    ],
)
def test_malformed_environment(
    base: Any, monkeypatch: pytest.MonkeyPatch, var: str, value: str
) -> None:
    monkeypatch.setenv(var, value)
    err = expect(lambda: lh.Lakehouse(base.root, assets=[_good()]), ConfigError)
    assert var in str(err)


@pytest.mark.parametrize(
    "text",
    ["[lakehouse\nformat = 'delta'", "format = 'parquet'", "colour = 'red'", "max_workers = 'x'"],
)
def test_malformed_settings_file(
    base: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "lakehouse.toml").write_text(text)
    monkeypatch.chdir(proj)
    expect(lambda: lh.Lakehouse(base.root, assets=[_good()]), ConfigError)


# ----------------------------------------------------------------------------- checks


@pytest.mark.parametrize(
    "make",
    [
        lambda: lh.not_null(),
        lambda: lh.unique(),
        lambda: lh.accepted_values("s", []),
        lambda: lh.row_count(min=3, max=1),
        lambda: lh.expect(1),
        lambda: lh.row_count(),
        lambda: lh.not_null("a", severity="loud"),
    ],
)
def test_bad_check_declarations(base: Any, make: Callable[[], Any]) -> None:
    expect(make, DefinitionError)


def test_failing_check_publishes_nothing(base: Any) -> None:
    @lh.asset(name="checked", code_version="1", checks=[lh.not_null("id")])
    def checked() -> pl.DataFrame:
        return pl.DataFrame({"id": [1, None]})

    expect(lambda: base.lake(checked).materialize(), lh.CheckFailedError, asset="checked")


# ------------------------------------------------------------------------------ count


def test_zz_at_least_100_bad_inputs_were_tried() -> None:
    if os.environ.get("PYTEST_XDIST_WORKER") or TRIED[0] == 0:
        pytest.skip("only meaningful when the whole module runs in one process")
    print(f"\nbad inputs tried: {TRIED[0]}")
    assert TRIED[0] >= 100, TRIED[0]
