"""The ``lakehouse`` command line: commands, --json, exit codes, 100-column tables."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lakehouse.cli import main, render_table

PROJECT = textwrap.dedent(
    """
    import polars as pl
    import lakehouse as lh

    FAIL = False

    @lh.asset(partitions=lh.daily(start="2024-01-01", end="2024-01-11"), partition_column="day")
    def events(ctx: lh.Context) -> pl.DataFrame:
        start = ctx.partition.start.date()
        days = pl.date_range(start, ctx.partition.end.date(), closed="left", eager=True)
        return pl.DataFrame({"day": days, "clicks": list(range(len(days)))})

    @lh.asset
    def totals(events: pl.LazyFrame) -> pl.LazyFrame:
        if FAIL:
            raise RuntimeError("totals exploded on purpose")
        return events.select(pl.col("clicks").sum().alias("clicks"))

    @lh.asset(engine="duckdb")
    def report(totals):
        return "select clicks * 2 as doubled from totals"
    """
)


def run(*argv: str, cwd: Path | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    old = Path.cwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        code = main(list(argv), stdout=out, stderr=err)
    finally:
        os.chdir(old)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    path = tmp_path / "pipeline_cli.py"
    path.write_text(PROJECT)
    return path


def args(project: Path, tmp_path: Path) -> list[str]:
    return ["-p", str(project), "-w", str(tmp_path / "lake")]


def assert_fits(text: str, width: int = 100) -> None:
    for line in text.splitlines():
        assert len(line) <= width, f"{len(line)} columns: {line!r}"


def test_render_table_fits_100_columns_and_keeps_short_tables_whole() -> None:
    rows = [["a" * 80, "b" * 70, 1234567], ["short", None, 3]]
    text = render_table(["first", "second", "n"], rows)
    assert_fits(text)
    assert "…" in text and "1,234,567" in text
    small = render_table(["asset", "rows"], [["x", 10]])
    assert small.splitlines()[2] == "x        10"


def test_materialize_plan_status_lineage_history(project: Path, tmp_path: Path) -> None:
    a = args(project, tmp_path)
    code, out, err = run("plan", *a)
    assert code == 0, err
    assert "3 asset(s) would run" in out and "never_materialized" in out
    assert_fits(out)

    code, out, err = run("materialize", *a)
    assert code == 0, err
    assert "materialized 3 asset(s), 10 partition(s)" in out
    assert_fits(out)

    code, out, _ = run("materialize", *a)
    assert code == 0 and out.startswith("nothing stale")

    code, out, _ = run("status", *a)
    assert code == 0 and "3 asset(s), 0 stale" in out
    assert_fits(out)

    code, out, _ = run("status", "events", *a)
    assert code == 0 and "2024-01-01..2024-01-10" in out

    code, out, _ = run("lineage", "report", *a)
    assert code == 0
    assert "└── totals" in out and "events" in out
    assert "versions that fed its current table" in out

    code, out, _ = run("history", "--select", "totals", *a)
    assert code == 0 and "materialized" in out
    assert_fits(out)


def test_json_output_on_every_command(project: Path, tmp_path: Path) -> None:
    a = [*args(project, tmp_path), "--json"]
    code, out, _ = run("plan", *a)
    assert code == 0
    plan = json.loads(out)
    assert plan["stale"] is True
    assert {i["asset"] for i in plan["items"]} == {"events", "totals", "report"}

    code, out, _ = run(
        "materialize", "--partitions", "2024-01-01..2024-01-03", "--select", "events", *a
    )
    assert code == 0
    doc = json.loads(out)
    assert doc["ok"] is True and doc["partitions_materialized"] == 3 and doc["rows_written"] == 3
    assert doc["assets"][0]["asset"] == "events"

    code, out, _ = run("status", *a)
    status = {r["asset"]: r for r in json.loads(out)["assets"]}
    assert status["events"]["stale"] is True and status["events"]["reason"] == "partition_missing"
    assert status["events"]["materialized_at"].startswith("20")  # ISO timestamps

    code, out, _ = run("status", "events", *a)
    ranges = json.loads(out)["ranges"]
    assert [(r["partitions"], r["stale"]) for r in ranges] == [
        ("2024-01-01..2024-01-03", False),
        ("2024-01-04..2024-01-10", True),
    ]

    code, out, _ = run("lineage", "totals", *a)
    lin = json.loads(out)
    assert lin["parents"] == ["events"] and lin["children"] == ["report"]
    assert lin["provenance"] == []  # totals was never materialized

    code, out, _ = run("history", "events", *a)
    assert [m["partitions"] for m in json.loads(out)["materializations"]] == [
        "2024-01-01..2024-01-03"
    ]


def test_exit_code_1_when_an_asset_fails(project: Path, tmp_path: Path) -> None:
    project.write_text(PROJECT.replace("FAIL = False", "FAIL = True"))
    code, out, err = run("materialize", *args(project, tmp_path), "--json")
    assert code == 1
    doc = json.loads(out)
    assert doc["ok"] is False and doc["assets_failed"] == ["report", "totals"]
    assert "totals exploded on purpose" in err
    # the independent part was committed
    code, out, _ = run("status", *args(project, tmp_path), "--json")
    assert {r["asset"]: r["stale"] for r in json.loads(out)["assets"]}["events"] is False


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["lineage", "nosuch"], "no such asset"),
        (["materialize", "--partitions", "2031-01-01"], "2031-01-01"),
        (["plan", "--select", "tot"], "did you mean 'totals'"),
        (["history"], "needs exactly one asset"),
    ],
)
def test_exit_code_2_on_bad_input(
    project: Path, tmp_path: Path, argv: list[str], message: str
) -> None:
    code, _, err = run(*argv, *args(project, tmp_path))
    assert code == 2
    assert message in err
    assert err.startswith("error: ")


def test_exit_code_2_for_projects_that_do_not_load(tmp_path: Path) -> None:
    code, _, err = run("plan", "-p", "no_such_module_anywhere", "-w", str(tmp_path))
    assert code == 2 and "cannot import project" in err
    broken = tmp_path / "broken_project.py"
    broken.write_text("raise ValueError('bad module')\n")
    code, _, err = run("plan", "-p", str(broken), "-w", str(tmp_path))
    assert code == 2 and "ValueError: bad module" in err
    empty = tmp_path / "empty_project.py"
    empty.write_text("x = 1\n")
    code, _, err = run("plan", "-p", str(empty), "-w", str(tmp_path))
    assert code == 2 and "declares no asset" in err
    code, _, err = run("plan", "-w", str(tmp_path), cwd=tmp_path)
    assert code == 2 and "no project" in err
    code, _, _ = run("plan", "--no-such-flag")
    assert code == 2


def test_json_errors_are_documents(project: Path, tmp_path: Path) -> None:
    code, out, _ = run("lineage", "nosuch", *args(project, tmp_path), "--json")
    assert code == 2
    error = json.loads(out)["error"]
    assert error["type"] == "UnknownAssetError" and error["asset"] == "nosuch" and error["hint"]


def test_project_and_warehouse_from_lakehouse_toml(project: Path, tmp_path: Path) -> None:
    (tmp_path / "lakehouse.toml").write_text(
        f'project = "{project.name}"\nwarehouse = "from-toml"\n'
    )
    sub = tmp_path / "deeper" / "folder"
    sub.mkdir(parents=True)
    code, out, err = run(
        "materialize", "--select", "events", "--partitions", "2024-01-05", cwd=tmp_path
    )
    assert code == 0, err
    assert (tmp_path / "from-toml" / "events").is_dir()
    # from a sub-folder the same file is found, and the relative warehouse stays next to it
    code, out, err = run("status", "--json", cwd=sub)
    assert code == 0, err
    assert json.loads(out)["assets"][0]["rows"] == 1


def test_module_attr_naming_a_lakehouse(tmp_path: Path) -> None:
    pkg = tmp_path / "cli_attr_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    where = str(tmp_path / "attr-lake")
    (pkg / "defs.py").write_text(
        PROJECT + f"\nlake = lh.Lakehouse({where!r}, assets=[events, totals, report])\n"
    )
    code, out, err = run("plan", "-p", "cli_attr_pkg.defs:lake", "--json", cwd=tmp_path)
    assert code == 0, err
    assert {i["asset"] for i in json.loads(out)["items"]} == {"events", "totals", "report"}
    code, _, err = run("plan", "-p", "cli_attr_pkg.defs:lake", "-w", str(tmp_path), cwd=tmp_path)
    assert code == 2 and "has its own warehouse" in err


def test_python_dash_m_and_console_script(project: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "lakehouse", "plan", *args(project, tmp_path), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["stale"] is True
    proc = subprocess.run(
        [sys.executable, "-m", "lakehouse", "--version"], capture_output=True, text=True
    )
    assert proc.returncode == 0 and proc.stdout.startswith("lakehouse ")
    script = shutil.which(
        "lakehouse", path=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]
    )
    assert script is not None, "the console script is not installed: pip install -e ."
    proc = subprocess.run(
        [script, "lineage", "nosuch", *args(project, tmp_path)], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "no such asset" in proc.stderr
