"""Write-audit-publish for one step (layer 4).

The output of an asset is written where readers cannot see it, audited by its checks,
and published in ONE table commit only when no blocking check failed:

* formats that can stage (Delta: a stage table inside the table's folder) are audited
  on the staged files, lazily, so the output never has to fit in memory;
* other formats (Iceberg) are audited on the output in memory before their write, which
  commits everything in one catalog commit.

The commit carries the step's provenance plus the row count and timings, so the catalog
can adopt a commit whose run died before recording it, or be rebuilt from the tables.
The fault points (``LAKEHOUSE_FAULT``) are placed here: ``before_write``,
``after_files`` (data written, not committed) and ``after_commit``.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import telemetry
from .audit import Outcome, run_checks

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

    from ..assets import Context
    from ..partitions import Predicate
    from ..storage import WriteResult
    from .step import Step


@dataclass(frozen=True)
class Published:
    """What :func:`write_audit_publish` did: the commit (``None`` when a blocking check
    failed and nothing was published), the check outcomes and the timings recorded."""

    result: WriteResult | None
    outcomes: Sequence[Outcome]
    rows: int | None
    seconds: float


def _lazy(fmt: Any, ref: Any) -> Any:
    import polars as pl

    return pl.scan_pyarrow_dataset(fmt.dataset(ref))


def _timed(
    prov: dict[str, str], rows: int | None, schema_fp: str | None, started: float, t0: float
) -> float:
    seconds = time.perf_counter() - t0
    prov["started_at"] = repr(started)
    prov["seconds"] = repr(seconds)
    if rows is not None:
        prov["rows"] = str(rows)
    if schema_fp:
        prov["schema_fp"] = schema_fp
    return seconds


def write_audit_publish(
    step: Step,
    fmt: Any,
    data: pa.Table | pa.RecordBatchReader,
    *,
    predicate: str | None,
    where: Predicate | None,
    ctx: Context | None,
    provenance: Mapping[str, str],
    started: float,
    t0: float,
    fault: Callable[[str, str], None],
) -> Published:
    """Stage (or hold) ``data``, run the step's checks on it, and publish it in one commit."""
    import pyarrow as pa

    spec = step.spec
    checks = tuple(getattr(step, "checks", ()) or ())
    prov = dict(provenance)
    asset = step.asset
    fault("before_write", asset)
    stage = getattr(fmt, "stage", None)
    # Staging costs a second commit; it is only needed to audit data before it is
    # published. Without checks the format's own write is already atomic: nothing is
    # visible before its single commit, and files of a crashed write stay unreferenced.
    # (The test-only ``after_files`` fault point needs a moment between the files and the
    # commit, which only the staged path has, so it forces staging.)
    if stage is not None and (checks or _fault_named("after_files", asset)):
        staged = stage(
            step.table,
            data,
            mode=spec.write,
            predicate=predicate,
            where=where,
            partition_by=list(spec.partition_column),
            schema_mode=spec.schema,
            stage_id=step.step_id,
        )
        try:
            outcomes = run_checks(checks, _lazy(fmt, staged.data), ctx) if checks else []
        except BaseException:
            fmt.discard(staged)
            raise
        if any(o.blocks for o in outcomes):
            fmt.discard(staged)
            return Published(None, outcomes, staged.rows, time.perf_counter() - t0)
        fault("after_files", asset)
        telemetry.phase("commit")
        seconds = _timed(prov, staged.rows, staged.schema_fp, started, t0)
        try:
            result = fmt.publish(staged, prov)
        except Exception:
            # the commit may or may not have happened: keep the files only if it did
            fmt.clean_stages(step.table, lambda sid: sid != step.step_id)
            raise
        fault("after_commit", asset)
        return Published(result, outcomes, result.rows, seconds)

    # no staging: audit in memory (only when there are checks), then one write that
    # commits everything at once; without checks the output streams into the writer
    outcomes = []
    if checks:
        import polars as pl

        table = data if isinstance(data, pa.Table) else data.read_all()
        frame = pl.from_arrow(table)
        outcomes = run_checks(checks, frame.lazy(), ctx)  # type: ignore[union-attr]
        if any(o.blocks for o in outcomes):
            return Published(None, outcomes, table.num_rows, time.perf_counter() - t0)
        data = table
    from ..storage import schema_fingerprint

    telemetry.phase("commit")
    rows = data.num_rows if isinstance(data, pa.Table) else None
    seconds = _timed(prov, rows, schema_fingerprint(data.schema), started, t0)
    kwargs: dict[str, Any] = {}
    if where is not None and _accepts(fmt.write, "where"):
        kwargs["where"] = where
    if _accepts(fmt.write, "before_commit"):
        kwargs["before_commit"] = lambda: fault("after_files", asset)
    else:
        fault("after_files", asset)
    result = fmt.write(
        step.table,
        data,
        mode=spec.write,
        predicate=predicate,
        partition_by=list(spec.partition_column),
        schema_mode=spec.schema,
        provenance=prov,
        **kwargs,
    )
    fault("after_commit", asset)
    return Published(result, outcomes, result.rows, seconds)


def _fault_named(point: str, asset: str) -> bool:
    import os

    from .step import FAULT_ENV

    name, _, only = os.environ.get(FAULT_ENV, "").partition(":")
    return name == point and (not only or only == asset)


def _accepts(fn: Callable[..., Any], name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind == p.VAR_KEYWORD for p in params.values())
