"""The Dask executor on a real ``distributed.LocalCluster`` of two spawned worker
processes on 127.0.0.1 (issue: scale out).

One cluster serves the module; tests that kill workers wait until the nannies have
restarted them.
"""

from __future__ import annotations

import importlib.util
import json
import multiprocessing
import os
import subprocess
import sys
import textwrap
import types
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

import lakehouse as lh
from lakehouse.errors import ConfigError, MaterializeError

pytestmark = pytest.mark.dask

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dask_executor() -> Iterator[lh.DaskExecutor]:
    with lh.DaskExecutor(n_workers=2, threads_per_worker=1) as ex:
        yield ex


def healthy(ex: lh.DaskExecutor) -> lh.DaskExecutor:
    """The executor once both workers are up (after a test killed some)."""
    ex.client.wait_for_workers(2, timeout=120)
    return ex


def build_module(tmp_path: Path, source: str, name: str) -> types.ModuleType:
    """Assets in a module file that is not importable by name (like a user's script)."""
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def notebook_module(source: str, name: str, *, registered: bool) -> types.ModuleType:
    """A module built by ``exec`` with no file behind it, the way notebook cells are."""
    mod = types.ModuleType(name)
    if registered:
        sys.modules[name] = mod
    exec(compile(textwrap.dedent(source), f"<cell {name}>", "exec"), mod.__dict__)
    return mod


def frames(
    lake: lh.Lakehouse, names: list[str], drop: tuple[str, ...] = ()
) -> dict[str, pl.DataFrame]:
    out = {}
    for n in names:
        df = lake.read(n)
        df = df.drop([c for c in drop if c in df.columns])
        out[n] = df.sort(df.columns)
    return out


def same(a: dict[str, pl.DataFrame], b: dict[str, pl.DataFrame]) -> bool:
    return a.keys() == b.keys() and all(a[k].equals(b[k]) for k in a)


def overlapping(rows: list[dict[str, object]]) -> bool:
    return any(
        a["t0"] < b["t1"] and b["t0"] < a["t1"] and a["pid"] != b["pid"]  # type: ignore[operator]
        for a in rows
        for b in rows
        if a is not b
    )


PARTITIONED = """
import os, time
import polars as pl
import lakehouse as lh

DAYS = lh.daily(start="2024-03-01", end="2024-03-09")

@lh.asset(partitions=DAYS, partition_column="day", max_partitions_per_run=1, format={fmt!r})
def readings(ctx: lh.Context) -> pl.DataFrame:
    t0 = time.time()
    time.sleep(0.4)
    day = ctx.partition.start
    return pl.DataFrame({{
        "day": [day] * 4,
        "sensor": ["a", "b", "c", "d"],
        "value": [float(day.day * k) for k in range(1, 5)],
        "pid": [os.getpid()] * 4, "t0": [t0] * 4, "t1": [time.time()] * 4,
    }})

@lh.asset(format={fmt!r})
def per_sensor(readings: pl.LazyFrame) -> pl.LazyFrame:
    return (
        readings.group_by("sensor")
        .agg(pl.col("value").sum(), pl.len().cast(pl.Int64).alias("n"))
        .sort("sensor")
    )

@lh.asset(engine="duckdb", format={fmt!r})
def top_sensors(readings):
    return (
        "select sensor, max(value) as top, count(*) as n from readings "
        "group by sensor order by top desc limit 3"
    )
"""

STAMPS = ("pid", "t0", "t1")


