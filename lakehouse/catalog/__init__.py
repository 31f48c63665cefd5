"""The catalog: runs, materializations, partition state and code versions.

:class:`Catalog` is the seam; :class:`~lakehouse.catalog.sql.SqlCatalog` implements it
with SQLAlchemy Core for SQLite (embedded default) and PostgreSQL (teams). Only the
coordinator of a run writes it, in O(1) transactions per run: one when the run starts,
one when it ends.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class InputVersion:
    """The version of one upstream that a materialization consumed.

    ``seq`` is the upstream table's monotonic number (Delta version, Iceberg sequence
    number) and is what staleness compares; ``version`` is what time travel uses.
    """

    asset: str
    version: str | None
    seq: int


@dataclass(frozen=True)
class StateRow:
    """One maximal range of an asset's partitions written by one materialization.

    Unpartitioned assets have the single range ``[0, 1)``.
    """

    asset: str
    start: int
    end: int
    mat_id: int
    version: str | None
    seq: int
    code_version: str
    inputs: tuple[InputVersion, ...]
    materialized_at: float
    rows: int | None = None


@dataclass(frozen=True)
class MaterializationRecord:
    """One committed (or failed) write of one asset range, as the catalog stores it."""

    run_id: str
    asset: str
    start: int
    end: int
    partitions: str | None
    status: str  # materialized | failed | check_failed | adopted
    code_version: str
    version: str | None = None
    seq: int | None = None
    rows: int | None = None
    schema_fp: str | None = None
    inputs: tuple[InputVersion, ...] = ()
    started_at: float = 0.0
    seconds: float = 0.0
    error: str | None = None
    format: str | None = None
    table_uri: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


class Catalog(ABC):
    """Storage of everything lakehouse knows about past runs."""

    url: str

    @abstractmethod
    def state(self, assets: Iterable[str] | None = None) -> dict[str, list[StateRow]]:
        """Current partition state per asset (rows sorted by start)."""

    @abstractmethod
    def begin_run(
        self,
        run_id: str,
        started_at: float,
        info: Mapping[str, Any],
        *,
        leases: Sequence[tuple[str, int, int]] = (),
        ttl: float = 60.0,
    ) -> Mapping[tuple[str, int, int], tuple[str | None, list[StateRow], list[dict[str, Any]]]]:
        """Record that a run started and lease the ``(asset, start, end)`` ranges it will
        compute (one transaction). Returns per range ``(holder, state rows, committed
        markers)``: ``holder`` is ``None`` when the lease was taken, else the live run
        computing an overlapping range; the state rows and markers are what other runs
        wrote over the range (see ``execution.leases``)."""

    @abstractmethod
    def finish_run(
        self,
        run_id: str,
        status: str,
        finished_at: float,
        records: Sequence[MaterializationRecord],
        extra: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    ) -> list[int]:
        """Store the run's records and partition state and close the run (one transaction).

        Returns the ids given to the records, in order.
        """

    @abstractmethod
    def unfinished_runs(self) -> list[dict[str, Any]]:
        """Runs that started and never finished (crashed or still running)."""

    @abstractmethod
    def materializations(
        self, asset: str | None = None, *, version: str | None = None, run_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Materialization rows, newest first, optionally filtered."""

    @abstractmethod
    def runs(self, limit: int = 100) -> list[dict[str, Any]]:
        """Run rows, newest first."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""
