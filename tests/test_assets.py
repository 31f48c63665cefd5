from __future__ import annotations

import polars as pl
import pytest

import lakehouse as lh
from lakehouse.assets import REGISTRY, collect, spec_of
from lakehouse.errors import DefinitionError


def test_bare_and_called_decorator_return_the_function_unchanged() -> None:
    def raw(x: int) -> int:
        return x + 1

    decorated = lh.asset(raw)
    assert decorated is raw and decorated(1) == 2

    @lh.asset(name="renamed", namespace="ns", code_version="7", tags={"team": "a"})
    def other(ctx: lh.Context, raw: pl.LazyFrame) -> None:
        """Doc."""

    spec = spec_of(other)
    assert spec is not None and spec.key == "ns/renamed" and spec.code_version == "7"
    assert spec.context_param == "ctx" and [i.param for i in spec.inputs] == ["raw"]
    assert spec.description == "Doc." and REGISTRY["ns/renamed"] is spec
    REGISTRY.pop("ns/renamed")
    REGISTRY.pop("raw")


def test_ins_renames_and_deps() -> None:
    @lh.asset(ins={"o": "orders"}, deps=["setup"])
    def report(o, context):  # type: ignore[no-untyped-def]
        return o

    spec = spec_of(report)
    assert spec is not None
    assert spec.inputs[0].param == "o" and spec.inputs[0].asset == "orders"
    assert spec.context_param == "context" and spec.deps == ("setup",)
    REGISTRY.pop("report")


def test_latest_definition_wins_in_registry() -> None:
    @lh.asset(name="cell")
    def one():  # type: ignore[no-untyped-def]
        return 1

    first = REGISTRY["cell"]

    @lh.asset(name="cell")
    def two():  # type: ignore[no-untyped-def]
        return 2

    assert REGISTRY["cell"] is not first and REGISTRY["cell"].fn is two
    REGISTRY.pop("cell")


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"engine": "spark"}, "engine='spark'"),
        ({"format": "hudi"}, "format='hudi'"),
        ({"write": "upsert"}, "write='upsert'"),
        ({"schema": "loose"}, "schema='loose'"),
        ({"schema": "replace", "write": "append"}, "schema='replace' needs write='overwrite'"),
        ({"ins": {"nope": "x"}}, "ins names parameters"),
        ({"name": "a/b"}, "is invalid"),
        ({"colour": "red"}, "unknown argument"),
        ({"partition_column": "day"}, "partition_column= without partitions="),
        ({"max_age": "soon"}, "not a duration"),
        ({"retries": -1}, "retries=-1"),
    ],
)
def test_bad_declarations_name_the_asset_and_the_fix(kwargs: dict, needle: str) -> None:
    with pytest.raises(DefinitionError) as err:
        @lh.asset(**kwargs)
        def broken(x):  # type: ignore[no-untyped-def]
            return x

    text = str(err.value)
    assert needle in text
    assert "hint:" in text
    assert "broken" in text or kwargs.get("name", "") in text or "colour" in text


def test_varargs_and_defaults_are_rejected() -> None:
    with pytest.raises(DefinitionError, match=r"\*args"):
        lh.asset(lambda *args: None, name="v")  # type: ignore[arg-type]
    with pytest.raises(DefinitionError, match="default value"):
        def d(x=1):  # type: ignore[no-untyped-def]
            return x
        lh.asset(d)


def test_collect_from_module_mapping_and_list() -> None:
    @lh.asset(name="c1")
    def c1():  # type: ignore[no-untyped-def]
        return None

    assert [s.key for s in collect({"a": c1, "b": 3})] == ["c1"]
    assert [s.key for s in collect([c1, c1])] == ["c1"]
    with pytest.raises(DefinitionError, match="holds no asset"):
        collect(42)
    REGISTRY.pop("c1")
