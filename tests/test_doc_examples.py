"""The python examples of the docs pages run top to bottom (each page in one namespace)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGES = ["partitions.md"]


@pytest.mark.parametrize("page", PAGES)
def test_page_examples_run(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    text = (DOCS / page).read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks, f"{page} has no python examples"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": f"docs_{page.replace('.', '_')}"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"{page}[{i}]", "exec"), namespace)  # noqa: S102
        # every "# [...]" comment right after a print shows the expected output
    out = capsys.readouterr().out
    for expected in re.findall(r"^# (\[.*\])$", text, re.M):
        assert expected in out, expected
    if page == "partitions.md":
        assert "2013-01-01..2013-01-31" in out
        assert "\n0\n" in out and "\n9\n" in out
