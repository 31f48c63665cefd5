"""In-process executors and the coordinator's scheduling loop."""

from __future__ import annotations

import heapq
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from ..partitions import RangeSet
from .step import Step, StepResult, run_step


class SerialExecutor:
    """Runs each step in the calling thread, one at a time (the default)."""

    name = "serial"
    max_parallel = 1

    def submit(self, step: Step) -> Future[StepResult]:
        fut: Future[StepResult] = Future()
        fut.set_result(run_step(step))
        return fut

    def close(self) -> None:
        pass


class ThreadExecutor:
    """Runs steps on a thread pool (Polars, DuckDB and delta-rs release the GIL)."""

    name = "threads"

    def __init__(self, max_workers: int | None = None) -> None:
        import os

        self.max_parallel = max_workers or min(8, (os.cpu_count() or 2))
        self._pool = ThreadPoolExecutor(self.max_parallel, thread_name_prefix="lakehouse")

    def submit(self, step: Step) -> Future[StepResult]:
        return self._pool.submit(run_step, step)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


@dataclass(eq=False)
class Task:
    """One unit of scheduling: an asset range, waiting on assets of the same run.

    Chunks of one asset run in parallel even when their table does not exist yet: the
    table formats let concurrent writers create a table (the losers commit into it).
    """

    asset: str
    ranges: RangeSet
    reason: str
    waits_for: frozenset[str]
    attempts: int = 0
    retries: int = 0
    result: StepResult | None = field(default=None, repr=False)
    not_before: float = 0.0


def schedule(
    tasks: list[Task],
    submit: Callable[[Task], Future[StepResult]],
    on_result: Callable[[Task, StepResult], None],
    on_skip: Callable[[Task, str], None],
    max_parallel: int = 1,
    backoff: float = 0.5,
) -> None:
    """Run ``tasks`` as soon as every asset they wait for has completed.

    Tasks are submitted the moment their upstream assets are complete (not level by
    level), at most ``max_parallel`` at a time. A task whose upstream failed is skipped
    (``on_skip(task, upstream)``); a failure marked retryable is resubmitted up to
    ``task.retries`` times after ``backoff * 2**(attempt - 1)`` seconds, while other tasks
    keep running.
    """
    remaining: dict[str, int] = {}  # unfinished tasks per asset
    for t in tasks:
        remaining[t.asset] = remaining.get(t.asset, 0) + 1
    failed: dict[str, str] = {}  # asset -> the asset whose failure it inherits
    waiters: dict[str, list[Task]] = {}  # asset -> tasks waiting for it to complete
    blockers: dict[int, int] = {}  # id(task) -> assets it still waits for
    ready: deque[Task] = deque()
    delayed: list[tuple[float, int, Task]] = []  # retries waiting for their backoff
    finished: set[int] = set()
    running: dict[Future[StepResult], Task] = {}
    for t in tasks:
        waits = [a for a in t.waits_for if remaining.get(a, 0)]
        blockers[id(t)] = len(waits)
        for a in waits:
            waiters.setdefault(a, []).append(t)
        if not waits:
            ready.append(t)

    def complete(asset: str, failed_now: str | None) -> None:
        """One task of ``asset`` finished (or was skipped): release or skip its waiters.
        Iterative: a failure skips whole chains of descendants without recursing."""
        todo = [(asset, failed_now)]
        while todo:
            name, cause = todo.pop()
            remaining[name] -= 1
            if cause is not None and name not in failed:
                failed[name] = cause
                for t in waiters.get(name, ()):  # skipped now, not when the asset completes
                    if id(t) not in finished:
                        finished.add(id(t))
                        on_skip(t, cause)
                        todo.append((t.asset, cause))
            if remaining[name] == 0:
                for t in waiters.pop(name, ()):
                    blockers[id(t)] -= 1
                    if blockers[id(t)] == 0 and id(t) not in finished:
                        ready.append(t)

    def skip(task: Task, cause: str) -> None:
        finished.add(id(task))
        on_skip(task, cause)
        complete(task.asset, cause)

    while ready or delayed or running:
        now = time.monotonic()
        while delayed and delayed[0][0] <= now:
            ready.appendleft(heapq.heappop(delayed)[2])
        while ready and len(running) < max(1, max_parallel):
            task = ready.popleft()
            if id(task) in finished:
                continue
            cause = next((failed[a] for a in task.waits_for if a in failed), None)
            if cause is not None:
                skip(task, cause)
                continue
            task.attempts += 1
            running[submit(task)] = task
        if not running:
            if ready:
                continue
            if delayed:  # only retries waiting for their backoff
                time.sleep(max(0.0, delayed[0][0] - time.monotonic()))
                continue
            break
        timeout = max(0.0, delayed[0][0] - time.monotonic()) if delayed else None
        done, _ = wait(list(running), timeout=timeout, return_when=FIRST_COMPLETED)
        for fut in done:
            task = running.pop(fut)
            res = fut.result()
            if res.status == "failed" and res.retryable and task.attempts <= task.retries:
                task.not_before = time.monotonic() + backoff * 2 ** (task.attempts - 1)
                heapq.heappush(delayed, (task.not_before, id(task), task))
                continue
            task.result = res
            finished.add(id(task))
            on_result(task, res)
            complete(task.asset, None if res.status == "materialized" else task.asset)
    for task in tasks:  # cannot happen with waits_for inside the run; never hang
        if id(task) not in finished:
            finished.add(id(task))
            on_skip(task, "unschedulable")
