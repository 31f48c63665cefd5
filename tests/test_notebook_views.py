"""HTML views (Lakehouse, lineage, RunResult), the SVG asset graph, and progress bars."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lakehouse as lh
from lakehouse.assets import AssetSpec
from lakehouse.graph import AssetGraph
from lakehouse.notebook import NODE_H, graph_svg, layout

SVG = "{http://www.w3.org/2000/svg}"


def random_graph(n: int, seed: int, max_parents: int = 3) -> AssetGraph:
    import random

    rnd = random.Random(seed)
    specs: list[AssetSpec] = []
    names: list[str] = []
    for i in range(n):
        name = f"asset_{i:03d}"
        window = names[-25:]
        ups = tuple(rnd.sample(window, k=min(len(window), rnd.randint(0, max_parents))))
        specs.append(AssetSpec(name, None, lambda: None, deps=ups))
        names.append(name)
    return AssetGraph(specs)


def nodes(svg: str) -> dict[str, tuple[float, float, float, float, str]]:
    """``{asset: (x, y, w, h, class)}`` of every node of an SVG graph."""
    root = ET.fromstring(svg)
    out = {}
    for g in root.iter(f"{SVG}g"):
        rect = g.find(f"{SVG}rect")
        assert rect is not None
        out[g.attrib["data-asset"]] = (
            float(rect.attrib["x"]),
            float(rect.attrib["y"]),
            float(rect.attrib["width"]),
            float(rect.attrib["height"]),
            g.attrib["class"],
        )
    return out


def test_graph_of_200_assets_is_readable() -> None:
    graph = random_graph(200, seed=3)
    stale = {k: ("code_changed", k) for k in list(graph.order)[::7]}
    svg = graph_svg(graph, stale=stale)
    root = ET.fromstring(svg)
    found = nodes(svg)
    assert set(found) == set(graph.order)  # every asset drawn exactly once
    # fixed, readable sizes: the SVG grows (and scrolls) instead of shrinking its text
    assert root.attrib["font-size"] == "12"
    assert float(root.attrib["width"]) == float(root.attrib["viewBox"].split()[2])
    assert all(h == NODE_H for (_, _, _, h, _) in found.values())
    # no two nodes overlap
    boxes = sorted(found.values())
    for i, (x, y, w, h, _) in enumerate(boxes):
        for x2, y2, _, h2, _ in boxes[i + 1 :]:
            if x2 >= x + w:
                break
            assert y2 >= y + h or y >= y2 + h2, "nodes overlap"
    # stale assets are coloured, the others are not
    assert {k for k, v in found.items() if "lh-stale" in v[4]} == set(stale)
    # every label is in the document (full names up to 30 characters)
    texts = {t.text for t in root.iter(f"{SVG}text")}
    assert set(graph.order) <= texts
    # one path per edge
    assert len(list(root.iter(f"{SVG}path"))) - 1 == len(graph.edges())  # minus the arrow marker


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=60), st.integers(min_value=0, max_value=10_000))
def test_layout_puts_every_asset_right_of_its_upstreams(n: int, seed: int) -> None:
    graph = random_graph(n, seed)
    pos = layout(list(graph.order), graph.parents)
    for up, down in graph.edges():
        assert pos[up][0] < pos[down][0]
    cells = [(lay, row) for lay, row in pos.values()]
    assert len(cells) == len(set(cells))  # one node per slot
    for lay in {lay for lay, _ in cells}:
        rows = sorted(row for l2, row in cells if l2 == lay)
        assert rows == list(range(len(rows)))


@pytest.fixture
def lake(tmp_path: Path) -> lh.Lakehouse:
    @lh.asset(partitions=lh.daily(start="2024-01-01", end="2024-01-06"), partition_column="day")
    def views_raw(ctx: lh.Context) -> pl.DataFrame:
        days = pl.date_range(
            ctx.partition.start.date(), ctx.partition.end.date(), closed="left", eager=True
        )
        return pl.DataFrame({"day": days, "v": list(range(len(days)))})

    @lh.asset
    def views_total(views_raw: pl.LazyFrame) -> pl.LazyFrame:
        return views_raw.select(pl.col("v").sum())

    @lh.asset
    def views_other() -> pl.DataFrame:
        return pl.DataFrame({"a": [1]})

    return lh.Lakehouse(str(tmp_path / "lake"), assets=[views_raw, views_total, views_other])


def test_lakehouse_view_shows_where_counts_graph_and_state(lake: lh.Lakehouse) -> None:
    html = lake._repr_html_()
    assert lake.settings.warehouse_uri in html and "catalog.db" in html
    assert "3 (1 partitioned)" in html and "3 of 3" in html  # all stale before the first run
    assert html.count("<svg") == 1 and 'data-asset="views_total"' in html
    assert "daily · 5" in html  # partition summary on the node
    lake.materialize(partitions="2024-01-01..2024-01-03")
    html = lake._repr_html_()
    assert 'class="lh-node lh-stale" data-asset="views_raw"' in html
    assert "daily · 2/5 stale" in html
    assert 'class="lh-node lh-fresh" data-asset="views_other"' in html


def test_lineage_and_run_result_views(lake: lh.Lakehouse) -> None:
    result = lake.materialize()
    rhtml = result._repr_html_()
    assert "3 materialized" in rhtml and "views_raw" in rhtml
    lin = lake.lineage("views_total")._repr_html_()
    found = nodes(re.search(r"<svg.*</svg>", lin, re.S).group(0))  # type: ignore[union-attr]
    assert set(found) == {"views_raw", "views_total"}  # only the relatives
    assert all("lh-fresh" in v[4] for v in found.values())
    assert "1 upstream, 0 downstream" in lin


def test_views_never_raise(lake: lh.Lakehouse, tmp_path: Path) -> None:
    db = Path(lake.settings.catalog_url.removeprefix("sqlite:///"))
    lake.materialize()
    lake.close()
    db.write_bytes(b"this is not a database")
    html = lake._repr_html_()
    assert "state unavailable" in html and "<svg" in html


# ------------------------------------------------------------------------------ progress

SLOW_PROJECT = textwrap.dedent(
    """
    import sys, tempfile, time
    import polars as pl
    import lakehouse as lh

    @lh.asset(partitions=lh.daily(start="2024-01-01", end="2024-01-05"), partition_column="day",
              max_partitions_per_run=1)
    def slow(ctx: lh.Context) -> pl.DataFrame:
        time.sleep(float(sys.argv[2]))
        return pl.DataFrame({"day": [ctx.partition.start.date()], "v": [1]})

    progress = {"none": None, "true": True, "false": False}[sys.argv[1]]
    lh.Lakehouse(tempfile.mkdtemp(), assets=[slow]).materialize(progress=progress)
    print("done")
    """
)


def run_script(
    tmp_path: Path, progress: str, sleep: float, *, tty: bool, env: dict[str, str] | None = None
) -> str:
    script = tmp_path / "slow_run.py"
    script.write_text(SLOW_PROJECT)
    full_env = dict(os.environ)
    full_env.pop("TQDM_DISABLE", None)
    full_env.update(env or {})
    cmd = [sys.executable, str(script), progress, str(sleep)]
    if not tty:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=300)
        assert proc.returncode == 0, proc.stderr
        return proc.stderr
    # stderr on a pseudo-terminal of 100 columns
    import fcntl
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
    proc2 = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=slave, env=full_env)
    os.close(slave)
    data = b""
    deadline = time.time() + 300
    while time.time() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            data += chunk
        elif proc2.poll() is not None:
            break
    proc2.wait(timeout=60)
    os.close(master)
    assert proc2.returncode == 0, data.decode(errors="replace")
    return data.decode(errors="replace")


def test_progress_bar_on_a_terminal_only_for_runs_longer_than_a_second(tmp_path: Path) -> None:
    slow = run_script(tmp_path, "none", 0.6, tty=True)
    assert "materialize:" in slow and "step" in slow
    quick = run_script(tmp_path, "none", 0.0, tty=True)
    assert "materialize:" not in quick
    disabled = run_script(tmp_path, "none", 0.6, tty=True, env={"TQDM_DISABLE": "1"})
    assert "materialize:" not in disabled


def test_progress_bar_silent_when_not_a_terminal_unless_asked(tmp_path: Path) -> None:
    assert "materialize:" not in run_script(tmp_path, "none", 0.4, tty=False)
    asked = run_script(tmp_path, "true", 0.0, tty=False)
    assert "materialize:" in asked and "4/4" in asked
    assert "materialize:" not in run_script(tmp_path, "false", 0.6, tty=True)
