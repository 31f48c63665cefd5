"""Recovery: bring the catalog back in line with the tables, without recomputing.

Every table commit carries its provenance (run id, step id, asset, partitions, code
version, inputs, rows, timings), so:

* :func:`recover_unfinished` runs before every plan: a run that started and died (its
  process is gone, or it stopped renewing its heartbeat) is closed as ``crashed``; the
  commits it made but never recorded are *adopted* (recorded as they are, not recomputed);
  its stage folders are cleaned and its leases released. Two processes recovering the
  same run at once adopt its commits once (the run is claimed in the same transaction).
* :func:`rebuild_catalog` reconstructs runs, materializations, partition state and
  provenance from the tables' commit metadata alone, e.g. after the catalog was lost.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Iterable
from typing import Any

from ..catalog import InputVersion, MaterializationRecord
from .leases import lease_seconds

log = logging.getLogger("lakehouse")

#: A run of another host with no heartbeat for this many lease periods counts as dead.
MISSED_BEATS = 3


def _alive(run: dict[str, Any], ttl: float) -> bool:
    """Whether the process of an unfinished run may still be running."""
    if run.get("host") == socket.gethostname() and run.get("pid"):
        try:
            os.kill(int(run["pid"]), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        else:
            if int(run["pid"]) != os.getpid():
                return _recent(run, ttl)
            return True
    return _recent(run, ttl)


def _recent(run: dict[str, Any], ttl: float) -> bool:
    beat = run.get("heartbeat_at") or run.get("started_at") or 0
    return time.time() - float(beat) < MISSED_BEATS * ttl


def _float(value: Any, default: float) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def record_from_commit(key: str, ref: Any, commit: dict[str, Any]) -> list[MaterializationRecord]:
    """The materialization records one table commit stands for (one per range written)."""
    prov = commit["provenance"]
    ranges = json.loads(prov.get("partitions") or "[[0, 1]]") or [[0, 1]]
    inputs = tuple(InputVersion(a, v, int(s)) for a, v, s in json.loads(prov.get("inputs") or "[]"))
    ts = commit.get("timestamp")
    committed = (
        float(ts) / 1000.0
        if isinstance(ts, (int, float)) and ts > 1e11
        else _float(ts, time.time())
    )
    started = _float(prov.get("started_at"), committed)
    seconds = _float(prov.get("seconds"), max(0.0, committed - started))
    out = []
    for start, end in ranges:
        out.append(
            MaterializationRecord(
                run_id=prov["run_id"],
                asset=key,
                start=int(start),
                end=int(end),
                partitions=prov.get("partitions_text") or None,
                status="adopted",
                code_version=prov.get("code_version", ""),
                version=str(commit["version"]),
                seq=int(commit["seq"]),
                rows=int(prov["rows"]) if prov.get("rows") else None,
                schema_fp=prov.get("schema_fp") or None,
                inputs=inputs,
                started_at=started,
                seconds=seconds,
                format=ref.format,
                table_uri=ref.uri,
                extra={"step_id": prov.get("step_id"), "adopted_from": "table commit"},
            )
        )
    return out


def records_from_commits(
    lake: Any, key: str, run_id: str | None = None
) -> list[MaterializationRecord]:
    """Materialization records rebuilt from the provenance in an asset's table commits."""
    from ..storage import get_format

    spec = lake.graph.specs[key]
    ref = lake.table_ref(spec)
    out = []
    for commit in get_format(ref.format).commits(ref):
        prov = commit["provenance"]
        if not prov.get("run_id") or (run_id is not None and prov["run_id"] != run_id):
            continue
        if prov.get("asset") and prov["asset"] != key:
            continue
        out.extend(record_from_commit(key, ref, commit))
    return out


def clean_stages(lake: Any, keys: Iterable[str], dead_run: str) -> int:
    """Delete the stage folders a dead run left in the tables of ``keys``."""
    from ..storage import get_format

    cleaned = 0
    for key in keys:
        if key not in lake.graph.specs:
            continue
        ref = lake.table_ref(lake.graph.specs[key])
        fmt = get_format(ref.format)
        clean = getattr(fmt, "clean_stages", None)
        if clean is None:
            continue
        try:
            cleaned += len(clean(ref, lambda sid: not sid.startswith(dead_run + "-")))
        except Exception as exc:
            log.warning("could not clean the stages of run %s in %s: %s", dead_run, key, exc)
    return cleaned


def recover_unfinished(lake: Any) -> int:
    """Close dead unfinished runs, adopting their unrecorded commits; returns how many
    materializations were adopted."""
    catalog = lake.catalog
    ttl = lease_seconds()
    adopted = 0
    for run in catalog.unfinished_runs():
        if _alive(run, ttl):
            continue
        run_id = run["run_id"]
        try:
            info = json.loads(run.get("info") or "{}")
        except ValueError:
            info = {}
        keys = [k for k in info.get("assets", []) if k in lake.graph.specs]
        recorded = {
            (m["asset"], str(m["version"]))
            for m in catalog.materializations(run_id=run_id)
            if m["status"] in ("materialized", "adopted")
        }
        records = []
        for key in keys:
            for rec in records_from_commits(lake, key, run_id):
                if (rec.asset, rec.version) not in recorded:
                    records.append(rec)
        ids = catalog.finish_run(run_id, "crashed", time.time(), records, only_if_running=True)
        if records and ids:
            log.warning(
                "run %s died; adopted %d committed write(s) it had not recorded",
                run_id,
                len(records),
            )
            adopted += len(records)
        clean_stages(lake, keys, run_id)
        if hasattr(catalog, "release_leases"):
            catalog.release_leases(run_id)
    return adopted


def rebuild_catalog(lake: Any) -> dict[str, int]:
    """Reconstruct runs, materializations, partition state and provenance from the
    commit metadata of every asset's table, replacing what the catalog held about them.

    Returns ``{"runs": n, "materializations": m}``.
    """
    from ..graph import AssetGraph  # noqa: F401 - the graph validates before anything is erased

    catalog = lake.catalog
    graph = lake.graph
    by_run: dict[str, list[MaterializationRecord]] = {}
    for key in graph.order:
        spec = graph.specs[key]
        if spec.kind == "source" and spec.fn is None:
            continue
        for rec in records_from_commits(lake, key):
            by_run.setdefault(rec.run_id, []).append(rec)
    catalog.forget(list(graph.specs))
    count = 0
    for run_id, recs in sorted(by_run.items(), key=lambda kv: min(r.started_at for r in kv[1])):
        recs = [_rebuilt(r) for r in sorted(recs, key=lambda r: (r.asset, r.seq or 0))]
        finished = max(r.started_at + r.seconds for r in recs)
        catalog.finish_run(run_id, "rebuilt", finished, recs)
        count += len(recs)
    return {"runs": len(by_run), "materializations": count}


def _rebuilt(rec: MaterializationRecord) -> MaterializationRecord:
    from dataclasses import replace

    return replace(
        rec, status="materialized", extra={**dict(rec.extra), "adopted_from": "rebuild_catalog"}
    )
