"""Leases: no asset partition is computed by two runs at the same time (layer 4).

The coordinator leases the asset range of every step of a run in the catalog
(``lh_leases``) in the transaction that begins the run; a range another live run is
computing then is leased again right before its step runs (waiting while it is held). A
lease expires ``ttl`` seconds after its last renewal; a heartbeat thread renews every
lease of the run (and the run's ``heartbeat_at``) while it lives, so the lease of a run
that died is taken over after at most ``ttl`` seconds (at once when recovery sees that its
process is gone).

A step that had to wait for another run's lease first looks at the catalog again: when
the other run has meanwhile written exactly those partitions with the same code, the
step is not recomputed (that matters for ``write="append"`` assets) and downstream steps
read the other run's version.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from .step import Step, StepResult

if TYPE_CHECKING:  # pragma: no cover
    from ..catalog import StateRow

log = logging.getLogger("lakehouse")

#: Environment variable: lease duration in seconds (default 60).
LEASE_ENV = "LAKEHOUSE_LEASE_SECONDS"
DEFAULT_TTL = 60.0
#: Seconds a finished step's "committed" marker waits to be written with those of the
#: steps finishing after it (one transaction for all of them).
FLUSH_DELAY = 0.25


def lease_seconds() -> float:
    """The lease duration: ``LAKEHOUSE_LEASE_SECONDS`` or 60 s."""
    try:
        value = float(os.environ.get(LEASE_ENV, DEFAULT_TTL))
    except ValueError:
        return DEFAULT_TTL
    return value if value > 0 else DEFAULT_TTL


class Leases:
    """The leases of one run: taken when it begins (a range another run held then: right
    before its step), renewed by the process's heartbeat, deleted when the run is recorded."""

    def __init__(
        self,
        catalog: Any,
        run_id: str,
        state: Mapping[str, Sequence[StateRow]],
        ttl: float | None = None,
        poll: float = 0.2,
        taken: Mapping[tuple[str, int, int], tuple[str | None, Any, Any]] | None = None,
    ) -> None:
        self.catalog = catalog
        # leases taken with the run's begin transaction: (holder, state rows, markers)
        self._taken = dict(taken or {})
        self.run_id = run_id
        self.ttl = ttl or lease_seconds()
        self.poll = poll
        self.enabled = hasattr(catalog, "acquire_lease")
        self._known = {k: {r.mat_id for r in rows} for k, rows in state.items()}
        self._stop = threading.Event()  # set when the run ends (stops waiting steps)
        # "committed" markers of finished steps, written in batches by the heartbeat
        # instead of one transaction each
        self._pending: list[dict[str, Any]] = []
        self._pending_lock = threading.Lock()
        self._renew_at = time.monotonic() + self.ttl / 3
        self._flush_at: float | None = None
        if self.enabled:
            _HEARTBEAT.add(self)

    def _due(self) -> float:
        """When the heartbeat must next act for this run (monotonic clock)."""
        return self._renew_at if self._flush_at is None else min(self._renew_at, self._flush_at)

    def _tick(self, now: float) -> None:
        """Heartbeat work: write markers ``FLUSH_DELAY`` after a step finished (batched),
        so a run waiting for one of these ranges stops waiting without a catalog
        transaction per step; renew the leases every ``ttl / 3``."""
        if self._stop.is_set():
            return
        if self._flush_at is not None and now >= self._flush_at:
            self._flush_at = None
            try:
                self._flush()
            except Exception as exc:
                log.warning("could not mark the leases of run %s: %s", self.run_id, exc)
        if now >= self._renew_at:
            self._renew_at = now + self.ttl / 3
            try:
                self._flush()
                self.catalog.renew_leases(self.run_id, self.ttl)
            except Exception as exc:
                log.warning("could not renew the leases of run %s: %s", self.run_id, exc)

    def _take_pending(self) -> list[dict[str, Any]]:
        with self._pending_lock:
            out, self._pending = self._pending, []
        return out

    def _put_back(self, markers: list[dict[str, Any]]) -> None:
        with self._pending_lock:
            self._pending[:0] = markers

    def _flush(self) -> None:
        """Write the pending "committed" markers in one transaction."""
        pending = self._take_pending()
        try:
            self.catalog.commit_leases(self.run_id, pending)
        except BaseException:
            self._put_back(pending)
            raise

    def _acquire(self, asset: str, start: int, end: int) -> tuple[str | None, Any, Any]:
        """Take a lease (flushing pending markers in the same transaction)."""
        acquire = getattr(self.catalog, "acquire_lease_with_state", None)
        if acquire is None:
            self._flush()
            return self.catalog.acquire_lease(self.run_id, asset, start, end, self.ttl), None, None
        pending = self._take_pending()
        try:
            holder, rows, markers = acquire(
                self.run_id, asset, start, end, self.ttl, commit=pending
            )
        except BaseException:
            self._put_back(pending)
            raise
        return holder, rows, markers

    def close(self) -> None:
        """Stop renewing. The run's leases (and "committed" markers) are deleted by
        ``finish_run`` in the same transaction that records its writes, so other runs
        never see the partitions as neither leased nor recorded; if the run dies first
        they expire (or recovery releases them)."""
        self._stop.set()
        _HEARTBEAT.remove(self)

    def submit(self, step: Step, run: Callable[[Step], Future[StepResult]]) -> Future[StepResult]:
        """Lease the step's range, then ``run(step)``; the lease is released when it ends."""
        if not self.enabled:
            return run(step)
        asset = step.asset
        start, end = span(step.ranges)
        pre = self._taken.pop((asset, start, end), None)
        if pre is not None and pre[0] is None:  # leased when the run began
            return self._start(step, run, start, end, (pre[1], pre[2]))
        # one transaction: pending markers, the lease, and what other runs wrote meanwhile
        holder, rows, markers = self._acquire(asset, start, end)
        if holder is None:
            return self._start(step, run, start, end, None if rows is None else (rows, markers))
        log.info(
            "asset %s partitions [%d, %d) are leased by run %s: waiting", asset, start, end, holder
        )
        outer: Future[StepResult] = Future()

        def wait_then_run() -> None:
            try:
                while True:
                    held_by, rows, markers = self._acquire(asset, start, end)
                    if held_by is None:
                        break
                    if self._stop.wait(self.poll):
                        raise RuntimeError("the run ended while waiting for a lease")
                inner = self._start(
                    step, run, start, end, None if rows is None else (rows, markers)
                )
                inner.add_done_callback(lambda f: _chain(f, outer))
            except BaseException as exc:
                outer.set_exception(exc)

        threading.Thread(target=wait_then_run, name=f"lakehouse-wait-{asset}", daemon=True).start()
        return outer

    def _start(
        self,
        step: Step,
        run: Callable[[Step], Future[StepResult]],
        start: int,
        end: int,
        seen: tuple[Sequence[StateRow], Sequence[Mapping[str, Any]]] | None = None,
    ) -> Future[StepResult]:
        done = self._done_meanwhile(step, start, end, seen)
        if done is not None:
            self._release(step, start, end)
            fut: Future[StepResult] = Future()
            fut.set_result(done)
            return fut
        try:
            inner = run(step)
        except BaseException:
            self._release(step, start, end)
            raise
        inner.add_done_callback(lambda f: self._finished(step, start, end, f))
        return inner

    def _finished(self, step: Step, start: int, end: int, fut: Future[StepResult]) -> None:
        res = None if fut.cancelled() or fut.exception() is not None else fut.result()
        if res is not None and res.status == "materialized" and res.seq is not None:
            # keep a "committed" marker until this run records the write; it is written by
            # the run's next lease transaction, its heartbeat, or replaced by finish_run
            with self._pending_lock:
                self._pending.append(
                    {
                        "asset": step.asset,
                        "start": start,
                        "end": end,
                        "version": res.version,
                        "seq": res.seq,
                        "code_version": step.code_version,
                    }
                )
            if self._flush_at is None:
                self._flush_at = time.monotonic() + FLUSH_DELAY
                _HEARTBEAT.poke()
            return
        self._release(step, start, end)

    def _release(self, step: Step, start: int, end: int) -> None:
        try:
            self.catalog.release_lease(self.run_id, step.asset, start, end)
        except Exception as exc:
            log.warning("could not release a lease of run %s: %s", self.run_id, exc)

    def _done_meanwhile(
        self,
        step: Step,
        start: int,
        end: int,
        seen: tuple[Sequence[StateRow], Sequence[Mapping[str, Any]]] | None = None,
    ) -> StepResult | None:
        """A result standing for the step when another run wrote its whole range with the
        same code since this run planned, else ``None``. ``seen`` holds the state rows and
        committed markers read while taking the lease (else they are read now)."""
        from ..partitions import RangeSet

        known = self._known.get(step.asset, set())
        done: list[tuple[int, int, str | None, int]] = []  # start, end, version, seq
        if seen is None:
            committed = getattr(self.catalog, "committed_leases", None)
            seen = (
                self.catalog.state([step.asset]).get(step.asset, []),
                committed(step.asset) if committed is not None else [],
            )
        rows, markers = seen
        for r in rows:
            if (
                r.end > start
                and r.start < end
                and r.mat_id not in known
                and r.code_version == step.code_version
            ):
                done.append((r.start, r.end, r.version, r.seq))
        for m in markers:
            if (
                m["run_id"] != self.run_id
                and m["pend"] > start
                and m["pstart"] < end
                and m["code_version"] == step.code_version
                and m["seq"] is not None
            ):
                done.append((int(m["pstart"]), int(m["pend"]), m["version"], int(m["seq"])))
        if not done or not RangeSet.of(start, end).issubset(
            RangeSet([(a, b) for a, b, _, _ in done])
        ):
            return None
        _, _, version, seq = max(done, key=lambda d: d[3])
        return StepResult(
            step.step_id,
            step.asset,
            start,
            end,
            "materialized",
            time.time(),
            0.0,
            version=version,
            seq=seq,
            rows=None,
            extra={"done_by_other_run": True},
        )