@pytest.mark.parametrize("fmt", ["delta", "iceberg"])
def test_parallel_partitions_equal_the_serial_executor(
    tmp_path: Path, dask_executor: lh.DaskExecutor, fmt: str
) -> None:
    ex = healthy(dask_executor)
    mod = build_module(tmp_path, PARTITIONED.format(fmt=fmt), f"partitioned_{fmt}")
    names = ["readings", "per_sensor", "top_sensors"]
    serial = lh.Lakehouse(tmp_path / "serial", assets=mod)
    dask = lh.Lakehouse(tmp_path / "dask", assets=mod, executor=ex)
    assert serial.materialize(partitions="all").ok
    result = dask.materialize(partitions="all")
    assert result.ok and result.assets.height == 8 + 2
    assert same(frames(serial, names, STAMPS), frames(dask, names, STAMPS))
    assert dask.read("readings").height == 32
    assert dask.table("readings").format == fmt
    rows = dask.read("readings").unique("day").rows(named=True)
    pids = {r["pid"] for r in rows}
    assert (
        len(pids) == 2 and os.getpid() not in pids
    )  # both worker processes, never the coordinator
    assert overlapping(rows)  # partitions ran at the same time on different workers
    assert dask.plan().height == 0

    # the table exists: every partition is rewritten in parallel, nothing lost or duplicated
    again = dask.materialize(partitions="all", force=True)
    assert again.ok
    assert same(frames(serial, names, STAMPS), frames(dask, names, STAMPS))
    assert overlapping(dask.read("readings").unique("day").rows(named=True))


CHAINS = """
import time
import polars as pl
import lakehouse as lh

def stamp(name, seconds):
    t0 = time.time()
    time.sleep(seconds)
    return pl.DataFrame({"name": [name], "t0": [t0], "t1": [time.time()]})

@lh.asset
def slow_root():
    return stamp("slow_root", 2.0)

@lh.asset
def slow_child(slow_root: pl.DataFrame):
    return stamp("slow_child", 0.05)

@lh.asset
def fast_root():
    return stamp("fast_root", 0.05)

@lh.asset
def fast_child(fast_root: pl.DataFrame):
    return stamp("fast_child", 0.05)
"""


def test_steps_start_as_their_upstreams_complete(
    tmp_path: Path, dask_executor: lh.DaskExecutor
) -> None:
    mod = build_module(tmp_path, CHAINS, "chains_dask")
    lake = lh.Lakehouse(tmp_path / "lake", assets=mod, executor=healthy(dask_executor))
    assert lake.materialize().ok
    s = {n: lake.read(n).row(0, named=True) for n in ("slow_root", "fast_child", "slow_child")}
    assert s["fast_child"]["t1"] < s["slow_root"]["t1"]  # not level by level
    assert s["slow_child"]["t0"] >= s["slow_root"]["t1"]


KILLED = """
import os, signal, time
from pathlib import Path
import polars as pl
import lakehouse as lh

MARK = Path({mark!r})

@lh.asset(partitions=lh.daily(start="2024-01-01", end="2024-01-05"), partition_column="day",
          max_partitions_per_run=1)
def fragile(ctx: lh.Context) -> pl.DataFrame:
    time.sleep(0.2)
    if ctx.partition.key == "2024-01-03" and not MARK.exists():
        MARK.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)  # the worker dies in the middle of the step
    return pl.DataFrame({{"day": [ctx.partition.start], "pid": [os.getpid()]}})
"""


def test_a_worker_killed_mid_step_has_its_step_rerun_elsewhere(
    tmp_path: Path, dask_executor: lh.DaskExecutor
) -> None:
    mark = tmp_path / "killed.pid"
    mod = build_module(tmp_path, KILLED.format(mark=str(mark)), "killed")
    lake = lh.Lakehouse(tmp_path / "lake", assets=mod, executor=healthy(dask_executor))
    result = lake.materialize(partitions="all")
    assert result.ok and result.assets["status"].to_list() == ["materialized"] * 4
    killed = int(mark.read_text())
    table = lake.read("fragile").sort("day")
    assert [d.day for d in table["day"]] == [1, 2, 3, 4]  # one row per day: nothing duplicated
    rerun = table.filter(pl.col("day").dt.day() == 3)["pid"].item()
    assert rerun != killed
    assert lake.plan(partitions="all").height == 0


