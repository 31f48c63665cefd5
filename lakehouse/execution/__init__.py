"""Execution (layer 4): run steps on an executor, as their upstreams complete.

The coordinator (:func:`~lakehouse.execution.local.schedule`) owns the plan; executors
only run :func:`~lakehouse.execution.step.run_step` and hand back results.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Protocol

from .step import Step, StepResult


class Executor(Protocol):
    """The seam for running steps: in-process, threads, Dask (or Ray, as a small module)."""

    name: str
    max_parallel: int

    def submit(self, step: Step) -> Future[StepResult]:
        """Start ``step``; the future resolves to its :class:`StepResult`."""

    def close(self) -> None:
        """Release workers (clusters this executor started are shut down)."""


__all__ = ["Executor", "Step", "StepResult"]