class _Heartbeat:
    """One daemon thread per process acts for every live run's :class:`Leases` (renewal
    and batched markers); starting a thread per run would cost more than a small run's
    catalog work."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[int, Leases] = {}
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, leases: Leases) -> None:
        with self._lock:
            self._runs[id(leases)] = leases
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._loop, name="lakehouse-lease", daemon=True
                )
                self._thread.start()
        self._wake.set()

    def remove(self, leases: Leases) -> None:
        with self._lock:
            self._runs.pop(id(leases), None)

    def poke(self) -> None:
        """Re-read the schedule (a run now has markers to write)."""
        self._wake.set()

    def _loop(self) -> None:
        while True:
            with self._lock:
                runs = list(self._runs.values())
            due = min((r._due() for r in runs), default=None)
            timeout = None if due is None else max(0.0, due - time.monotonic())
            if self._wake.wait(timeout):
                self._wake.clear()
                continue
            now = time.monotonic()
            for r in runs:
                r._tick(now)


_HEARTBEAT = _Heartbeat()


def span(ranges: Any) -> tuple[int, int]:
    """``(start, end)`` of the lease covering a step's partition ranges."""
    return (ranges.ranges[0][0], ranges.ranges[-1][1]) if ranges else (0, 1)


def _chain(src: Future[StepResult], dst: Future[StepResult]) -> None:
    exc = src.exception()
    if exc is not None:
        dst.set_exception(exc)
    else:
        dst.set_result(src.result())
