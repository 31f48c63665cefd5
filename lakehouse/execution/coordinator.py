"""The coordinator: turn a plan into steps, run them, and record the run.

It is the only writer of the catalog, in two transactions per run: ``begin_run`` and
``finish_run`` (which stores every materialization, the partition state and extra
records such as check results at once).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from ..catalog import InputVersion, MaterializationRecord, StateRow
from ..checks import checks_of
from ..partitions import RangeSet, predicate
from ..plan import UNIT, Plan, describe_ranges, map_up
from ..sources import uses_sources
from .leases import Leases, lease_seconds, span
from .local import SerialExecutor, Task, ThreadExecutor, schedule
from .observe import RunObserver
from .result import RunResult, fresh_row
from .step import Step, StepInput, StepResult, fault

if TYPE_CHECKING:  # pragma: no cover
    from ..assets import WrittenFiles
    from . import Executor


def make_executor(lake: Any) -> tuple[Executor, bool]:
    """The lakehouse's executor, and whether this run owns (and must close) it."""
    obj = getattr(lake, "_executor_obj", None)
    if obj is not None:
        return obj, False
    name = lake.settings.executor
    if name == "threads":
        return ThreadExecutor(lake.settings.max_workers), True
    if name == "dask":
        from .dask import DaskExecutor

        return DaskExecutor(), True
    return SerialExecutor(), True


def latest(rows: Sequence[StateRow]) -> tuple[str | None, int]:
    """``(version, seq)`` of the newest write among an asset's state rows."""
    best = max(rows, key=lambda r: r.seq)
    return best.version, best.seq


def tasks_for(plan: Plan, graph: Any) -> list[Task]:
    """One task per contiguous range of each planned asset (chunked by max_partitions_per_run)."""
    in_plan = set(plan.assets())
    tasks: list[Task] = []
    for key in plan.assets():
        spec = graph.specs[key]
        waits = frozenset(p for p in graph.parents[key] if p in in_plan)
        items = [i for i in plan.items if i.asset == key]
        if spec.partitions is None:
            tasks.append(Task(key, UNIT, items[0].reason, waits, retries=spec.retries))
            continue
        whole = plan.ranges(key)
        for start, end in whole.ranges:
            run = RangeSet.of(start, end)
            chunks = (
                run.split(spec.max_partitions_per_run) if spec.max_partitions_per_run else [run]
            )
            for chunk in chunks:
                reason = next((i.reason for i in items if i.ranges & chunk), items[0].reason)
                tasks.append(Task(key, chunk, reason, waits, retries=spec.retries))
    return tasks


