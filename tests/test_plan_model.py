"""Planning against a brute-force model: one reason per partition, checked partition by
partition (pure: random graphs, random catalog state, no tables)."""

from __future__ import annotations

import itertools
from datetime import datetime, timezone
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import lakehouse as lh
from lakehouse.assets import AssetInput, AssetSpec
from lakehouse.catalog import InputVersion, StateRow
from lakehouse.graph import AssetGraph
from lakehouse.partitions import RangeSet
from lakehouse.plan import LEADING_REASONS, build_plan, map_down, universe

DAILY = lh.daily(start="2020-01-01", end="2020-01-09")  # 8 partitions
MONTHLY = lh.monthly(start="2020-01-01", end="2020-03-01")  # 2 partitions
DEFINITIONS = [None, DAILY, MONTHLY]
NOW = datetime(2023, 1, 1, tzinfo=timezone.utc)


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(1, 6))
    specs = []
    for i in range(n):
        defn = draw(st.sampled_from(DEFINITIONS))
        parents = sorted(draw(st.sets(st.integers(0, i - 1), max_size=2))) if i else []
        inputs = []
        for p in parents:
            mapping = None
            if defn is DAILY and specs[p].partitions is DAILY and draw(st.booleans()):
                mapping = lh.upstream(f"a{p}", offset=draw(st.sampled_from([-1, 1]))).mapping
            inputs.append(AssetInput(f"a{p}", f"a{p}", mapping=mapping))
        specs.append(AssetSpec(f"a{i}", None, lambda: None, inputs=tuple(inputs), partitions=defn))
    graph = AssetGraph(specs)
    state: dict[str, list[StateRow]] = {}
    code_versions = {}
    for spec in specs:
        size = len(universe(spec, NOW))
        code_versions[spec.key] = draw(st.sampled_from(["1", "2"]))
        rows = []
        # disjoint ranges, some partitions left out
        cuts = sorted(draw(st.sets(st.integers(0, size), max_size=4)) | {0, size})
        for start, end in itertools.pairwise(cuts):
            if draw(st.integers(0, 3)) == 0:
                continue
            inputs = tuple(
                InputVersion(up, None, draw(st.integers(0, 3)))
                for up in graph.parents[spec.key]
                if draw(st.booleans())
            )
            rows.append(
                StateRow(
                    asset=spec.key,
                    start=start,
                    end=end,
                    mat_id=0,
                    version=None,
                    seq=draw(st.integers(0, 3)),
                    code_version=draw(st.sampled_from(["1", "2"])),
                    inputs=inputs,
                    materialized_at=0.0,
                )
            )
        if rows:
            state[spec.key] = rows
    extra: dict[str, list[tuple[RangeSet, str, str | None]]] = {}
    for spec in specs:
        size = len(universe(spec, NOW))
        for _ in range(draw(st.integers(0, 2))):
            start = draw(st.integers(0, size))
            end = draw(st.integers(start, size + 1))  # may reach past the universe
            reason = draw(st.sampled_from(["check_failed", "source_changed", "expired"]))
            extra.setdefault(spec.key, []).append((RangeSet.of(start, end), reason, None))
    selected = graph.sort(draw(st.sets(st.sampled_from(list(graph.order)), min_size=1)))
    targets = {}
    for key in selected:
        if graph.specs[key].partitions is not None and draw(st.booleans()):
            size = len(universe(graph.specs[key], NOW))
            start = draw(st.integers(0, size))
            targets[key] = RangeSet.of(start, draw(st.integers(start, size)))
    return {
        "graph": graph,
        "state": state,
        "code_versions": code_versions,
        "extra": extra,
        "selected": selected,
        "targets": targets,
        "force": draw(st.booleans()),
    }


def model(sc: dict[str, Any]) -> dict[str, dict[int, tuple[str, str | None]]]:
    """The first reason of every partition, one partition at a time."""
    graph, state = sc["graph"], sc["state"]
    reasons: dict[str, dict[int, tuple[str, str | None]]] = {}
    for key in graph.order:
        spec = graph.specs[key]
        rows = state.get(key, [])
        extra = sc["extra"].get(key, [])
        stale_of = {up: RangeSet.from_indices(reasons[up]) for up in graph.parents[key]}
        out: dict[int, tuple[str, str | None]] = {}
        for p in universe(spec, NOW).indices():
            found: list[tuple[str, str | None]] = []
            found += [(r, c) for rs, r, c in extra if r in LEADING_REASONS and p in rs]
            holding = [r for r in rows if r.start <= p < r.end]
            if not holding:
                missing = "partition_missing" if rows and spec.partitions else "never_materialized"
                found.append((missing, None))
            if any(r.code_version != sc["code_versions"][key] for r in holding):
                found.append(("code_changed", key))
            for up in graph.parents[key]:
                for r in rows:
                    consumed = next((i.seq for i in r.inputs if i.asset == up), -1)
                    newer = RangeSet(
                        [(u.start, u.end) for u in state.get(up, []) if u.seq > consumed]
                    )
                    if r.start <= p < r.end and p in map_down(graph, up, key, newer, NOW):
                        found.append(("upstream_changed", up))
            found += [(r, c) for rs, r, c in extra if r not in LEADING_REASONS and p in rs]
            for up in graph.parents[key]:
                if p in map_down(graph, up, key, stale_of[up], NOW):
                    found.append(("upstream_stale", up))
            if found:
                out[p] = found[0]
        reasons[key] = out
    return reasons


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_plan_gives_every_partition_its_first_reason(sc: dict[str, Any]) -> None:
    graph = sc["graph"]
    plan = build_plan(
        graph,
        sc["state"],
        sc["code_versions"],
        sc["selected"],
        sc["targets"],
        force=sc["force"],
        extra=sc["extra"],
        now=NOW,
    )
    expected = model(sc)
    got: dict[str, dict[int, tuple[str, str | None]]] = {key: {} for key in sc["selected"]}
    for item in plan.items:
        for p in item.ranges.indices():
            assert p not in got[item.asset], (item.asset, p)  # one reason per partition
            got[item.asset][p] = (item.reason, item.cause)
    for key in sc["selected"]:
        target = sc["targets"].get(key, universe(graph.specs[key], NOW))
        want = {p: r for p, r in expected[key].items() if p in target}
        if sc["force"]:
            want.update({p: ("forced", None) for p in target.indices() if p not in want})
        assert got[key] == want, key
    order = [item.asset for item in plan.items]
    assert order == sorted(order, key=sc["selected"].index)  # grouped, in topological order