AFTER_COMMIT = """
import os
import polars as pl
import lakehouse as lh

@lh.asset(partitions=lh.daily(start="2024-01-01", end="2024-01-05"), partition_column="day",
          max_partitions_per_run=1)
def committed_twice(ctx: lh.Context) -> pl.DataFrame:
    return pl.DataFrame({"day": [ctx.partition.start] * 2, "k": [1, 2], "pid": [os.getpid()] * 2})
"""


def set_fault(value: str) -> None:
    """Run on the workers: make them kill themselves at a fault point (see step.fault)."""
    os.environ["LAKEHOUSE_FAULT"] = value


def test_a_worker_killed_after_its_commit_duplicates_nothing(
    tmp_path: Path, dask_executor: lh.DaskExecutor
) -> None:
    from deltalake import DeltaTable

    ex = healthy(dask_executor)
    mod = build_module(tmp_path, AFTER_COMMIT, "after_commit")
    lake = lh.Lakehouse(tmp_path / "lake", assets=mod, executor=ex)
    # Each current worker process kills itself right after its first table commit; the
    # nannies restart them without the setting, so every step that died is rerun once.
    ex.client.run(set_fault, "after_commit:committed_twice")
    result = lake.materialize(partitions="all")
    assert result.ok
    table = lake.read("committed_twice")
    assert table.height == 8 and table.select("day", "k").n_unique() == 8
    commits = DeltaTable(lake.table("committed_twice").uri).history()
    assert len(commits) >= 4 + 1  # at least one step committed, died and was committed again
    assert lake.plan(partitions="all").height == 0


NOTEBOOK = """
import polars as pl
import lakehouse as lh

FACTOR = 3

def scaled(values):
    return [v * FACTOR for v in values]

@lh.asset(name="cell_numbers_{tag}")
def numbers() -> pl.DataFrame:
    return pl.DataFrame({{"n": list(range(5)), "m": scaled(range(5))}})

@lh.asset(name="cell_total_{tag}", ins={{"numbers": "cell_numbers_{tag}"}})
def total(numbers: pl.LazyFrame) -> pl.LazyFrame:
    return numbers.select(pl.col("m").sum() * FACTOR)
"""


@pytest.mark.parametrize("registered", [True, False])
def test_notebook_style_functions_are_shipped_by_value(
    tmp_path: Path, dask_executor: lh.DaskExecutor, registered: bool
) -> None:
    tag = "reg" if registered else "free"
    name = f"__lakehouse_test_cell_{tag}__"
    mod = notebook_module(NOTEBOOK.format(tag=tag), name, registered=registered)
    try:
        assert getattr(mod, "__file__", None) is None
        serial = lh.Lakehouse(tmp_path / "serial", assets=mod)
        dask = lh.Lakehouse(tmp_path / "dask", assets=mod, executor=healthy(dask_executor))
        assert serial.materialize().ok and dask.materialize().ok
        names = [f"cell_numbers_{tag}", f"cell_total_{tag}"]
        assert same(frames(serial, names), frames(dask, names))
        assert dask.read(f"cell_total_{tag}").item() == 3 * 3 * sum(range(5))
    finally:
        sys.modules.pop(name, None)


MAIN_SCRIPT = """
import json, os, sys
import polars as pl
import lakehouse as lh

BONUS = 7

def bonus(x):
    return x + BONUS

@lh.asset
def base() -> pl.DataFrame:
    return pl.DataFrame({"x": [1, 2, 3], "pid": [os.getpid()] * 3})

@lh.asset
def plus(base: pl.LazyFrame) -> pl.LazyFrame:
    return base.select(pl.col("x").map_elements(bonus, return_dtype=pl.Int64), "pid")

if __name__ == "__main__":
    with lh.DaskExecutor(n_workers=1) as ex:
        lake = lh.Lakehouse(sys.argv[1], executor=ex)
        lake.materialize()
        out = lake.read("plus")
    print(json.dumps({"x": out["x"].to_list(), "pids": sorted(set(out["pid"])), "me": os.getpid()}))
"""


