from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lakehouse.assets import AssetSpec
from lakehouse.errors import CycleError, DuplicateAssetError, UnknownAssetError
from lakehouse.graph import AssetGraph


def spec(name: str, *deps: str, namespace: str | None = None) -> AssetSpec:
    return AssetSpec(name, namespace, lambda: None, deps=tuple(deps), defined_at=f"here.py:{name}")


@st.composite
def dags(draw: st.DrawFn, max_nodes: int = 25) -> list[tuple[str, tuple[str, ...]]]:
    n = draw(st.integers(1, max_nodes))
    nodes = []
    for i in range(n):
        parents = draw(st.sets(st.integers(0, i - 1), max_size=3)) if i else set()
        nodes.append((f"a{i}", tuple(f"a{p}" for p in sorted(parents))))
    return draw(st.permutations(nodes))


@given(dags())
def test_topological_order_respects_every_edge(nodes: list[tuple[str, tuple[str, ...]]]) -> None:
    g = AssetGraph([spec(n, *ps) for n, ps in nodes])
    pos = {k: i for i, k in enumerate(g.order)}
    assert len(g.order) == len(nodes)
    for up, down in g.edges():
        assert pos[up] < pos[down]


@given(dags(), st.data())
def test_selection_closures(nodes: list[tuple[str, tuple[str, ...]]], data: st.DataObject) -> None:
    g = AssetGraph([spec(n, *ps) for n, ps in nodes])
    target = data.draw(st.sampled_from([n for n, _ in nodes]))
    down = set(g.select(f"{target}+"))
    up = set(g.select(f"+{target}"))
    # brute force: reachability by repeated expansion
    parents = {n: set(ps) for n, ps in nodes}
    anc = set()
    frontier = set(parents[target])
    while frontier:
        anc |= frontier
        frontier = {p for f in frontier for p in parents[f]} - anc
    desc = {n for n in parents if target in _ancestors(n, parents)}
    assert up == anc | {target}
    assert down == desc | {target}


def _ancestors(n: str, parents: dict[str, set[str]]) -> set[str]:
    seen: set[str] = set()
    stack = list(parents[n])
    while stack:
        p = stack.pop()
        if p not in seen:
            seen.add(p)
            stack.extend(parents[p])
    return seen


@settings(max_examples=50)
@given(dags(max_nodes=12), st.data())
def test_any_back_edge_is_reported_as_a_cycle(nodes: list[tuple[str, tuple[str, ...]]], data: st.DataObject) -> None:
    g = AssetGraph([spec(n, *ps) for n, ps in nodes])
    with_parents = [k for k in g.order if g.ancestors(k)]
    if not with_parents:
        return
    low = data.draw(st.sampled_from(with_parents))
    high = data.draw(st.sampled_from(g.ancestors(low)))
    specs = [spec(n, *ps) if n != high else spec(n, *ps, low) for n, ps in nodes]
    with pytest.raises(CycleError) as err:
        AssetGraph(specs)
    path = str(err.value).split("cycle: ")[1].split("\n")[0].split(" -> ")
    assert path[0] == path[-1]
    for a, b in zip(path, path[1:]):
        assert a in dict(nodes)[b] or (b == high and a == low), (a, b)


def test_cycle_message_names_the_path() -> None:
    with pytest.raises(CycleError, match="a -> b -> c -> a|b -> c -> a -> b|c -> a -> b -> c"):
        AssetGraph([spec("a", "c"), spec("b", "a"), spec("c", "b")])


def test_unknown_upstream_suggests_closest_name() -> None:
    with pytest.raises(UnknownAssetError) as err:
        AssetGraph([spec("orders"), spec("revenue", "ordres")])
    assert "ordres" in str(err.value) and "did you mean 'orders'" in str(err.value)
    assert "revenue" in str(err.value)


def test_duplicate_names_say_where_both_are_defined() -> None:
    a = AssetSpec("x", None, lambda: None, defined_at="one.py:3")
    b = AssetSpec("x", None, lambda: None, defined_at="two.py:9")
    with pytest.raises(DuplicateAssetError) as err:
        AssetGraph([a, b])
    assert "one.py:3" in str(err.value) and "two.py:9" in str(err.value)


def test_namespaces_resolve_nearest_first() -> None:
    g = AssetGraph([spec("orders", namespace="sales"), spec("orders", namespace="ops"),
                    spec("revenue", "orders", namespace="sales")])
    assert g.parents["sales/revenue"] == ("sales/orders",)
    with pytest.raises(UnknownAssetError, match="ambiguous"):
        g.key_of("orders")


def test_ten_thousand_assets_build() -> None:
    import random

    rnd = random.Random(1)
    specs = [spec("a0")] + [spec(f"a{i}", *{f"a{rnd.randrange(i)}" for _ in range(2)}) for i in range(1, 10_000)]
    g = AssetGraph(specs)
    assert len(g.order) == 10_000
