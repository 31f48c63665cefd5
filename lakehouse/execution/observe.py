"""What the coordinator tells the outside world about a run (layer 4).

One :class:`RunObserver` per ``materialize()`` run, created by the coordinator: it binds
the run id to log records, opens the run's OpenTelemetry span and hands its trace context
to the steps, counts Prometheus metrics, sends OpenLineage events, decides which steps
compute column lineage (only for code versions without stored lineage), and adds the
consumed partition ranges to each materialization record (for provenance and impact).
None of it can fail a run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .. import _logging
from . import telemetry

if TYPE_CHECKING:  # pragma: no cover
    from .step import Step, StepResult

log = _logging.get_logger()


class RunObserver:
    """Telemetry, OpenLineage and column-lineage bookkeeping of one run."""

    def __init__(self, lake: Any, run_id: str, assets: Sequence[str], steps: int) -> None:
        self.lake = lake
        self.run_id = run_id
        self._tokens = [
            (var, var.set(value))
            for var, value in (
                (_logging._run_id, run_id),
                (_logging._asset, None),
                (_logging._partition, None),
            )
        ]
        self._lineage_known: set[tuple[str, str]] | None = None
        self._lineage_asked: set[tuple[str, str]] = set()
        self._span: Any = None
        self._closed = False
        self.failed = 0
        self.succeeded = 0
        t = telemetry.tracer()
        if t is not None:
            try:
                self._span = t.start_span(
                    "lakehouse.run",
                    attributes={
                        "lakehouse.run_id": run_id,
                        "lakehouse.assets": list(assets),
                        "lakehouse.steps": steps,
                    },
                )
            except Exception:
                self._span = None
        self.openlineage = None
        config = getattr(lake.settings, "openlineage", None)
        if config:
            try:
                from .openlineage import OpenLineageEmitter

                self.openlineage = OpenLineageEmitter(lake, config, run_id)
            except Exception as exc:
                log.warning(
                    "OpenLineage is configured but cannot start: %s: %s", type(exc).__name__, exc
                )
        log.info("run started: %d step(s) for %s", steps, ", ".join(assets))

    # -- steps ----------------------------------------------------------------------------

    def wants_lineage(self, asset: str, code_version: str) -> bool:
        """Whether a step should compute column lineage: once per code version without any."""
        key = (asset, code_version)
        if key in self._lineage_asked:
            return False
        if self._lineage_known is None:
            try:
                self._lineage_known = {
                    (r["asset"], r["code_version"])
                    for r in self.lake.catalog.rows("code_versions")
                    if r.get("column_lineage")
                }
            except Exception:
                self._lineage_known = set()
        if key in self._lineage_known:
            return False
        self._lineage_asked.add(key)
        return True

    def carrier(self) -> dict[str, str]:
        """The run span's trace context for a step (W3C headers)."""
        if self._span is None:
            return {}
        try:
            from opentelemetry import trace
            from opentelemetry.propagate import inject

            out: dict[str, str] = {}
            inject(out, context=trace.set_span_in_context(self._span))
            return out
        except Exception:
            return {}

    def step_started(self, step: Step) -> None:
        if self.openlineage is not None:
            self.openlineage.start(step)

    def step_finished(self, step: Step | None, result: StepResult) -> None:
        if result.status == "materialized":
            self.succeeded += 1
        else:
            self.failed += 1
        telemetry.record_step(result)
        if step is not None and self.openlineage is not None:
            self.openlineage.finish(step, result)
        if result.status != "materialized":
            with _logging.bind(asset=result.asset):
                log.warning("asset %s %s: %s", result.asset, result.status, result.error)

    def record_extra(self, step: Step | None) -> dict[str, Any]:
        """Extra provenance for the materialization record: consumed partition ranges and
        write mode."""
        if step is None:
            return {}
        out: dict[str, Any] = {"write": str(step.spec.write)}
        try:
            from ..plan import map_up

            graph = self.lake.graph
            ranges: dict[str, list[list[int]]] = {}
            for inp in step.inputs:
                up = inp.version.asset
                spec = graph.specs.get(up)
                if spec is not None and spec.partitions is not None:
                    needed = map_up(graph, step.asset, up, step.ranges)
                    ranges[up] = [[a, b] for a, b in needed.ranges]
            if ranges:
                out["input_ranges"] = ranges
        except Exception:
            log.debug("could not record consumed partition ranges", exc_info=True)
        return out

    # -- the run --------------------------------------------------------------------------

    def close(self, status: str | None = None) -> None:
        """End the run span, count the run, reset the log context (idempotent)."""
        if self._closed:
            return
        self._closed = True
        outcome = status or ("failed" if self.failed else "succeeded")
        try:
            if self.openlineage is not None:
                self.openlineage.close()  # sends what is still queued
            telemetry.record_run(outcome)
            telemetry.set_run_outcome(self._span, self.failed, self.succeeded)
            if self._span is not None:
                self._span.set_attribute("lakehouse.outcome", outcome)
                self._span.end()
            log.info(
                "run %s: %d step(s) materialized, %d failed", outcome, self.succeeded, self.failed
            )
        except Exception:
            pass
        finally:
            for var, token in reversed(self._tokens):
                with contextlib.suppress(ValueError):
                    var.reset(token)
