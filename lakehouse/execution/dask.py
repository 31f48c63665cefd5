"""Run steps on a Dask distributed cluster (layer 4).

:class:`DaskExecutor` implements the :class:`~lakehouse.execution.Executor` seam: the
coordinator keeps the plan and the catalog; each step is shipped to a worker, which reads
its inputs, computes, runs checks, commits its table write and returns a small
:class:`~lakehouse.execution.step.StepResult`.

* Without an address it starts a ``distributed.LocalCluster`` on 127.0.0.1 with process
  workers started by ``spawn`` (never ``fork``: a forked copy of a process that has used
  deltalake or Polars deadlocks or panics), and closes it when the executor is closed.
* Steps are serialized with cloudpickle. Functions whose module the workers cannot
  import (``__main__``, notebook cells, modules built with ``exec``, and any module named
  in ``by_value``) travel by value; everything else by reference.
* A worker that dies mid-step has its step rerun on another worker by the Dask scheduler
  (up to ``distributed.scheduler.allowed-failures`` times); partition overwrites are
  exact, so a rerun replaces what the lost attempt may have committed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import socket
import sys
import threading
import time
import weakref
from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from typing import Any

from .._plugins import require
from ..errors import ConfigError
from .step import Step, StepResult

#: Dask's own setting for the scheduler address (env ``DASK_SCHEDULER_ADDRESS``).
_ADDRESS_KEY = "scheduler-address"

#: How a local cluster may start its worker processes (see ``DaskExecutor(start_method=)``).
START_METHODS = ("spawn", "forkserver")

#: Environment of the fork server, so of every worker forked from it: Dask's defaults for
#: worker processes (``distributed.nanny.pre-spawn-environ``), which a spawning nanny sets
#: for each worker and which a fork server must already have. One BLAS thread also keeps
#: the server single-threaded once it has imported Dask (NumPy's OpenBLAS starts a thread
#: per CPU otherwise), so forking it is safe.
FORKSERVER_ENV = {
    "MALLOC_TRIM_THRESHOLD_": "65536",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
}

#: Dask settings of a local cluster: fewer timer wake-ups in the workers and in this
#: process (scheduler and nannies). Every wake-up takes the GIL and CPU from a running
#: step: the worker's statistical profiler samples every 10 ms and each server's event
#: loop ticks every 20 ms by default, together 2-3% of a core per idle worker and more
#: while a pure-Python step runs. The profiler only feeds the dashboard's profile page;
#: the tick only measures event-loop delays. ``cluster_options={"config": {...}}``
#: overrides them (e.g. ``{"distributed.worker.profile.enabled": True}``).
QUIET_SETTINGS: dict[str, Any] = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "500ms",
    "distributed.admin.system-monitor.interval": "2s",
}


class DaskExecutor:
    """Run materializations on a Dask distributed cluster.

    Args:
        address: scheduler address of an existing cluster (``"tcp://host:8786"``). ``None``
            uses Dask's ``scheduler-address`` setting (``DASK_SCHEDULER_ADDRESS``) when set,
            and otherwise starts a local cluster of process workers on 127.0.0.1.
        n_workers: worker processes of the local cluster.
        threads_per_worker: threads per local worker (1 keeps pure-Python assets
            parallel; Polars, DuckDB and delta-rs use their own threads inside a step).
        memory_limit: per-worker memory limit of the local cluster (Dask's syntax).
        client: an existing ``distributed.Client`` to use instead of ``address``
            (e.g. from dask-kubernetes or dask-jobqueue); it is not closed by ``close()``.
        by_value: module names (or package prefixes) whose functions are shipped by value
            even though they are importable here (modules not installed on the workers).
        max_parallel: steps handed to the cluster at once (default: twice its threads, so
            every worker has its next step queued).
        cluster_options: further keyword arguments for ``distributed.LocalCluster``.
        timeout: seconds to wait for the scheduler at ``address``.
        start_now: start the cluster (or connect) right away in a background thread, so
            it overlaps with planning the run; ``False``: on first use.
        start_method: how the local cluster starts its worker processes. ``None``
            (default): ``"forkserver"`` on Linux, ``"spawn"`` elsewhere. ``"spawn"``: each
            worker is a fresh interpreter that imports Dask itself.
            ``"forkserver"`` (Linux): a clean server process is spawned at once, imports
            Dask and lakehouse's step modules (never Polars, deltalake or pyarrow, whose
            imports start threads) while this process imports Dask too, and forks every
            worker (and every restarted one) from itself; the workers start sooner, and
            Dask is imported once instead of once per worker. The server lives until this
            process exits; workers get this process's environment as it is when the
            cluster starts. Never ``"fork"``: a forked copy of a process that has used
            deltalake or Polars deadlocks or panics.

    The executor keeps its cluster across ``materialize()`` calls; ``close()`` (or a
    ``with`` block, or interpreter exit) shuts down a cluster it started. A closed
    executor starts again on its next use. An error while starting in the background
    (an unreachable scheduler) is raised by the first use.

    >>> ex = DaskExecutor(n_workers=2, start_now=False)
    >>> ex.name, ex.started
    ('dask', False)
    """

    name = "dask"

    def __init__(
        self,
        address: str | None = None,
        *,
        n_workers: int = 2,
        threads_per_worker: int = 1,
        memory_limit: str | float | None = "auto",
        client: Any = None,
        by_value: Iterable[str] = (),
        max_parallel: int | None = None,
        cluster_options: Mapping[str, Any] | None = None,
        timeout: float = 20.0,
        start_now: bool = True,
        start_method: str | None = None,
    ) -> None:
        if address is not None and client is not None:
            raise ConfigError("DaskExecutor got both address= and client=", hint="pass one of them")
        if start_method is None:
            start_method = "forkserver" if sys.platform.startswith("linux") else "spawn"
        if start_method not in START_METHODS:
            raise ConfigError(
                f"DaskExecutor(start_method={start_method!r}) is not one of "
                f"{', '.join(START_METHODS)}",
                hint="use 'forkserver' (the default on Linux) or 'spawn'; 'fork' is unsafe once "
                "deltalake or Polars ran in this process",
            )
        if n_workers < 1 or threads_per_worker < 1:
            raise ConfigError(
                f"DaskExecutor(n_workers={n_workers}, threads_per_worker={threads_per_worker}) "
                "needs both >= 1",
                hint="e.g. DaskExecutor(n_workers=2)",
            )
        self.address = address
        self.n_workers = n_workers
        self.threads_per_worker = threads_per_worker
        self.memory_limit = memory_limit
        self.by_value = tuple(by_value)
        self.cluster_options = dict(cluster_options or {})
        self.timeout = timeout
        self.start_method = start_method
        self._max_parallel = max_parallel
        self._given_client = client
        self._client: Any = client
        self._cluster: Any = None
        self._lock = threading.RLock()
        self._futures: dict[str, Any] = {}
        self._warming: list[Any] = []
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self._seq = 0
        self._start_error: BaseException | None = None
        if start_now and client is None:
            threading.Thread(
                target=self._start_in_background, name="lakehouse-dask-start", daemon=True
            ).start()

    def _start_in_background(self) -> None:
        try:
            self.start()
        except BaseException as exc:  # raised again by the first use
            self._start_error = exc

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def started(self) -> bool:
        """True while the executor holds a client (and its cluster, if it started one)."""
        return self._client is not None

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` (the cluster is started or connected on first use)."""
        return self.start()._client

    @property
    def cluster(self) -> Any:
        """The ``LocalCluster`` this executor started, or ``None`` for an external cluster."""
        return self._cluster

    def start(self) -> DaskExecutor:
        """Start the local cluster or connect to the scheduler now (otherwise: on first use)."""
        with self._lock:
            if self._client is not None:
                return self
            if (
                self._start_error is not None
                and threading.current_thread().name != "lakehouse-dask-start"
            ):
                error, self._start_error = self._start_error, None
                raise error
            # the fork server is launched before this process imports Dask, which takes
            # as long as the server's own import (it is not used with a scheduler address)
            forked = self.address is None and _start_forkserver(self.start_method)
            require("distributed", "dask")
            import dask
            import distributed

            address = self.address or dask.config.get(_ADDRESS_KEY, None)
            method = "forkserver" if forked and not address else "spawn"

            if address:
                try:
                    self._client = distributed.Client(  # type: ignore[no-untyped-call]
                        address, set_as_default=False, timeout=self.timeout
                    )
                except (OSError, TimeoutError) as exc:
                    raise ConfigError(
                        f"cannot reach the Dask scheduler at {address}: {exc}",
                        hint="check the address and that `dask scheduler` runs there, or use "
                        "DaskExecutor() for a local cluster",
                    ) from exc
            else:
                # Pinned globally, not in a context: the nanny reads it again whenever it
                # restarts a worker that died.
                dask.config.set({"distributed.worker.multiprocessing-method": method})
                options: dict[str, Any] = {
                    "n_workers": self.n_workers,
                    "threads_per_worker": self.threads_per_worker,
                    "processes": True,
                    "host": "127.0.0.1",
                    "dashboard_address": "127.0.0.1:0",  # no fixed port 8787: clusters can coexist
                    "memory_limit": self.memory_limit,
                }
                options.update(self.cluster_options)
                settings = {**QUIET_SETTINGS, **_flat(options.pop("config", None) or {})}
                # the workers get them through their nannies (also when one is restarted;
                # dotted keys: a nanny adds them on top of Dask's config, key by key); the
                # scheduler and the nannies read them while they are created
                options["config"] = settings
                if method == "forkserver":
                    _keep_dask_from_preloading()
                    # a forked worker inherits the server's environment, which is this
                    # process's as it was when the server started: hand it the current one
                    env = {k: v for k, v in os.environ.items() if k not in FORKSERVER_ENV}
                    options["env"] = {**env, **dict(options.get("env") or {})}
                with dask.config.set(settings):
                    self._cluster = distributed.LocalCluster(**options)  # type: ignore[no-untyped-call]
                self._client = distributed.Client(  # type: ignore[no-untyped-call]
                    self._cluster, set_as_default=False
                )
            self._finalizer = weakref.finalize(
                self, _shutdown, self._client, self._cluster, self._given_client is None
            )
            # Warm every worker now, while the coordinator plans: the imports a first step
            # would otherwise pay for (about a second on a fresh worker) happen meanwhile.
            try:
                workers = list(self._client.scheduler_info().get("workers", {}))
                self._warming = [
                    self._client.submit(_warm, workers=[w], pure=False, key=f"lakehouse-warm-{w}")
                    for w in workers
                ]
            except Exception:
                self._warming = []
            return self

    def close(self) -> None:
        """Close the client and shut down the cluster this executor started."""
        with self._lock:
            if self._finalizer is not None:
                self._finalizer()
                self._finalizer = None
            self._client = self._given_client
            self._cluster = None
            self._futures.clear()
            self._warming = []
            self._start_error = None

    def __enter__(self) -> DaskExecutor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = self.address or (
            "client" if self._given_client is not None else f"local x{self.n_workers}"
        )
        return f"DaskExecutor({where}, {'started' if self.started else 'not started'})"

    # -- the Executor seam -----------------------------------------------------------------

    @property
    def max_parallel(self) -> int:
        """Steps in flight at once: ``max_parallel=`` or twice the cluster's threads."""
        if self._max_parallel is not None:
            return self._max_parallel
        info = self.client.scheduler_info()
        threads = sum(int(w.get("nthreads", 1)) for w in info.get("workers", {}).values())
        return max(2, 2 * (threads or self.n_workers * self.threads_per_worker))

    def submit(self, step: Step) -> Future[StepResult]:
        """Ship ``step`` to the cluster; the future resolves to its result (never raises)."""
        out: Future[StepResult] = Future()
        out.set_running_or_notify_cancel()
        try:
            payload = self._dumps(step)
        except Exception as exc:
            out.set_result(
                _failure(
                    step,
                    f"cannot ship the step to the Dask workers: {type(exc).__name__}: {exc}",
                    "PicklingError",
                    worker="coordinator",
                    hint="asset functions must be picklable: avoid closing over locks, "
                    "connections or open files",
                )
            )
            return out
        client = self.client
        with self._lock:
            self._seq += 1
            key = f"lakehouse-{_safe(step.asset)}-{step.step_id}-{self._seq}"
        dfut = client.submit(_run_remote, payload, key=key, pure=False)
        self._futures[key] = dfut  # a Dask future dropped by every holder is cancelled

        def settle(fut: Any) -> None:
            self._futures.pop(key, None)
            try:
                out.set_result(_settle(fut, step))
            except Exception as exc:
                out.set_result(_failure(step, f"{type(exc).__name__}: {exc}", type(exc).__name__))

        dfut.add_done_callback(settle)
        return out

    # -- shipping code ------------------------------------------------------------------------

    def _dumps(self, step: Step) -> bytes:
        """``step`` pickled with cloudpickle, with non-importable modules by value."""
        cloudpickle = require("cloudpickle", "dask")
        with self._lock:
            registered = []
            for module in self._by_value_modules(step):
                try:
                    cloudpickle.register_pickle_by_value(module)
                except ValueError:  # already registered
                    continue
                registered.append(module)
            try:
                return bytes(cloudpickle.dumps(step))
            finally:
                for module in registered:
                    cloudpickle.unregister_pickle_by_value(module)

    def _by_value_modules(self, step: Step) -> list[Any]:
        fns = [step.spec.fn, step.spec.observe]
        fns += [getattr(c, "fn", None) for c in step.spec.checks]
        out: dict[str, Any] = {}
        for fn in fns:
            name = getattr(fn, "__module__", None)
            if not name or name == "__main__" or name in out:
                continue  # cloudpickle ships __main__ by value on its own
            module = sys.modules.get(name)
            if module is None:
                continue  # not importable here either: cloudpickle ships it by value
            wanted = any(name == p or name.startswith(p + ".") for p in self.by_value)
            if wanted or not getattr(module, "__file__", None):
                out[name] = module
        return list(out.values())