def run_plan(
    lake: Any,
    plan: Plan,
    state: Mapping[str, Sequence[StateRow]],
    code_versions: Mapping[str, str],
    run_id: str,
    selected: Sequence[str],
    *,
    progress: bool | None = None,
) -> Any:
    """Run ``plan`` on the lakehouse's executor and record it; returns a ``RunResult``."""
    graph = lake.graph
    catalog = lake.catalog
    started = time.time()
    tasks = tasks_for(plan, graph)
    ttl = lease_seconds()
    # one transaction records the run and leases every range it will compute
    taken = catalog.begin_run(
        run_id,
        started,
        {"assets": plan.assets(), "steps": len(tasks)},
        leases=[(t.asset, *span(t.ranges)) for t in tasks],
        ttl=ttl,
    )
    current: dict[str, tuple[str | None, int]] = {
        k: latest(rows) for k, rows in state.items() if rows
    }
    # every data file of each (asset, version) this run replaced whole, as its write
    # reported them: steps downstream read those files without opening the table
    files: dict[tuple[str, str | None], WrittenFiles] = {}
    records: list[MaterializationRecord] = []
    extra: dict[str, list[dict[str, Any]]] = {"checks": [], "code_versions": []}
    rows_out: list[dict[str, Any]] = []
    executor, owned = make_executor(lake)
    bar = _progress(progress, len(tasks), lake)
    counter = [0]
    reads = None  # sources and since_last_run inputs
    if uses_sources(graph):
        from .sources import SourceReads

        reads = SourceReads(lake, state, current, run_id)
    observer = RunObserver(
        lake, run_id, plan.assets(), len(tasks)
    )  # logs, spans, metrics, OpenLineage
    leases = Leases(catalog, run_id, state, ttl, taken=taken)  # no partition computed twice at once

    def make_step(task: Task) -> Step | StepResult:
        spec = graph.specs[task.asset]
        counter[0] += 1
        step_id = f"{run_id}-{counter[0]}"

        def unknown_input(error: str) -> StepResult:
            start, end = span(task.ranges)
            return StepResult(
                step_id,
                task.asset,
                start,
                end,
                "failed",
                time.time(),
                0.0,
                error=error,
                error_type="UnknownAssetError",
            )

        inputs: list[StepInput] = []
        for inp, up in graph.inputs[task.asset]:
            up_spec = graph.specs[up]
            if reads is not None and reads.wants(inp, up):
                got = reads.step_input(task.asset, task.ranges, inp, up)
                if isinstance(got, str):
                    return unknown_input(got)
                inputs.append(got)
                continue
            if up not in current:
                return unknown_input(
                    f"upstream {up!r} has no table yet; materialize it first "
                    f"(select '+{task.asset}')"
                )
            version, seq = current[up]
            pred = None
            if up_spec.partitions is not None:
                needed = map_up(graph, task.asset, up, task.ranges)
                if needed != up_spec.partitions.all(None):
                    pred = predicate(up_spec.partitions, needed, up_spec.partition_column)
            ref = lake.table_ref(up_spec, version)
            written = files.get((up, version))
            if written is not None:
                ref = dataclasses.replace(ref, files=written)  # read without the log
            inputs.append(
                StepInput(
                    inp.param,
                    ref,
                    pred,
                    inp.annotation,
                    InputVersion(up, version, seq),
                )
            )
        deps = tuple(
            InputVersion(d, *current[d])
            for d in graph.parents[task.asset]
            if d in current and all(d != i.version.asset for i in inputs)
        ) + (reads.deps(task.asset, inputs) if reads is not None else ())
        text = describe_ranges(spec.partitions, task.ranges)
        known = current.get(task.asset)
        target = lake.table_ref(spec, known[0] if known else None)
        return Step(
            step_id,
            run_id,
            spec,
            task.ranges,
            target,
            tuple(inputs),
            code_versions[task.asset],
            task.reason,
            text,
            deps,
            checks=checks_of(spec),
            column_lineage=observer.wants_lineage(task.asset, code_versions[task.asset]),
            trace=observer.carrier(),
        )

    def submit(task: Task) -> Future[StepResult]:
        step = make_step(task)
        if isinstance(step, StepResult):
            fut: Future[StepResult] = Future()
            fut.set_result(step)
            return fut
        task_steps[id(task)] = step
        observer.step_started(step)
        return leases.submit(step, executor.submit)

    task_steps: dict[int, Step] = {}

    def on_result(task: Task, res: StepResult) -> None:
        spec = graph.specs[task.asset]
        step = task_steps.get(id(task))
        text = describe_ranges(spec.partitions, task.ranges)
        if res.extra.get("done_by_other_run"):  # written by a concurrent run while this one waited
            if res.seq is not None and (
                task.asset not in current or res.seq >= current[task.asset][1]
            ):
                current[task.asset] = (res.version, res.seq)
            rows_out.append(
                {
                    "asset": task.asset,
                    "partitions": text,
                    "status": "skipped",
                    "reason": "materialized by a concurrent run",
                    "rows": None,
                    "version": res.version,
                    "seconds": 0.0,
                    "error": None,
                }
            )
            if bar is not None:
                bar.update(1)
            return
        if res.status == "materialized" and res.seq is not None:
            prev = current.get(task.asset)
            if prev is None or res.seq >= prev[1]:
                current[task.asset] = (res.version, res.seq)
                if res.files is not None:
                    files[(task.asset, res.version)] = res.files
        records.append(
            MaterializationRecord(
                run_id=run_id,
                asset=task.asset,
                start=res.start,
                end=res.end,
                partitions=text,
                status=res.status,
                code_version=code_versions[task.asset],
                version=res.version,
                seq=res.seq,
                rows=res.rows,
                schema_fp=res.schema_fp,
                inputs=step.input_versions if step else (),
                started_at=res.started_at,
                seconds=res.seconds,
                error=res.error,
                format=lake.format_of(spec),
                table_uri=lake.table_ref(spec).uri,
                extra={"worker": res.worker, **dict(res.extra), **observer.record_extra(step)},
            )
        )
        observer.step_finished(step, res)
        for chk in res.checks:
            extra["checks"].append(
                {
                    "run_id": run_id,
                    "asset": task.asset,
                    "partitions": text,
                    "checked_at": res.started_at + res.seconds,
                    **chk,
                }
            )
        if res.column_lineage is not None:
            extra["code_versions"].append(
                {
                    "asset": task.asset,
                    "code_version": code_versions[task.asset],
                    "recorded_at": time.time(),
                    "column_lineage": res.column_lineage,
                }
            )
        rows_out.append(
            {
                "asset": task.asset,
                "partitions": text,
                "status": res.status,
                "reason": task.reason,
                "rows": res.rows,
                "version": res.version,
                "seconds": round(res.seconds, 4),
                "error": _located(res, text),
            }
        )
        if bar is not None:
            bar.update(1)

    def on_skip(task: Task, cause: str) -> None:
        spec = graph.specs[task.asset]
        text = describe_ranges(spec.partitions, task.ranges)
        rows_out.append(
            {
                "asset": task.asset,
                "partitions": text,
                "status": "upstream_failed",
                "reason": task.reason,
                "rows": None,
                "version": None,
                "seconds": 0.0,
                "error": f"upstream {cause!r} failed",
            }
        )
        if bar is not None:
            bar.update(1)

    try:
        schedule(tasks, submit, on_result, on_skip, max_parallel=executor.max_parallel)
    finally:
        leases.close()
        observer.close()
        if owned:
            executor.close()
        if bar is not None:
            bar.close()
    failed = any(r["status"] not in ("materialized", "skipped") for r in rows_out)
    extra["code_versions"] = _dedupe_code_versions(extra["code_versions"], catalog)
    catalog.finish_run(
        run_id,
        "failed" if failed else "succeeded",
        time.time(),
        records,
        extra,
        hook=_during_catalog,
    )
    in_plan = set(plan.assets())
    ordered: list[dict[str, Any]] = []
    for key in selected:
        if key in in_plan:
            ordered.extend(r for r in rows_out if r["asset"] == key)
        else:
            ordered.append(fresh_row(key))
    return RunResult(run_id, ordered)


