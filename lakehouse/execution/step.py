"""One step: compute one asset range and commit it to its table (runs on a worker).

A step reads its inputs at the exact versions the coordinator chose, calls the asset
function, validates the rows against the partitions being written, runs the checks,
and commits the write with its provenance. It returns a small :class:`StepResult` and
never writes the catalog.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import time
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..assets import AssetSpec, Context, PartitionContext, TableRef, WrittenFiles
from ..catalog import InputVersion
from ..errors import LakehouseError, PartitionError
from ..partitions import Predicate, RangeSet

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

log = logging.getLogger("lakehouse")

#: Environment variable naming a fault point at which the process kills itself (tests).
FAULT_ENV = "LAKEHOUSE_FAULT"


def fault(point: str, asset: str) -> None:
    """Kill this process with SIGKILL when ``LAKEHOUSE_FAULT`` names ``point`` (test hook).

    The value is ``point`` or ``point:asset``. Points: ``before_write``, ``after_files``
    (data written, not committed) and ``after_commit`` (table committed, catalog not yet)
    in :mod:`~lakehouse.execution.publish`; ``during_catalog`` inside ``finish_run``'s
    transaction (the coordinator passes it as the hook).
    """
    wanted = os.environ.get(FAULT_ENV)
    if not wanted:
        return
    name, _, only = wanted.partition(":")
    if name == point and (not only or only == asset):
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True)
class StepInput:
    """One input of a step: where to read it and which partitions."""

    param: str
    ref: TableRef
    predicate: Predicate | None
    annotation: str
    version: InputVersion
    read: Any = None  # execution.sources.SourceRead: a source or a since_last_run input


@dataclass(frozen=True)
class Step:
    """Everything a worker needs to compute one asset range (picklable)."""

    step_id: str
    run_id: str
    spec: AssetSpec
    ranges: RangeSet
    table: TableRef
    inputs: tuple[StepInput, ...]
    code_version: str
    reason: str
    partitions_text: str | None = None
    deps: tuple[InputVersion, ...] = ()
    checks: tuple[
        Any, ...
    ] = ()  # the asset's checks (lakehouse.checks.Check), run before the commit
    column_lineage: bool = False  # compute column lineage (the code version has none stored yet)
    trace: Mapping[str, str] = field(default_factory=dict)  # W3C trace context of the run's span

    @property
    def asset(self) -> str:
        return self.spec.key

    @property
    def input_versions(self) -> tuple[InputVersion, ...]:
        return tuple(i.version for i in self.inputs) + self.deps


@dataclass(frozen=True)
class StepResult:
    """The small result a worker hands back to the coordinator."""

    step_id: str
    asset: str
    start: int
    end: int
    status: str  # materialized | failed | check_failed
    started_at: float
    seconds: float
    version: str | None = None
    seq: int | None = None
    rows: int | None = None
    schema_fp: str | None = None
    error: str | None = None
    error_type: str | None = None
    retryable: bool = False
    worker: str = ""
    checks: tuple[dict[str, Any], ...] = ()
    column_lineage: Any = None  # JSON of engines.column_lineage.ColumnLineage, when asked for
    extra: Mapping[str, Any] = field(default_factory=dict)
    output_schema: tuple[tuple[str, str], ...] = ()  # (name, Arrow type) of the written data
    bytes: int | None = (
        None  # bytes of the data files the commit added, when the format reports them
    )
    files: WrittenFiles | None = None  # every data file of ``version`` (WriteResult.files)


def provenance(step: Step) -> dict[str, str]:
    """The provenance written into the table commit (strings only)."""
    return {
        "run_id": step.run_id,
        "step_id": step.step_id,
        "asset": step.asset,
        "code_version": step.code_version,
        "partitions": json.dumps([list(r) for r in step.ranges.ranges]),
        "partitions_text": step.partitions_text or "",
        "inputs": json.dumps([[i.asset, i.version, i.seq] for i in step.input_versions]),
    }


def partition_context(spec: AssetSpec, ranges: RangeSet) -> PartitionContext | None:
    """The ``ctx.partition`` of a step."""
    defn = spec.partitions
    if defn is None:
        return None
    first, last = ranges.ranges[0][0], ranges.ranges[-1][1] - 1
    keys = (
        tuple(defn.key(i) for i in ranges.indices())
        if len(ranges) <= 10_000
        else (defn.key(first), defn.key(last))
    )
    start = end = None
    if hasattr(defn, "window"):
        start = defn.window(first)[0]
        end = defn.window(last)[1]
    return PartitionContext(defn, ranges, keys, start, end)


def run_step(step: Step) -> StepResult:
    """Compute and commit one step; errors become a failed result, never an exception."""
    from .telemetry import StepTelemetry

    tel = StepTelemetry(step)  # log context, spans (read/compute/checks/commit), column lineage
    return tel.end(_run_step(step, tel))


def _run_step(step: Step, tel: Any) -> StepResult:
    started = time.time()
    t0 = time.perf_counter()
    worker = f"{socket.gethostname()}:{os.getpid()}"
    spec = step.spec
    rng = step.ranges
    start, end = (rng.ranges[0][0], rng.ranges[-1][1]) if rng else (0, 1)
    try:
        from ..engines import InputSource, get_engine, to_arrow
        from ..storage import get_format

        fmt = get_format(step.table.format)
        engine = get_engine(spec.engine)
        try:
            ctx = Context(
                asset=step.asset,
                run_id=step.run_id,
                partition=partition_context(spec, rng),
                log=logging.LoggerAdapter(
                    log,
                    {"run_id": step.run_id, "asset": step.asset, "partition": step.partitions_text},
                ),
            )
            tel.phase("read")
            kwargs: dict[str, Any] = {}
            for inp in step.inputs:
                if inp.read is not None:  # sources and incremental reads (execution/sources.py)
                    source = inp.read.input_source(inp)
                    kwargs[inp.param] = tel.input(inp, engine.prepare(source, inp.annotation))
                    continue
                in_fmt = get_format(inp.ref.format)
                source = InputSource(
                    inp.param,
                    inp.ref,
                    inp.predicate,
                    dataset=_dataset_factory(in_fmt, inp.ref),
                    arrow=None,
                    table=_native_factory(in_fmt, inp.ref),
                )
                kwargs[inp.param] = tel.input(inp, engine.prepare(source, inp.annotation))
            if spec.context_param:
                kwargs[spec.context_param] = ctx
            tel.phase("compute")
            with tel.capture():
                value = engine.call(spec.fn, kwargs, ctx, step.asset)
            # column-lineage hook: the LazyFrame plan / relation SQL, before it is consumed
            tel.analyse(value, engine)
            data = to_arrow(value, step.asset)
            tel.output(data)
            write_predicate = None
            pred = None
            if spec.partitions is not None:
                from ..partitions import predicate, predicate_sql

                pred = predicate(spec.partitions, rng, spec.partition_column)
                if (
                    getattr(fmt, "rejects_rows_outside_predicate", False)
                    and spec.write.kind == "overwrite"
                    and not step.checks
                    and step.table.version is not None
                ):
                    # the format's own overwrite of an existing table rejects rows outside the
                    # predicate before committing (and names them): only the columns are
                    # checked here. (A new table is validated first, so a rejected first
                    # write leaves no folder behind.)
                    _has_partition_columns(data, step)
                else:
                    data = _validated(data, pred, step)
                write_predicate = predicate_sql(pred)
            tel.phase("checks")
            # checks hook: write-audit-publish (stage, run the checks, ONE commit if they pass)
            from .publish import write_audit_publish

            done = write_audit_publish(
                step,
                fmt,
                data,
                predicate=write_predicate,
                where=pred,
                ctx=ctx,
                provenance=provenance(step),
                started=started,
                t0=t0,
                fault=fault,
            )
        finally:
            engine.close()
        checks = tuple(o.row(start, end) for o in done.outcomes)
        result = done.result
        tel.written(result)
        if result is None:
            from .audit import blocking_error

            err = blocking_error(done.outcomes, step.asset, step.partitions_text)
            return StepResult(
                step.step_id,
                step.asset,
                start,
                end,
                "check_failed",
                started,
                time.perf_counter() - t0,
                rows=done.rows,
                error=str(err),
                error_type="CheckFailedError",
                worker=worker,
                checks=checks,
            )
        return StepResult(
            step.step_id,
            step.asset,
            start,
            end,
            "materialized",
            started,
            done.seconds,
            version=result.version,
            seq=result.seq,
            rows=result.rows,
            schema_fp=result.schema_fp,
            worker=worker,
            checks=checks,
            files=result.files,
        )
    except Exception as exc:
        return _failed(step, exc, started, t0, start, end, worker)


def _failed(
    step: Step, exc: BaseException, started: float, t0: float, start: int, end: int, worker: str
) -> StepResult:
    if isinstance(exc, LakehouseError):
        text = str(exc)
    else:
        tb = traceback.extract_tb(exc.__traceback__)
        user = [
            f
            for f in tb
            if "lakehouse" not in f.filename.replace("\\", "/").split("/site-packages/")[-1]
            or "/tests/" in f.filename
        ]
        where = f" (at {user[-1].filename}:{user[-1].lineno})" if user else ""
        text = f"{type(exc).__name__}: {exc}{where}"
    return StepResult(
        step.step_id,
        step.asset,
        start,
        end,
        "failed",
        started,
        time.perf_counter() - t0,
        error=text,
        error_type=type(exc).__name__,
        retryable=retryable(exc),
        worker=worker,
    )


def retryable(exc: BaseException) -> bool:
    """Whether a failed step may be retried: an error marked ``retryable`` (commit
    conflicts), or a timeout or dropped connection anywhere in its cause chain."""
    import re

    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            break
        if getattr(seen, "retryable", False) or isinstance(seen, (TimeoutError, ConnectionError)):
            return True
        if isinstance(seen, OSError) and re.search(
            r"timed? ?out|connection (reset|refused|closed)", str(seen), re.I
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _dataset_factory(fmt: Any, ref: TableRef) -> Any:
    def make() -> Any:
        return fmt.dataset(ref)

    return make


def _native_factory(fmt: Any, ref: TableRef) -> Any:
    """The format's own table object for lazy engine scans (Iceberg), or ``None``."""
    native = getattr(fmt, "native", None)
    if native is None:
        return None

    def make() -> Any:
        return native(ref)

    return make


