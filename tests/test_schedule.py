"""Properties of the coordinator's scheduling loop (``execution.local.schedule``) against a
model: random DAGs of assets split into chunks, random failures and retries, serial and
threaded submission."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

from hypothesis import given, settings
from hypothesis import strategies as st

from lakehouse.execution.local import Task, schedule
from lakehouse.execution.step import StepResult
from lakehouse.partitions import RangeSet


@st.composite
def plans(draw: st.DrawFn) -> tuple[list[Task], dict[tuple[str, int], list[str]]]:
    """Tasks of a random DAG, and for each (asset, chunk) the outcome of every attempt."""
    n = draw(st.integers(1, 12))
    tasks: list[Task] = []
    outcomes: dict[tuple[str, int], list[str]] = {}
    for i in range(n):
        parents = draw(st.sets(st.integers(0, i - 1), max_size=3)) if i else set()
        chunks = draw(st.integers(1, 3))
        retries = draw(st.integers(0, 2))
        for c in range(chunks):
            tasks.append(
                Task(
                    f"a{i}",
                    RangeSet(((c, c + 1),)),
                    "never_materialized",
                    frozenset(f"a{p}" for p in parents),
                    retries=retries,
                )
            )
            outcomes[(f"a{i}", c)] = draw(
                st.lists(
                    st.sampled_from(["ok", "ok", "ok", "fail", "retryable"]), min_size=3, max_size=3
                )
            )
    return draw(st.permutations(tasks)), outcomes


def run(
    tasks: list[Task], outcomes: dict[tuple[str, int], list[str]], parallel: int
) -> tuple[list[tuple[str, str, int]], dict[str, str], dict[int, float], dict[int, float], int]:
    events: list[tuple[str, str, int]] = []
    skipped: dict[str, str] = {}
    started: dict[int, float] = {}
    ended: dict[int, float] = {}
    lock = threading.Lock()
    active = [0, 0]  # now, most at once

    def work(task: Task) -> StepResult:
        chunk = task.ranges.ranges[0][0]
        outcome = outcomes[(task.asset, chunk)][task.attempts - 1]
        with lock:
            active[0] += 1
            active[1] = max(active[1], active[0])
            started.setdefault(id(task), time.monotonic())
        time.sleep(0.001 if parallel > 1 else 0)
        with lock:
            active[0] -= 1
            ended[id(task)] = time.monotonic()
        status = "materialized" if outcome == "ok" else "failed"
        return StepResult(
            "s", task.asset, chunk, chunk + 1, status, 0.0, 0.0, retryable=outcome == "retryable"
        )

    pool = ThreadPoolExecutor(parallel) if parallel > 1 else None

    def submit(task: Task) -> Future[StepResult]:
        if pool is not None:
            return pool.submit(work, task)
        fut: Future[StepResult] = Future()
        fut.set_result(work(task))
        return fut

    def on_result(task: Task, res: StepResult) -> None:
        events.append((task.asset, res.status, task.ranges.ranges[0][0]))

    def on_skip(task: Task, cause: str) -> None:
        events.append((task.asset, "skipped", task.ranges.ranges[0][0]))
        skipped.setdefault(task.asset, cause)

    try:
        schedule(tasks, submit, on_result, on_skip, max_parallel=parallel, backoff=0.0)
    finally:
        if pool is not None:
            pool.shutdown()
    return events, skipped, started, ended, active[1]


@settings(max_examples=60, deadline=None)
@given(plans(), st.sampled_from([1, 3]))
def test_schedule_matches_the_model(
    plan: tuple[list[Task], dict[tuple[str, int], list[str]]], parallel: int
) -> None:
    tasks, outcomes = plan
    events, skipped, started, ended, most = run(tasks, outcomes, parallel)

    # every task is reported exactly once
    assert sorted((a, c) for a, _, c in events) == sorted(
        (t.asset, t.ranges.ranges[0][0]) for t in tasks
    )
    assert most <= parallel

    # the model: a chunk fails when its attempts run out on failures (a non-retryable
    # failure ends them at once); an asset fails when one chunk fails or is skipped;
    # a task is skipped exactly when one of the assets it waits for failed
    by_asset: dict[str, list[Task]] = {}
    for t in tasks:
        by_asset.setdefault(t.asset, []).append(t)

    def chunk_ok(t: Task) -> tuple[bool, int]:
        for attempt, outcome in enumerate(outcomes[(t.asset, t.ranges.ranges[0][0])], 1):
            if outcome == "ok":
                return True, attempt
            if outcome == "fail" or attempt > t.retries:
                return False, attempt
        return False, 3

    failed_assets: set[str] = set()
    for name in sorted(by_asset, key=lambda a: int(a[1:])):  # a parent has a lower number
        group = by_asset[name]
        if any(p in failed_assets for p in group[0].waits_for):
            failed_assets.add(name)
            continue
        if not all(chunk_ok(t)[0] for t in group):
            failed_assets.add(name)
    status = {(a, c): s for a, s, c in events}
    for t in tasks:
        key = (t.asset, t.ranges.ranges[0][0])
        upstream_failed = any(p in failed_assets for p in t.waits_for)
        if upstream_failed:
            assert status[key] == "skipped", key
            continue
        ok, attempts = chunk_ok(t)
        assert status[key] == ("materialized" if ok else "failed"), key
        assert t.attempts == attempts, key
        # it started only after every chunk of every asset it waits for had finished
        for p in t.waits_for:
            for u in by_asset.get(p, []):
                assert ended[id(u)] <= started[id(t)], (key, p)
    for name, cause in skipped.items():
        assert cause in failed_assets and name in failed_assets


def test_a_failure_skips_a_long_chain_without_recursing() -> None:
    """A failed root skips 5,000 chained descendants (deeper than Python's recursion limit)."""
    n = 5_000
    tasks = [
        Task(
            f"a{i}",
            RangeSet(((0, 1),)),
            "never_materialized",
            frozenset({f"a{i - 1}"} if i else ()),
        )
        for i in range(n)
    ]
    outcomes = {(f"a{i}", 0): ["fail", "fail", "fail"] for i in range(n)}
    events, skipped, *_ = run(tasks, outcomes, 1)
    assert events[0] == ("a0", "failed", 0)
    assert len(events) == n and all(s == "skipped" for _, s, _ in events[1:])
    assert set(skipped.values()) == {"a0"}
