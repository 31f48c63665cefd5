"""The HTML views render in a real browser (headless Debian chromium) and are not blank.

Screenshots are kept under ``test-artifacts/browser/`` for a human (or CI) to look at.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import lakehouse as lh
from lakehouse import _html
from lakehouse.assets import AssetSpec
from lakehouse.graph import AssetGraph
from lakehouse.notebook import graph_svg

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "browser"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail(
        "no chromium: install it with `apt-get install -y chromium` (the browser tier needs it)"
    )


def screenshot(html: str, name: str, size: tuple[int, int] = (1280, 900)) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = ARTIFACTS / f"{name}.html"
    page.write_text(
        f'<!doctype html><html><head><meta charset="utf-8"></head><body>{html}</body></html>'
    )
    png = ARTIFACTS / f"{name}.png"
    png.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                chromium(),
                *FLAGS,
                f"--user-data-dir={profile}",
                f"--screenshot={png}",
                f"--window-size={size[0]},{size[1]}",
                page.as_uri(),
            ],
            capture_output=True,
            timeout=120,
            check=False,
        )
    assert png.is_file(), f"chromium wrote no screenshot for {name}"
    return png


def ink(png: Path) -> tuple[float, int]:
    """(share of pixels that are not background, number of distinct colours)."""
    from PIL import Image

    img = Image.open(png).convert("RGB")
    pixels = rgb_pixels(img.resize((img.width // 2, img.height // 2)))
    background = max(set(pixels), key=pixels.count)
    share = sum(1 for p in pixels if p != background) / len(pixels)
    return share, len(set(pixels))


def colour_present(png: Path, rgb: tuple[int, int, int], tolerance: int = 12) -> bool:
    from PIL import Image

    img = Image.open(png).convert("RGB")
    return any(
        all(abs(a - b) <= tolerance for a, b in zip(p, rgb, strict=True))
        for p in set(rgb_pixels(img))
    )


def rgb_pixels(img: Any) -> list[tuple[int, int, int]]:
    data = img.tobytes()
    return [(data[i], data[i + 1], data[i + 2]) for i in range(0, len(data), 3)]


@pytest.fixture(scope="module")
def demo_lake(tmp_path_factory: pytest.TempPathFactory) -> lh.Lakehouse:
    @lh.asset(partitions=lh.daily(start="2024-01-01", end="2024-01-11"), partition_column="day")
    def b_events(ctx: lh.Context) -> pl.DataFrame:
        days = pl.date_range(
            ctx.partition.start.date(), ctx.partition.end.date(), closed="left", eager=True
        )
        return pl.DataFrame({"day": days, "clicks": list(range(len(days)))})

    @lh.asset
    def b_users() -> pl.DataFrame:
        return pl.DataFrame({"user": ["a", "b"], "country": ["fr", "nz"]})

    @lh.asset
    def b_daily(b_events: pl.LazyFrame, b_users: pl.LazyFrame) -> pl.LazyFrame:
        return b_events.join(b_users, how="cross").group_by("country").agg(pl.col("clicks").sum())

    @lh.asset(engine="duckdb")
    def b_report(b_daily):
        return "select * from b_daily order by clicks desc"

    lake = lh.Lakehouse(
        str(tmp_path_factory.mktemp("browser") / "lake"),
        assets=[b_events, b_users, b_daily, b_report],
    )
    lake.materialize(
        partitions="2024-01-01..2024-01-06"
    )  # half of the days: b_events is partly stale
    return lake


def test_lakehouse_view_renders(demo_lake: lh.Lakehouse) -> None:
    png = screenshot(demo_lake._repr_html_(), "lakehouse")
    share, colours = ink(png)
    assert share > 0.02 and colours > 20, (share, colours)
    assert colour_present(png, (0xFE, 0xF3, 0xC7))  # a stale (amber) node is visible
    assert colour_present(png, (0xDC, 0xFC, 0xE7))  # a fresh (green) node is visible


def test_lineage_and_run_result_views_render(demo_lake: lh.Lakehouse) -> None:
    png = screenshot(demo_lake.lineage("b_daily")._repr_html_(), "lineage")
    share, colours = ink(png)
    assert share > 0.01 and colours > 20, (share, colours)
    result = demo_lake.materialize()
    png = screenshot(result._repr_html_(), "run-result")
    share, colours = ink(png)
    assert share > 0.01, share


def test_status_and_plan_frames_render(demo_lake: lh.Lakehouse) -> None:
    frame = demo_lake.status()
    png = screenshot(frame._repr_html_(), "status")
    assert ink(png)[0] > 0.01


def test_graph_of_200_assets_renders_readably() -> None:
    import random

    rnd = random.Random(11)
    specs, names = [], []
    for i in range(200):
        name = f"asset_{i:03d}"
        window = names[-25:]
        specs.append(
            AssetSpec(
                name,
                None,
                lambda: None,
                deps=tuple(rnd.sample(window, k=min(len(window), rnd.randint(0, 3)))),
            )
        )
        names.append(name)
    graph = AssetGraph(specs)
    stale = {k: ("code_changed", k) for k in names[::5]}
    svg = graph_svg(graph, stale=stale)
    png = screenshot(_html.view("200 assets", svg), "graph-200", size=(1600, 1200))
    share, colours = ink(png)
    assert share > 0.05 and colours > 20, (share, colours)
    assert colour_present(png, (0xFE, 0xF3, 0xC7))
