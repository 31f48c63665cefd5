"""Recovery: adopt table commits made by runs that died before recording them.

Every table commit carries its provenance (run id, step id, asset, partitions, code
version, inputs), so the catalog can be brought back in line with the tables without
recomputing anything: a committed but unrecorded version is *adopted*.
"""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Any

from ..catalog import InputVersion, MaterializationRecord

#: A run of another host counts as dead after this long without finishing.
STALE_RUN_SECONDS = 6 * 3600


def _alive(run: dict[str, Any]) -> bool:
    if run.get("host") == socket.gethostname() and run.get("pid"):
        try:
            os.kill(int(run["pid"]), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return time.time() - float(run.get("started_at") or 0) < STALE_RUN_SECONDS


def records_from_commits(lake: Any, key: str, run_id: str | None = None) -> list[MaterializationRecord]:
    """Materialization records rebuilt from the provenance in an asset's table commits."""
    from ..storage import get_format

    spec = lake.graph.specs[key]
    ref = lake.table_ref(spec)
    out = []
    for commit in get_format(ref.format).commits(ref):
        prov = commit["provenance"]
        if not prov.get("run_id") or (run_id is not None and prov["run_id"] != run_id):
            continue
        ranges = json.loads(prov.get("partitions") or "[[0, 1]]") or [[0, 1]]
        inputs = tuple(InputVersion(a, v, int(s)) for a, v, s in json.loads(prov.get("inputs") or "[]"))
        ts = commit.get("timestamp")
        at = float(ts) / 1000.0 if isinstance(ts, (int, float)) and ts > 1e11 else float(ts or time.time())
        for start, end in ranges:
            out.append(MaterializationRecord(
                run_id=prov["run_id"], asset=key, start=int(start), end=int(end),
                partitions=prov.get("partitions_text") or None, status="adopted",
                code_version=prov.get("code_version", ""), version=commit["version"], seq=int(commit["seq"]),
                rows=int(prov["rows"]) if prov.get("rows") else None, inputs=inputs, started_at=at,
                format=ref.format, table_uri=ref.uri, extra={"step_id": prov.get("step_id")},
            ))
    return out


def recover_unfinished(lake: Any) -> int:
    """Adopt the commits of dead unfinished runs; returns how many were adopted."""
    catalog = lake.catalog
    adopted = 0
    for run in catalog.unfinished_runs():
        if _alive(run):
            continue
        info = json.loads(run.get("info") or "{}")
        recorded = {(m["asset"], m["version"]) for m in catalog.materializations(run_id=run["run_id"])}
        records = []
        for key in info.get("assets", []):
            if key not in lake.graph.specs:
                continue
            for rec in records_from_commits(lake, key, run["run_id"]):
                if (rec.asset, rec.version) not in recorded:
                    records.append(rec)
        catalog.finish_run(run["run_id"], "crashed", time.time(), records)
        adopted += len(records)
    return adopted