def _has_partition_columns(data: pa.Table | pa.RecordBatchReader, step: Step) -> None:
    missing = [c for c in step.spec.partition_column if data.schema.get_field_index(c) < 0]
    if missing:
        raise PartitionError(
            f"the output has no partition column {missing[0]!r}",
            asset=step.asset,
            partition=step.partitions_text,
            hint=f"return a column named {missing[0]!r} holding the partition value",
        )


def _validated(data: pa.Table | pa.RecordBatchReader, pred: Predicate, step: Step) -> Any:
    """``data`` with every row checked to lie inside the partitions being written."""
    import pyarrow as pa

    from ..engines.polars import rows_outside

    cols = list(step.spec.partition_column)
    _has_partition_columns(data, step)

    def check(table: pa.Table) -> None:
        bad, nulls, value = rows_outside(table, pred, cols)
        if nulls:
            raise PartitionError(
                f"the output has null values in partition column(s) {cols}",
                asset=step.asset,
                partition=step.partitions_text,
                hint="fill the partition column of every row",
            )
        if bad:
            raise PartitionError(
                f"the output has {bad} row(s) outside the partitions being written "
                f"({step.partitions_text}); first offending value: {value}; nothing was published",
                asset=step.asset,
                partition=step.partitions_text,
                hint="filter the output to ctx.partition.start <= column < ctx.partition.end",
            )

    if isinstance(data, pa.Table):
        check(data)
        return data

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in data:
            check(pa.Table.from_batches([batch]))
            yield batch

    return pa.RecordBatchReader.from_batches(data.schema, batches())
