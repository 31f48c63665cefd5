"""The documentation site builds with ``mkdocs build --strict`` (offline)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.docs
def test_mkdocs_build_strict(tmp_path):
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
         "-d", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, f"mkdocs build failed:\n{proc.stdout}\n{proc.stderr}"
    assert (site / "index.html").is_file()
    assert (site / "reference" / "index.html").is_file()
    changelog = (site / "changelog" / "index.html").read_text()
    assert "Unreleased" in changelog  # CHANGELOG.md was included by the snippets extension


# --------------------------------------------------------------------- pages and their examples

DOCS = ROOT / "docs"
# Pages whose ```python blocks run top to bottom as a test (```py blocks are illustrations
# that need servers or schedulers, and are not run).
RUNNABLE = ["configuration.md", "notebooks.md", "lineage.md"]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    config = str(ROOT / "mkdocs.yml")
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", config, "-d", str(out)]
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"mkdocs build failed:\n{proc.stdout}\n{proc.stderr}"
    return out


@pytest.mark.docs
def test_site_has_every_section_of_the_issue(site: Path) -> None:
    pages = ("quickstart", "concepts", "cli", "configuration", "schedulers", "notebooks",
             "comparison", "architecture", "reference", "partitions")  # fmt: skip
    for page in pages:
        assert (site / page / "index.html").is_file(), page
    concepts = (site / "concepts" / "index.html").read_text()
    anchors = ("assets", "staleness", "partitions", "write-modes", "checks", "lineage",
               "the-catalog")  # fmt: skip
    for anchor in anchors:
        assert f'id="{anchor}"' in concepts, anchor
    reference = (site / "reference" / "index.html").read_text()
    names = ("lakehouse.api.Lakehouse.materialize", "lakehouse.config.Settings",
             "lakehouse.notebook.graph_svg", "lakehouse.cli.main",
             "lakehouse.checks.not_null")  # fmt: skip
    for name in names:
        assert f'id="{name}"' in reference, name
    comparison = (site / "comparison" / "index.html").read_text()
    for tool in ("Dagster", "SQLMesh", "dbt", "Hamilton"):
        assert f'id="{tool.lower()}"' in comparison, tool


@pytest.mark.docs
def test_quickstart_page_is_the_notebook_without_its_asserts(site: Path) -> None:
    import html
    import json
    import re

    page = (site / "quickstart" / "index.html").read_text()
    article = page[page.find("<article") : page.find("</article>")]
    text = html.unescape(re.sub(r"<[^>]+>", "", article))
    nb = json.loads((ROOT / "notebooks" / "01-quickstart.ipynb").read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        for line in "".join(cell["source"]).splitlines():
            top_level = line.strip() and not line.startswith((" ", ")", "}", "]"))
            if top_level and not line.startswith("assert"):
                assert line.strip() in text, line
    assert not re.search(r"^\s*assert ", text, re.M)
    assert "notebook:" not in text  # the marker was replaced


@pytest.mark.docs
@pytest.mark.parametrize("page", RUNNABLE)
def test_page_examples_run(
    page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import re

    text = (DOCS / page).read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks, f"{page} has no runnable examples"
    monkeypatch.chdir(tmp_path)
    for key in [k for k in os.environ if k.startswith("LAKEHOUSE_")]:
        monkeypatch.delenv(key)
    namespace: dict[str, object] = {"__name__": f"docs_{page.replace('.', '_')}"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"{page}[{i}]", "exec"), namespace)
    out = capsys.readouterr().out
    # a ```text block right after a python block shows its output
    for expected in re.findall(r"```python\n.*?```\n\n```text\n(.*?)```", text, re.S):
        assert expected.strip() in out, expected
