"""The result of one ``materialize()`` (returned by the front door, built by the coordinator)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import _html

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl

RESULT_COLUMNS = ("asset", "partitions", "status", "reason", "rows", "version", "seconds", "error")


def fresh_row(asset: str) -> dict[str, Any]:
    """The row of a selected asset that had nothing stale (not run)."""
    return {
        "asset": asset,
        "partitions": None,
        "status": "skipped",
        "reason": "fresh",
        "rows": None,
        "version": None,
        "seconds": 0.0,
        "error": None,
    }


@dataclass
class RunResult:
    """What one ``materialize()`` did.

    Attributes:
        run_id: the run's id (also in every table commit it made).
        ok: True when no asset failed.
        rows: one dict per selected asset (and per partition range run).
        seconds: wall time of the whole call.
    """

    run_id: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not any(
            r["status"] in ("failed", "upstream_failed", "check_failed") for r in self.rows
        )

    @property
    def assets(self) -> pl.DataFrame:
        """``asset, partitions, status, reason, rows, version, seconds, error`` per asset/range."""
        import polars as pl

        schema = {
            "asset": pl.String,
            "partitions": pl.String,
            "status": pl.String,
            "reason": pl.String,
            "rows": pl.Int64,
            "version": pl.String,
            "seconds": pl.Float64,
            "error": pl.String,
        }
        return pl.DataFrame(
            [{k: r.get(k) for k in RESULT_COLUMNS} for r in self.rows], schema=schema
        )

    @property
    def failures(self) -> dict[str, str]:
        return {
            r["asset"]: r["error"] or r["status"]
            for r in self.rows
            if r["status"] in ("failed", "upstream_failed", "check_failed")
        }

    @property
    def materialized(self) -> list[str]:
        return [r["asset"] for r in self.rows if r["status"] == "materialized"]

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for r in self.rows:
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        rows = sum(r["rows"] or 0 for r in self.rows if r["status"] == "materialized")
        parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        return (
            f"run {self.run_id}: {parts or 'nothing to do'}; {rows:,} rows in {self.seconds:.2f} s"
        )

    def __repr__(self) -> str:
        return f"RunResult({self.summary()})"

    def _repr_html_(self) -> str:
        body = _html.table(RESULT_COLUMNS, ([r.get(k) for k in RESULT_COLUMNS] for r in self.rows))
        return _html.view(self.summary(), body)
