"""Hypothesis properties of planning on random DAGs, on real Delta tables."""

from __future__ import annotations

import tempfile

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lakehouse as lh
from lakehouse.assets import build_spec, register
from lakehouse.graph import AssetGraph


@st.composite
def dags(draw: st.DrawFn) -> list[tuple[str, tuple[str, ...]]]:
    n = draw(st.integers(1, 7))
    out = []
    for i in range(n):
        parents = draw(st.sets(st.integers(0, i - 1), max_size=2)) if i else set()
        out.append((f"n{i}", tuple(f"n{p}" for p in sorted(parents))))
    return out


def make_assets(nodes: list[tuple[str, tuple[str, ...]]], versions: dict[str, str]) -> list:
    fns = []
    for name, parents in nodes:
        src = f"def {name}({', '.join(parents)}):\n    return pl.DataFrame({{'v': [1]}})\n"
        ns: dict = {"pl": pl}
        exec(src, ns)  # noqa: S102 - building test assets
        fn = ns[name]
        spec = build_spec(fn, code_version=versions[name])
        register(fn, spec)
        fns.append(fn)
    return fns


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dags(), st.data())
def test_materialize_then_plan_is_empty_and_code_change_marks_descendants(nodes, data) -> None:
    versions = {n: "1" for n, _ in nodes}
    with tempfile.TemporaryDirectory() as tmp:
        lake = lh.Lakehouse(tmp, assets=make_assets(nodes, versions))
        assert lake.materialize().ok
        assert lake.plan().height == 0
        changed = data.draw(st.sampled_from([n for n, _ in nodes]))
        versions[changed] = "2"
        lake2 = lh.Lakehouse(tmp, assets=make_assets(nodes, versions))
        graph = AssetGraph([build_spec(f, code_version="x") for f in make_assets(nodes, versions)])
        expected = {changed, *graph.descendants(changed)}
        plan = lake2.plan()
        assert set(plan["asset"]) == expected
        reasons = dict(zip(plan["asset"], plan["reason"]))
        assert reasons[changed] == "code_changed"
        assert all(reasons[d] == "upstream_stale" for d in expected - {changed})
        assert lake2.materialize().materialized == [k for k in graph.order if k in expected]
        assert lake2.plan().height == 0