def test_functions_defined_in_main_run_on_workers(tmp_path: Path) -> None:
    script = tmp_path / "pipeline.py"
    script.write_text(MAIN_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "lake")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert sorted(out["x"]) == [8, 9, 10]
    assert out["me"] not in out["pids"]  # computed in a worker process, not in the script


FAILING = """
import threading
import polars as pl
import lakehouse as lh

LOCK = threading.Lock()

@lh.asset(partitions=lh.daily(start="2024-01-01", end="2024-01-05"), partition_column="day",
          max_partitions_per_run=1)
def flaky_feed(ctx: lh.Context) -> pl.DataFrame:
    if ctx.partition.key == "2024-01-02":
        raise ValueError("the feed for this day is empty")
    return pl.DataFrame({"day": [ctx.partition.start], "n": [1]})

@lh.asset
def locked() -> pl.DataFrame:
    with LOCK:
        return pl.DataFrame({"n": [1]})
"""


def test_errors_name_the_asset_the_partition_and_the_worker(
    tmp_path: Path, dask_executor: lh.DaskExecutor
) -> None:
    mod = build_module(tmp_path, FAILING, "failing_dask")
    lake = lh.Lakehouse(tmp_path / "lake", assets=mod, executor=healthy(dask_executor))
    with pytest.raises(MaterializeError) as err:
        lake.materialize(partitions="all")
    text = str(err.value)
    assert "flaky_feed: partition 2024-01-02, worker tcp://127.0.0.1:" in text
    assert "the feed for this day is empty" in text
    assert f"{mod.__file__}:" in text  # the line in the user's file, not <dynamic-code>
    # an asset that cannot be pickled fails by itself, naming itself
    assert "locked: " in text and "cannot ship the step to the Dask workers" in text
    status = err.value.result.assets.select("asset", "status").rows()
    assert sorted(status) == sorted(
        [("flaky_feed", "materialized")] * 3 + [("flaky_feed", "failed"), ("locked", "failed")]
    )


def dask_setting(key: str) -> object:
    """Run on the workers: one of their Dask settings."""
    import dask

    return dask.config.get(key)


def test_local_workers_run_without_the_profiler_and_this_process_keeps_its_settings(
    dask_executor: lh.DaskExecutor,
) -> None:
    import dask

    from lakehouse.execution.dask import QUIET_SETTINGS

    got = dask_executor.client.run(dask_setting, "distributed.worker.profile.enabled")
    assert list(got.values()) == [False, False]
    ticks = dask_executor.client.run(dask_setting, "distributed.admin.tick.interval")
    assert set(ticks.values()) == {QUIET_SETTINGS["distributed.admin.tick.interval"]}
    # the scheduler in this process ticks slowly too, but the process's own settings are untouched
    assert dask_executor.cluster.scheduler._tick_interval == 0.5
    assert dask.config.get("distributed.worker.profile.enabled") is True
    assert (
        dask.config.get("distributed.admin.tick.interval")
        != QUIET_SETTINGS["distributed.admin.tick.interval"]
    )


def test_connects_to_an_existing_cluster_by_address(
    tmp_path: Path, dask_executor: lh.DaskExecutor
) -> None:
    shared = healthy(dask_executor)
    address = shared.cluster.scheduler_address
    assert address.startswith("tcp://127.0.0.1:")
    mod = build_module(tmp_path, CHAINS, "chains_remote")
    with lh.DaskExecutor(address) as remote:
        assert remote.cluster is None and remote.max_parallel == 4
        lake = lh.Lakehouse(tmp_path / "lake", assets=mod, executor=remote)
        assert lake.materialize("fast_root+").ok
    # closing a client of an external cluster leaves the cluster running
    assert shared.client.submit(sum, [1, 2]).result(timeout=60) == 3


def test_unreachable_scheduler_is_a_config_error() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ex = lh.DaskExecutor(f"tcp://127.0.0.1:{port}", timeout=2)
    with pytest.raises(
        ConfigError, match=f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}"
    ):
        ex.start()
    assert not ex.started


