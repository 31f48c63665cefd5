"""In-process executors and the coordinator's scheduling loop."""

from __future__ import annotations

import time
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
    remaining: dict[str, int] = {}
    for t in tasks:
        remaining[t.asset] = remaining.get(t.asset, 0) + 1
    failed: dict[str, str] = {}
    pending = list(tasks)
    running: dict[Future[StepResult], Task] = {}

    def blocked_by(task: Task) -> str | None:
        for a in task.waits_for:
            if a in failed:
                return failed[a]
        return None

    def ready(task: Task, now: float) -> bool:
        if task.not_before > now:
            return False
        return all(remaining.get(a, 0) == 0 for a in task.waits_for)

    while pending or running:
        progressed = True
        while progressed:
            progressed = False
            now = time.monotonic()
            for task in list(pending):
                cause = blocked_by(task)
                if cause is not None:
                    pending.remove(task)
                    on_skip(task, cause)
                    _finish(task.asset, remaining, failed, failed_now=cause)
                    progressed = True
                elif ready(task, now) and len(running) < max(1, max_parallel):
                    pending.remove(task)
                    task.attempts += 1
                    running[submit(task)] = task
                    progressed = True
        delayed = [t.not_before for t in pending if t.not_before > time.monotonic()]
        if not running:
            if delayed:  # only retries waiting for their backoff
                time.sleep(max(0.0, min(delayed) - time.monotonic()))
                continue
            for task in pending:  # cannot happen with waits_for inside the run; never hang
                on_skip(task, "unschedulable")
            break
        timeout = max(0.0, min(delayed) - time.monotonic()) if delayed else None
        done, _ = wait(list(running), timeout=timeout, return_when=FIRST_COMPLETED)
        for fut in done:
            task = running.pop(fut)
            res = fut.result()
            if res.status == "failed" and res.retryable and task.attempts <= task.retries:
                task.not_before = time.monotonic() + backoff * 2 ** (task.attempts - 1)
                pending.insert(0, task)
                continue
            task.result = res
            ok = res.status == "materialized"
            on_result(task, res)
            _finish(task.asset, remaining, failed, failed_now=None if ok else task.asset)


def _finish(
    asset: str, remaining: dict[str, int], failed: dict[str, str], failed_now: str | None
) -> None:
    remaining[asset] -= 1
    if failed_now is not None and asset not in failed:
        failed[asset] = failed_now