def _shutdown(client: Any, cluster: Any, owns_client: bool) -> None:
    if owns_client and client is not None:
        with contextlib.suppress(Exception):  # best effort at shutdown
            client.close()
    if cluster is not None:
        with contextlib.suppress(Exception):
            cluster.close()


def _start_forkserver(method: str) -> bool:
    """Launch the fork server (preloading Dask and lakehouse) for ``method="forkserver"``.

    Returns whether workers can be forked from it: ``False`` off Linux, and when another
    part of this program already started a fork server with other preloads (it might
    hold Polars' or deltalake's threads); the cluster then spawns its workers.
    """
    if method != "forkserver" or not sys.platform.startswith("linux"):
        return False
    import multiprocessing
    from multiprocessing import forkserver

    server = forkserver._forkserver
    preload = getattr(server, "_preload_modules", None)
    if getattr(server, "_forkserver_pid", None) is not None:
        return bool(preload == list(_FORKSERVER_PRELOAD))  # ours (an earlier cluster)
    multiprocessing.get_context("forkserver").set_forkserver_preload(list(_FORKSERVER_PRELOAD))
    saved = {k: os.environ.get(k) for k in FORKSERVER_ENV}
    os.environ.update(FORKSERVER_ENV)
    try:
        forkserver.ensure_running()  # returns at once; the server imports Dask meanwhile
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return True