SPAWNED = """
import sys
import polars as pl
import lakehouse as lh

@lh.asset
def where_it_ran() -> pl.DataFrame:
    # a forked worker would have inherited the coordinator's modules, this one included
    return pl.DataFrame({"inherited": ["lakehouse_test_fork_sentinel" in sys.modules]})
"""


def test_dask_setting_starts_a_spawned_local_cluster_for_the_run_and_closes_it(
    tmp_path: Path,
) -> None:
    import dask

    mod = build_module(tmp_path, SPAWNED, "spawned")
    before = {p.pid for p in multiprocessing.active_children()}
    sys.modules["lakehouse_test_fork_sentinel"] = types.ModuleType("lakehouse_test_fork_sentinel")
    try:
        with dask.config.set({"distributed.worker.multiprocessing-method": "fork"}):  # overridden
            lake = lh.Lakehouse(tmp_path / "lake", assets=mod, executor="dask")
            assert lake.materialize().ok
    finally:
        sys.modules.pop("lakehouse_test_fork_sentinel", None)
    assert lake.read("where_it_ran")["inherited"].to_list() == [False]
    leftover = {p.pid for p in multiprocessing.active_children()} - before
    assert not leftover


FORKED = """
import os, sys
import polars as pl
import lakehouse as lh

@lh.asset(partitions=lh.daily(start="2024-05-01", end="2024-05-05"), partition_column="day",
          max_partitions_per_run=1)
def forked(ctx: lh.Context) -> pl.DataFrame:
    return pl.DataFrame({
        "day": [ctx.partition.start], "value": [ctx.partition.start.day * 10],
        "pid": [os.getpid()], "parent": [os.getppid()],
        "late": [os.environ.get("LAKEHOUSE_TEST_LATE_SETTING")],
        "inherited": ["lakehouse_test_fork_sentinel" in sys.modules],
    })
"""


def loaded_libraries(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the fork server is used on Linux only"
)
def test_forkserver_workers_come_from_a_clean_single_threaded_server(tmp_path: Path) -> None:
    from lakehouse.execution.dask import _start_forkserver

    mod = build_module(tmp_path, FORKED, "forked_assets")
    serial = lh.Lakehouse(tmp_path / "serial", assets=mod)
    assert serial.materialize(partitions="all").ok  # Polars and deltalake ran in this process
    assert _start_forkserver("forkserver")  # the server runs from now on (or ran already)
    os.environ["LAKEHOUSE_TEST_LATE_SETTING"] = "set after the server started"
    sys.modules["lakehouse_test_fork_sentinel"] = types.ModuleType("lakehouse_test_fork_sentinel")
    try:
        with lh.DaskExecutor(n_workers=2) as ex:  # the default on Linux
            assert ex.start_method == "forkserver"
            lake = lh.Lakehouse(tmp_path / "lake", assets=mod, executor=ex)
            assert lake.materialize(partitions="all").ok
            table = lake.read("forked").sort("day")
            servers = set(table["parent"])
            assert len(servers) == 1 and os.getpid() not in servers | set(table["pid"])
            server = servers.pop()
            # the server never loaded Polars, pyarrow or deltalake, and has no thread to copy
            maps = loaded_libraries(server)
            assert "polars" not in maps and "deltalake" not in maps and "pyarrow" not in maps
            assert len(os.listdir(f"/proc/{server}/task")) == 1
    finally:
        os.environ.pop("LAKEHOUSE_TEST_LATE_SETTING", None)
        sys.modules.pop("lakehouse_test_fork_sentinel", None)
    assert (
        table["late"].to_list() == ["set after the server started"] * 4
    )  # this process's environment
    assert table["inherited"].to_list() == [False] * 4
    assert table.select("day", "value").equals(
        serial.read("forked").sort("day").select("day", "value")
    )


