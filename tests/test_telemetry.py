"""Run telemetry: structured log records, OpenTelemetry spans (SDK in-memory exporter),
Prometheus metrics served over HTTP on 127.0.0.1 (issue: lineage / telemetry)."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import lakehouse as lh

DAYS = lh.daily(start="2013-01-01", end="2013-02-01")


def pipeline(fail: bool = False) -> list:
    @lh.asset(partitions=DAYS, partition_column="day", code_version="1")
    def events(ctx: lh.Context) -> pl.DataFrame:
        ctx.log.info("loading %s", ctx.partition.key)
        d = pl.date_range(ctx.partition.start.date(), ctx.partition.end.date(), "1d", eager=True, closed="left")
        return pl.DataFrame({"day": d, "n": list(range(len(d)))})

    @lh.asset(code_version="1")
    def total(events: pl.LazyFrame) -> pl.LazyFrame:
        logging.getLogger("lakehouse").info("summing")  # the plain library logger
        if fail:
            raise RuntimeError("total exploded")
        return events.select(pl.col("n").sum())

    return [events, total]


# ------------------------------------------------------------------------ logging


def test_every_record_carries_run_asset_and_partition(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    lake = lh.Lakehouse(tmp_path / "lake", assets=pipeline())
    with caplog.at_level(logging.DEBUG, logger="lakehouse"):
        result = lake.materialize(partitions="2013-01-02..2013-01-03")
    records = [r for r in caplog.records if r.name == "lakehouse"]
    assert len(records) >= 5
    for r in records:
        assert r.run_id == result.run_id, r.getMessage()
        assert hasattr(r, "asset") and hasattr(r, "partition")
    user = next(r for r in records if r.getMessage() == "loading 2013-01-02..2013-01-03")
    assert (user.asset, user.partition) == ("events", "2013-01-02..2013-01-03")
    plain = next(r for r in records if r.getMessage() == "summing")
    assert (plain.asset, plain.partition) == ("total", None)
    done = [r for r in records if r.getMessage().startswith("step materialized")]
    assert sorted(r.asset for r in done) == ["events", "total"]
    # outside a run the fields exist too (a format string using them never breaks)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="lakehouse"):
        logging.getLogger("lakehouse").info("idle")
    assert (caplog.records[0].run_id, caplog.records[0].asset) == (None, None)


SCRIPT = """
import logging, sys
import polars as pl
import lakehouse as lh

@lh.asset
def a() -> pl.DataFrame:
    return pl.DataFrame({"x": [1, 2]})

@lh.asset
def b(a: pl.LazyFrame) -> pl.LazyFrame:
    logging.getLogger("lakehouse").warning("a warning inside an asset")
    return a.select(y=pl.col("x") + 1)

if sys.argv[2] == "configured":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s run=%(run_id)s asset=%(asset)s %(message)s")
lake = lh.Lakehouse(sys.argv[1], progress=False)
assert lake.materialize().ok
"""


def run_script(tmp_path: Path, mode: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(SCRIPT))
    return subprocess.run([sys.executable, str(script), str(tmp_path / f"lake-{mode}"), mode], capture_output=True,
                          text=True, timeout=300, cwd=tmp_path)


def test_quiet_by_default_and_structured_when_asked(tmp_path: Path) -> None:
    quiet = run_script(tmp_path, "quiet")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout == "" and quiet.stderr == ""
    loud = run_script(tmp_path, "configured")
    assert loud.returncode == 0, loud.stderr
    lines = loud.stderr.splitlines()
    assert any(line.startswith("INFO run=") and "asset=b step materialized" in line for line in lines), lines
    warning = next(line for line in lines if "a warning inside an asset" in line)
    assert warning.startswith("WARNING run=2") and "asset=b" in warning


# ------------------------------------------------------------------------- spans


_EXPORTER: list[Any] = []


@pytest.fixture()
def spans() -> Iterator[Any]:
    """An in-memory exporter on the SDK tracer provider (both installed once per process)."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    if not _EXPORTER:
        provider = trace.get_tracer_provider()
        if not isinstance(provider, TracerProvider):
            trace.set_tracer_provider(TracerProvider())
            provider = trace.get_tracer_provider()
        assert isinstance(provider, TracerProvider)
        exporter = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        _EXPORTER.append(exporter)
    _EXPORTER[0].clear()
    yield _EXPORTER[0]
    _EXPORTER[0].clear()