#: What the fork server imports before it forks workers: Dask and the pure-Python part
#: of lakehouse a step runs on, never Polars, pyarrow, deltalake or DuckDB (importing them
#: starts threads, and a process with threads must not fork; ``import lakehouse`` and
#: these modules import none of them).
_FORKSERVER_PRELOAD = (
    "distributed",
    "lakehouse.execution.dask",
    "lakehouse.execution.publish",
    "lakehouse.execution.column_probe",
    "lakehouse.engines.column_lineage",
    "lakehouse.storage.delta",
)


def _keep_dask_from_preloading() -> None:
    """Dask's own fork-server setup would import NumPy and pandas into this process (half
    a second) to preload them into a server that runs already: skip it."""
    with contextlib.suppress(Exception):
        import distributed.utils

        if hasattr(distributed.utils, "_forkserver_preload_set"):
            distributed.utils._forkserver_preload_set = True


def _flat(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` as ``{"a.b": 1}`` (Dask's ``config.set`` takes both spellings)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _warm() -> None:
    """Import what every step needs (run once on each worker when the executor starts)."""
    import importlib

    from ..engines import polars as _polars  # noqa: F401
    from . import publish, step  # noqa: F401

    for name in ("pyarrow", "deltalake", "deltalake.transaction"):
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:80]


def _worker_name() -> str:
    here = f"{socket.gethostname()}:{os.getpid()}"
    try:
        from distributed import get_worker

        return f"{get_worker().address} ({here})"
    except (ImportError, ValueError):
        return here


def _run_remote(payload: bytes) -> StepResult | tuple[str, str, str]:
    """The task run on a worker: unpickle the step, run it, tag the result with the worker."""
    import pickle

    try:
        step = pickle.loads(payload)
    except Exception as exc:
        return ("unpicklable", _worker_name(), f"{type(exc).__name__}: {exc}")
    from .step import run_step

    result = run_step(step)
    return dataclasses.replace(result, worker=_worker_name())


def _settle(fut: Any, step: Step) -> StepResult:
    """A finished Dask future as a :class:`StepResult` (errors become failed results)."""
    status = fut.status
    if status == "finished":
        value = fut.result()
        if isinstance(value, StepResult):
            return _with_source_file(value, step)
        _, worker, text = value
        return _failure(
            step,
            f"the worker could not load the step: {text}",
            "PicklingError",
            worker=worker,
            hint="install the module defining the asset on the workers, or ship it with "
            "DaskExecutor(by_value=['module'])",
        )
    if status == "cancelled":
        return _failure(
            step,
            "the Dask cluster cancelled the step (scheduler restarted or client disconnected)",
            "CancelledError",
            retryable=True,
        )
    exc = fut.exception()
    last = getattr(exc, "last_worker", None)
    if last is not None:
        worker = getattr(last, "address", str(last))
        return _failure(
            step,
            f"every worker that ran this step died ({exc})",
            "KilledWorker",
            worker=worker,
            hint="a step that kills its worker is often out of memory: return a pl.LazyFrame "
            "so the write streams, lower max_partitions_per_run, or raise the workers' "
            "memory_limit",
        )
    return _failure(step, f"{type(exc).__name__}: {exc}", type(exc).__name__)


def _with_source_file(result: StepResult, step: Step) -> StepResult:
    """Point ``(at <dynamic-code>:N)`` of a function shipped by value back at its file."""
    code = getattr(step.spec.fn, "__code__", None)
    if not result.error or code is None or "<dynamic-code>" not in result.error:
        return result
    return dataclasses.replace(
        result, error=result.error.replace("<dynamic-code>", code.co_filename)
    )


def _failure(
    step: Step,
    text: str,
    error_type: str,
    *,
    worker: str = "",
    hint: str | None = None,
    retryable: bool = False,
) -> StepResult:
    rng = step.ranges
    start, end = (rng.ranges[0][0], rng.ranges[-1][1]) if rng else (0, 1)
    where = f"asset '{step.asset}'" + (
        f", partition {step.partitions_text}" if step.partitions_text else ""
    )
    message = f"{where}: {text}" + (f"\n  hint: {hint}" if hint else "")
    return StepResult(
        step.step_id,
        step.asset,
        start,
        end,
        "failed",
        time.time(),
        0.0,
        error=message,
        error_type=error_type,
        retryable=retryable,
        worker=worker,
    )


__all__ = ["DaskExecutor"]