def _located(res: StepResult, partitions: str | None) -> str | None:
    """A step's error as ``partition P, worker W: message`` (the row already names the asset)."""
    if not res.error:
        return res.error
    text = res.error
    for head in (f"asset '{res.asset}', partition {partitions}: ", f"asset '{res.asset}': "):
        if text.startswith(head):
            text = text[len(head) :]
            break
    parts = [f"partition {partitions}"] if partitions else []
    if res.worker:
        parts.append(f"worker {res.worker}")
    return ", ".join(parts) + ": " + text if parts else text


def _during_catalog(asset: str) -> None:
    """The ``during_catalog`` fault point, inside ``finish_run``'s transaction."""
    fault("during_catalog", asset)


def _dedupe_code_versions(rows: list[dict[str, Any]], catalog: Any) -> list[dict[str, Any]]:
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        seen[(r["asset"], r["code_version"])] = r
    if not seen:
        return []
    known = {(r["asset"], r["code_version"]) for r in catalog.rows("code_versions")}
    return [r for k, r in seen.items() if k not in known]


def _progress(progress: bool | None, total: int, lake: Any) -> Any:
    """A tqdm bar: ``True`` always, ``False`` never; by default (``None``, and the
    ``progress`` setting unset) on a terminal or in Jupyter only, and only once the run has
    lasted about a second, so quick runs and logs stay silent. ``TQDM_DISABLE=1`` wins."""
    if progress is None:
        progress = lake.settings.progress
    asked = progress is True
    if progress is None:
        progress = _in_jupyter() or _isatty(sys.stderr)
    if not progress:
        return None
    try:
        if _in_jupyter() and importlib.util.find_spec("ipywidgets") is not None:
            from tqdm.notebook import tqdm
        else:
            from tqdm.std import tqdm  # type: ignore[assignment]
    except ImportError:
        return None
    return tqdm(
        total=total, desc="materialize", unit="step", delay=0.0 if asked else 1.0, leave=asked
    )


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _in_jupyter() -> bool:
    """True inside a Jupyter kernel (checked without importing IPython)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:
        return False
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"