def test_spawned_workers_are_children_of_this_process(tmp_path: Path) -> None:
    mod = build_module(tmp_path, FORKED, "spawned_assets")
    with lh.DaskExecutor(n_workers=2, start_method="spawn") as ex:
        lake = lh.Lakehouse(tmp_path / "lake", assets=mod, executor=ex)
        assert lake.materialize(partitions="all").ok
        table = lake.read("forked")
    assert set(table["parent"]) == {os.getpid()} and os.getpid() not in set(table["pid"])
    assert table["inherited"].to_list() == [False] * 4 and table.height == 4


def test_configuration_errors() -> None:
    with pytest.raises(ConfigError, match="both address= and client="):
        lh.DaskExecutor("tcp://127.0.0.1:1", client=object())
    with pytest.raises(ConfigError, match="n_workers=0"):
        lh.DaskExecutor(n_workers=0)
    with pytest.raises(ConfigError, match="start_method='fork'"):
        lh.DaskExecutor(start_method="fork")
    ex = lh.DaskExecutor(start_now=False)
    assert not ex.started and ex.name == "dask" and "not started" in repr(ex)
    ex.close()  # closing an executor that never started is fine


def test_the_docs_example_script_runs(tmp_path: Path) -> None:
    import re

    text = (ROOT / "docs" / "dask.md").read_text()
    block = next(
        b for b in re.findall(r"```python\n(.*?)```", text, re.S) if b.startswith("# pipeline.py")
    )
    (tmp_path / "pipeline.py").write_text(block)
    proc = subprocess.run(
        [sys.executable, "pipeline.py"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "8 materialized" in proc.stdout and "2 worker processes" in proc.stdout


@pytest.mark.notebook
def test_assets_defined_in_a_jupyter_kernel_run_on_dask_workers(tmp_path: Path) -> None:
    import nbformat
    from nbclient import NotebookClient

    cells = [
        "import os, polars as pl, lakehouse as lh\nSCALE = 10",
        "def scaled(v):\n    return v * SCALE",
        "@lh.asset\ndef kernel_numbers() -> pl.DataFrame:\n"
        "    return pl.DataFrame({'v': [scaled(i) for i in range(4)], 'pid': [os.getpid()] * 4})",
        "ex = lh.DaskExecutor(n_workers=1)\n"
        f"lake = lh.Lakehouse({str(tmp_path / 'lake')!r}, executor=ex)\n"
        "assert lake.materialize().ok\nout = lake.read('kernel_numbers')",
        "assert sorted(out['v']) == [0, 10, 20, 30]\nassert os.getpid() not in set(out['pid'])",
        # a redefined cell ships its new code
        "SCALE = 100\nassert lake.materialize().ok\n"
        "assert sorted(lake.read('kernel_numbers')['v']) == [0, 100, 200, 300]\n"
        "ex.close()",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    env_path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = f"{ROOT}{os.pathsep}{env_path}" if env_path else str(ROOT)
    try:
        NotebookClient(
            nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
        ).execute()
    finally:
        if env_path:
            os.environ["PYTHONPATH"] = env_path
        else:
            os.environ.pop("PYTHONPATH", None)


def test_the_cluster_starts_in_the_background_while_the_coordinator_plans(tmp_path: Path) -> None:
    import time

    mod = build_module(tmp_path, CHAINS, "chains_background")
    # the user's Dask settings win over the executor's quieter defaults
    ex = lh.DaskExecutor(
        n_workers=1,
        cluster_options={"config": {"distributed": {"worker": {"profile": {"enabled": True}}}}},
    )
    try:
        lake = lh.Lakehouse(tmp_path / "lake", assets=mod, executor=ex)
        assert lake.plan("fast_root+").height == 2  # planning does not wait for the cluster
        deadline = time.monotonic() + 120
        while not ex.started and time.monotonic() < deadline:  # nothing asked for it yet
            time.sleep(0.05)
        assert ex.started and ex.cluster is not None
        assert list(ex.client.run(dask_setting, "distributed.worker.profile.enabled").values()) == [
            True
        ]
        assert lake.materialize("fast_root+").ok
    finally:
        ex.close()
    assert not ex.started
