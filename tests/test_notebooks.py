"""The example notebooks run top to bottom on a fresh kernel, and notebook cells behave.

Each notebook asserts its own results in its cells (a failing ``assert`` fails the run);
this module also checks what the notebooks display, and drives a real kernel to check that
re-running an ``@lh.asset`` cell with a changed body marks the asset and its downstream
stale.
"""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path
from typing import Any

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"

pytestmark = pytest.mark.notebook


def execute(path: Path, workdir: Path) -> Any:
    import nbformat
    from nbclient import NotebookClient

    target = workdir / path.name
    shutil.copy(path, target)
    nb = nbformat.read(target, as_version=4)
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}
    ).execute()
    return nb


def outputs(nb: Any, mime: str) -> list[str]:
    found = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if mime in out.get("data", {}):
                found.append(out["data"][mime])
            elif mime == "stream" and out.get("output_type") == "stream":
                found.append(out["text"])
    return found


def test_every_notebook_is_tested() -> None:
    names = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    assert names == sorted(NOTEBOOK_CHECKS), "add new notebooks to NOTEBOOK_CHECKS"


def check_quickstart(nb: Any, workdir: Path) -> None:
    html = outputs(nb, "text/html")
    lake_view = next(h for h in html if "<b>Lakehouse</b>" in h)
    assert "<svg" in lake_view and 'data-asset="top_customer"' in lake_view
    assert "lh-stale" in lake_view  # nothing was materialized when the lakehouse was shown
    lineage_view = next(h for h in html if "lineage of top_customer" in h)
    assert 'data-asset="orders"' in lineage_view and "lh-fresh" in lineage_view
    assert (workdir / "lake" / "by_customer").is_dir()
    assert (workdir / "lake" / ".lakehouse" / "catalog.db").is_file()


def check_partitions(nb: Any, workdir: Path) -> None:
    html = "\n".join(outputs(nb, "text/html"))
    assert "2013-01-01..2013-01-07" in html
    assert (workdir / "lake-flights" / "worst_origin").is_dir()


def check_lineage(nb: Any, workdir: Path) -> None:
    html = outputs(nb, "text/html")
    views = [h for h in html if "lineage of " in h]
    assert len(views) == 2
    # after one raw day was recomputed, the second view shows flights_enriched stale
    assert 'class="lh-node lh-stale" data-asset="flights_enriched"' in views[1]
    assert 'class="lh-node lh-fresh" data-asset="raw_flights"' in views[1]
    printed = "\n".join(outputs(nb, "stream"))
    assert "└── raw_flights" in printed


NOTEBOOK_CHECKS = {
    "01-quickstart.ipynb": check_quickstart,
    "02-partitions-and-backfills.ipynb": check_partitions,
    "03-lineage.ipynb": check_lineage,
}


@pytest.mark.parametrize("name", sorted(NOTEBOOK_CHECKS))
def test_notebook_runs_top_to_bottom(name: str, tmp_path: Path) -> None:
    nb = execute(NOTEBOOKS / name, tmp_path)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    NOTEBOOK_CHECKS[name](nb, tmp_path)


class Kernel:
    """A real Jupyter kernel; ``run(code)`` executes one cell and returns its text output."""

    def __init__(self, cwd: Path) -> None:
        from jupyter_client.manager import start_new_kernel

        self.km, self.kc = start_new_kernel(kernel_name="python3", cwd=str(cwd))

    def run(self, code: str) -> str:
        chunks: list[str] = []
        self.mimes: list[str] = []

        def collect(msg: dict[str, Any]) -> None:
            content = msg["content"]
            if msg["msg_type"] == "stream":
                chunks.append(content["text"])
            elif msg["msg_type"] in ("execute_result", "display_data"):
                self.mimes.extend(content["data"])
                chunks.append(content["data"].get("text/plain", ""))
            elif msg["msg_type"] == "error":
                chunks.append("\n".join(content["traceback"]))

        reply = self.kc.execute_interactive(textwrap.dedent(code), output_hook=collect, timeout=300)
        text = "".join(chunks)
        assert reply["content"]["status"] == "ok", text
        return text

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