@pytest.mark.parametrize("executor", ["serial", "threads"])
def test_spans_run_step_and_phases(tmp_path: Path, spans: Any, executor: str) -> None:
    lake = lh.Lakehouse(tmp_path / "lake", assets=pipeline(), executor=executor, max_workers=2)
    result = lake.materialize(partitions="2013-01-01..2013-01-31")
    finished = spans.get_finished_spans()
    runs = [s for s in finished if s.name == "lakehouse.run"]
    assert len(runs) == 1
    run = runs[0]
    assert run.attributes["lakehouse.run_id"] == result.run_id
    assert run.parent is None
    steps = [s for s in finished if s.name == "lakehouse.step"]
    assert sorted(s.attributes["lakehouse.asset"] for s in steps) == ["events", "total"]
    for step in steps:
        assert step.parent is not None and step.parent.span_id == run.context.span_id
        assert step.context.trace_id == run.context.trace_id
        assert step.attributes["lakehouse.outcome"] == "materialized"
        phases = [s for s in finished if s.parent is not None and s.parent.span_id == step.context.span_id]
        assert [p.name for p in sorted(phases, key=lambda p: p.start_time)] == ["read", "compute", "checks",
                                                                              "commit"]
        assert all(p.end_time <= step.end_time for p in phases)
    events = next(s for s in steps if s.attributes["lakehouse.asset"] == "events")
    assert events.attributes["lakehouse.partitions"] == "2013-01-01..2013-01-31"
    assert events.attributes["lakehouse.rows"] == 31


def test_failed_step_span_has_error_status(tmp_path: Path, spans: Any) -> None:
    from opentelemetry.trace import StatusCode

    lake = lh.Lakehouse(tmp_path / "lake", assets=pipeline(fail=True))
    lake.materialize(partitions="2013-01-01", raise_on_error=False)
    finished = spans.get_finished_spans()
    bad = next(s for s in finished if s.name == "lakehouse.step" and s.attributes["lakehouse.asset"] == "total")
    assert bad.status.status_code == StatusCode.ERROR
    assert "total exploded" in (bad.status.description or "")
    phases = sorted((s for s in finished if s.parent is not None and s.parent.span_id == bad.context.span_id),
                    key=lambda s: s.start_time)
    assert [p.name for p in phases] == ["read", "compute"]  # it never got to checks and commit
    assert phases[-1].status.status_code == StatusCode.ERROR
    run = next(s for s in finished if s.name == "lakehouse.run")
    assert run.status.status_code == StatusCode.ERROR and run.attributes["lakehouse.outcome"] == "failed"


# ----------------------------------------------------------------------- metrics


def sample(name: str, labels: dict[str, str]) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_run_metrics(tmp_path: Path) -> None:
    before = {
        "runs_ok": sample("lakehouse_runs_total", {"outcome": "succeeded"}),
        "runs_bad": sample("lakehouse_runs_total", {"outcome": "failed"}),
        "events": sample("lakehouse_steps_total", {"asset": "events", "outcome": "materialized"}),
        "total_failed": sample("lakehouse_steps_total", {"asset": "total", "outcome": "failed"}),
        "rows": sample("lakehouse_rows_written_total", {"asset": "events"}),
        "seconds": sample("lakehouse_step_seconds_count", {"asset": "events"}),
    }
    lake = lh.Lakehouse(tmp_path / "lake", assets=pipeline())
    lake.materialize(partitions="2013-01-01..2013-01-10")
    assert sample("lakehouse_runs_total", {"outcome": "succeeded"}) == before["runs_ok"] + 1
    assert sample("lakehouse_steps_total", {"asset": "events", "outcome": "materialized"}) == before["events"] + 1
    assert sample("lakehouse_rows_written_total", {"asset": "events"}) == before["rows"] + 10
    assert sample("lakehouse_step_seconds_count", {"asset": "events"}) == before["seconds"] + 1
    assert sample("lakehouse_step_seconds_sum", {"asset": "events"}) > 0

    failing = lh.Lakehouse(tmp_path / "lake2", assets=pipeline(fail=True))
    failing.materialize(partitions="2013-01-01", raise_on_error=False)
    assert sample("lakehouse_runs_total", {"outcome": "failed"}) == before["runs_bad"] + 1
    assert sample("lakehouse_steps_total", {"asset": "total", "outcome": "failed"}) == before["total_failed"] + 1


def test_metrics_served_by_the_documented_one_liner(tmp_path: Path) -> None:
    import prometheus_client

    lake = lh.Lakehouse(tmp_path / "lake", assets=pipeline())
    lake.materialize(partitions="2013-01-05")
    server, thread = prometheus_client.start_http_server(0, addr="127.0.0.1")  # docs/lineage.md
    try:
        port = server.server_address[1]
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    assert 'lakehouse_steps_total{asset="events",outcome="materialized"}' in body
    assert "lakehouse_step_seconds_bucket" in body
    assert "lakehouse_runs_total" in body
