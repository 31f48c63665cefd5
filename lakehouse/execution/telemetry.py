"""Run telemetry: log context, OpenTelemetry spans and Prometheus metrics (layer 4).

* **Logging** - records of the ``lakehouse`` logger carry ``run_id``, ``asset`` and
  ``partition`` (see :mod:`lakehouse._logging`); nothing is printed unless the
  application configures logging.
* **Spans** - when the application has imported ``opentelemetry`` (to set up a tracer
  provider), every run is a span
  ``lakehouse.run`` with one child ``lakehouse.step`` per asset step, which has children
  ``read``, ``compute``, ``checks`` and ``commit``. Spans go to whatever tracer provider
  the application set up (none: the API's no-op tracer). Steps on other threads or Dask
  workers join the run's trace through a W3C ``traceparent`` carried by the step.
* **Metrics** - when the application has imported ``prometheus_client`` (to serve
  metrics), the coordinator counts runs and
  steps by outcome, rows written, and step seconds on the default registry. Serve them
  with ``prometheus_client.start_http_server(9464)``.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from .. import _logging

if TYPE_CHECKING:  # pragma: no cover
    from .step import Step, StepResult

log = _logging.get_logger()

TRACER_NAME = "lakehouse"
PHASES = ("read", "compute", "checks", "commit")


# -------------------------------------------------------------------------- spans


def _in_use(module: str) -> bool:
    """Whether the process already imported ``module``: telemetry libraries are used only
    when the application set them up (importing them costs every run ~100 ms otherwise)."""
    return module in sys.modules


def tracer() -> Any:
    """The OpenTelemetry tracer of lakehouse, or ``None`` when the application has not
    imported OpenTelemetry (no provider can be configured then) or it is not installed."""
    if not _in_use("opentelemetry.trace"):
        return None
    try:
        from opentelemetry import trace
    except ImportError:
        return None
    return trace.get_tracer(TRACER_NAME)


def carrier() -> dict[str, str]:
    """The current trace context as W3C headers (empty without OpenTelemetry or a span)."""
    if not _in_use("opentelemetry.trace"):
        return {}
    try:
        from opentelemetry.propagate import inject
    except ImportError:
        return {}
    out: dict[str, str] = {}
    inject(out)
    return out


def set_run_outcome(span: Any, failed: int, succeeded: int) -> None:
    if span is None:
        return
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute("lakehouse.steps_failed", failed)
    span.set_attribute("lakehouse.steps_succeeded", succeeded)
    if failed:
        span.set_status(Status(StatusCode.ERROR, f"{failed} step(s) failed"))


_current: contextvars.ContextVar[StepTelemetry | None] = contextvars.ContextVar(
    "lakehouse_step_telemetry", default=None
)


def phase(name: str) -> None:
    """Start phase ``name`` of the step running in this context (no-op outside a step)."""
    tel = _current.get()
    if tel is not None:
        tel.phase(name)


class StepTelemetry:
    """Span, phases, log context and column-lineage probe of one step, on its worker.

    ``phase(name)`` closes the previous phase span and opens the next; ``end(result)``
    closes everything, adds what was observed (column lineage, output schema) to the
    result and returns it.
    """

    def __init__(self, step: Step) -> None:
        self.step = step
        self._tokens: list[tuple[Any, Any]] = [
            (var, var.set(value))
            for var, value in (
                (_logging._run_id, step.run_id),
                (_logging._asset, step.asset),
                (_logging._partition, step.partitions_text),
            )
        ]
        self._tokens.append((_current, _current.set(self)))
        self._span: Any = None
        self._phase: Any = None
        self._phase_name: str | None = None
        self._started = time.perf_counter()
        self.column_lineage: str | None = None
        self.output_schema: tuple[tuple[str, str], ...] = ()
        self.bytes: int | None = None
        self.probe: Any = None
        if getattr(step, "column_lineage", False):
            from .column_probe import LineageProbe

            self.probe = LineageProbe(step)
        t = tracer()
        if t is None:
            return
        try:
            from opentelemetry import context as otel_context
            from opentelemetry.propagate import extract

            carried = dict(getattr(step, "trace", None) or {})
            parent = extract(carried) if carried else otel_context.get_current()
            attrs = {
                "lakehouse.run_id": step.run_id,
                "lakehouse.asset": step.asset,
                "lakehouse.step_id": step.step_id,
                "lakehouse.code_version": step.code_version,
            }
            if step.partitions_text:
                attrs["lakehouse.partitions"] = step.partitions_text
            self._span = t.start_span("lakehouse.step", context=parent, attributes=attrs)
            self._tracer = t
        except Exception:
            log.debug("could not start the step span", exc_info=True)
            self._span = None

    # -- column lineage (only when the coordinator asked for it) -----------------------

    def input(self, inp: Any, value: Any) -> Any:
        """A prepared input, marked for the lineage analyser when lineage is wanted."""
        return value if self.probe is None else self.probe.mark(inp, value)

    def capture(self) -> Any:
        """A context manager around the asset function call."""
        return contextlib.nullcontext() if self.probe is None else self.probe.capture()

    def analyse(self, value: Any, engine: Any) -> None:
        """Column lineage of what the function returned (before it is converted)."""
        if self.probe is not None:
            self.column_lineage = self.probe.analyse(value, engine)

    def output(self, data: Any) -> None:
        """Remember the output schema (names and Arrow types) for lineage events."""
        try:
            from ..storage import normalize_type

            self.output_schema = tuple((f.name, normalize_type(f.type)) for f in data.schema)
        except Exception:
            self.output_schema = ()

    def written(self, result: Any) -> None:
        """Remember what the commit reported (bytes of the files it added)."""
        self.bytes = getattr(result, "bytes", None) if result is not None else None

    # -- spans ---------------------------------------------------------------------------

    def phase(self, name: str) -> None:
        """Start phase ``name`` (``read``, ``compute``, ``checks``, ``commit``)."""
        self._end_phase()
        self._phase_name = name
        if self._span is None:
            return
        try:
            from opentelemetry import trace

            ctx = trace.set_span_in_context(self._span)
            self._phase = self._tracer.start_span(
                name, context=ctx, attributes={"lakehouse.asset": self.step.asset}
            )
        except Exception:
            self._phase = None

    def _end_phase(self, error: str | None = None) -> None:
        if self._phase is not None:
            try:
                if error is not None:
                    from opentelemetry.trace import Status, StatusCode

                    self._phase.set_status(Status(StatusCode.ERROR, error[:200]))
                self._phase.end()
            except Exception:
                pass
        self._phase = None

    def end(self, result: StepResult) -> StepResult:
        """Close the spans with the step's outcome, reset the log context, return ``result``
        with the column lineage and output schema observed."""
        try:
            failed = result.status != "materialized"
            self._end_phase(result.error if failed else None)
            if self._span is not None:
                from opentelemetry.trace import Status, StatusCode

                self._span.set_attribute("lakehouse.outcome", result.status)
                if result.rows is not None:
                    self._span.set_attribute("lakehouse.rows", result.rows)
                if result.version is not None:
                    self._span.set_attribute("lakehouse.version", str(result.version))
                if failed:
                    self._span.set_status(
                        Status(StatusCode.ERROR, (result.error or result.status)[:200])
                    )
                self._span.end()
            if (
                failed
            ):  # the coordinator reports the failure as a warning; this says where it happened
                log.info("step %s in phase %s: %s", result.status, self._phase_name, result.error)
            else:
                log.info(
                    "step materialized %s rows as version %s in %.3f s",
                    result.rows,
                    result.version,
                    time.perf_counter() - self._started,
                )
            changes: dict[str, Any] = {}
            names = {f.name for f in dataclasses.fields(result)}
            if self.column_lineage is not None and result.column_lineage is None:
                changes["column_lineage"] = self.column_lineage
            if (
                self.output_schema
                and "output_schema" in names
                and not getattr(result, "output_schema", ())
            ):
                changes["output_schema"] = self.output_schema
            if (
                self.bytes is not None
                and "bytes" in names
                and getattr(result, "bytes", None) is None
            ):
                changes["bytes"] = self.bytes
            if changes:
                result = dataclasses.replace(result, **changes)
        except Exception:
            pass
        finally:
            for var, token in reversed(self._tokens):
                with contextlib.suppress(ValueError):  # reset from another context: leave it
                    var.reset(token)
            self._tokens = []
        return result


# ------------------------------------------------------------------------ metrics


_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
_metrics_lock = threading.Lock()
_metrics: dict[str, Any] = {}


def metrics() -> dict[str, Any] | None:
    """The Prometheus collectors (created once on the default registry), or ``None``
    when the application has not imported ``prometheus_client`` (nothing could serve the
    metrics then) or it is not installed."""
    if _metrics:
        return _metrics
    if not _in_use("prometheus_client"):
        return None
    try:
        import prometheus_client as prom
    except ImportError:
        return None
    with _metrics_lock:
        if not _metrics:
            _metrics.update(
                {
                    "runs": prom.Counter("lakehouse_runs", "Runs by outcome", ["outcome"]),
                    "steps": prom.Counter(
                        "lakehouse_steps", "Asset steps by outcome", ["asset", "outcome"]
                    ),
                    "rows": prom.Counter(
                        "lakehouse_rows_written", "Rows committed to asset tables", ["asset"]
                    ),
                    "seconds": prom.Histogram(
                        "lakehouse_step_seconds",
                        "Wall time of asset steps",
                        ["asset"],
                        buckets=_BUCKETS,
                    ),
                }
            )
    return _metrics


def record_step(result: StepResult) -> None:
    """Count one finished step (coordinator side)."""
    m = metrics()
    if m is None:
        return
    try:
        m["steps"].labels(result.asset, result.status).inc()
        m["seconds"].labels(result.asset).observe(max(result.seconds, 0.0))
        if result.status == "materialized" and result.rows:
            m["rows"].labels(result.asset).inc(result.rows)
    except Exception:
        log.debug("could not record step metrics", exc_info=True)


def record_run(outcome: str) -> None:
    """Count one finished run."""
    m = metrics()
    if m is None:
        return
    with contextlib.suppress(Exception):
        m["runs"].labels(outcome).inc()