@pytest.fixture
def kernel(tmp_path: Path) -> Any:
    k = Kernel(tmp_path)
    yield k
    k.close()


CELL_V1 = """
@lh.asset
def base() -> pl.DataFrame:
    return pl.DataFrame({"x": [1, 2, 3]})

@lh.asset
def doubled(base: pl.LazyFrame) -> pl.LazyFrame:
    return base.select(pl.col("x") * 2)
"""

DOWNSTREAM_CELL = """
@lh.asset(engine="duckdb")
def total(doubled):
    return "select sum(x) as s from doubled"
"""


def test_rerunning_a_cell_with_a_changed_body_marks_it_and_downstream_stale(kernel: Kernel) -> None:
    kernel.run("import polars as pl\nimport lakehouse as lh\nlake = lh.Lakehouse('./lake')")
    kernel.run(CELL_V1)
    kernel.run(DOWNSTREAM_CELL)
    kernel.run(
        "r = lake.materialize(); assert sorted(r.materialized) == ['base', 'doubled', 'total']"
    )
    # the same cell again, unchanged: nothing is stale
    kernel.run(CELL_V1)
    assert kernel.run("print(lake.plan().height)").strip() == "0"
    # a comment and a blank line do not change the code version either
    kernel.run(CELL_V1.replace("return base.select", "# times two\n\n    return base.select"))
    assert kernel.run("print(lake.plan().height)").strip() == "0"
    # the same cell with a changed body: that asset and its downstream are stale
    kernel.run(CELL_V1.replace('pl.col("x") * 2', 'pl.col("x") * 3'))
    out = kernel.run("print(sorted(zip(lake.plan()['asset'], lake.plan()['reason'])))")
    assert out.strip() == "[('doubled', 'code_changed'), ('total', 'upstream_stale')]"
    kernel.run("r = lake.materialize(); assert sorted(r.materialized) == ['doubled', 'total']")
    assert kernel.run("print(lake.read('total')['s'][0])").strip() == "18"


def test_constants_and_helpers_from_other_cells_are_part_of_the_code_version(
    kernel: Kernel,
) -> None:
    kernel.run("import polars as pl\nimport lakehouse as lh\nlake = lh.Lakehouse('./lake')")
    kernel.run("FACTOR = 2")
    kernel.run("def scale(col):\n    return pl.col(col) * FACTOR")
    kernel.run(
        "@lh.asset\ndef scaled() -> pl.DataFrame:\n"
        "    return pl.DataFrame({'x': [1, 2]}).select(scale('x'))"
    )
    kernel.run("assert lake.materialize().materialized == ['scaled']")
    kernel.run("FACTOR = 2")  # the same value again: nothing changes
    assert kernel.run("print(lake.plan().height)").strip() == "0"
    kernel.run("FACTOR = 10")
    assert kernel.run("print(list(lake.plan()['reason']))").strip() == "['code_changed']"
    kernel.run("FACTOR = 2")
    kernel.run("def scale(col):\n    return pl.col(col) * FACTOR + 1")
    assert kernel.run("print(list(lake.plan()['reason']))").strip() == "['code_changed']"


SLOW_CELL = """
import time

@lh.asset(partitions=lh.daily(start="2024-01-01", end="2024-01-04"), partition_column="day",
          max_partitions_per_run=1)
def slow(ctx: lh.Context) -> pl.DataFrame:
    time.sleep(float(DELAY))
    return pl.DataFrame({"day": [ctx.partition.start.date()], "v": [1]})
"""


def test_progress_widget_in_jupyter_only_for_slow_runs(kernel: Kernel) -> None:
    kernel.run("import polars as pl\nimport lakehouse as lh\nDELAY = 0.6")
    kernel.run(SLOW_CELL)
    kernel.run("lh.Lakehouse('./slow-lake', assets=[slow]).materialize()")
    assert "application/vnd.jupyter.widget-view+json" in kernel.mimes
    kernel.run("DELAY = 0")
    kernel.run(SLOW_CELL)
    kernel.run("lh.Lakehouse('./quick-lake', assets=[slow]).materialize()")
    assert "application/vnd.jupyter.widget-view+json" not in kernel.mimes
