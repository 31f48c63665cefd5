"""MkDocs hook: render an example notebook into a page.

A page that contains ``<!-- notebook: notebooks/01-quickstart.ipynb -->`` gets the
notebook's cells in its place: markdown cells as they are, code cells as Python blocks.
The ``assert`` statements (which make the notebooks self-checking in the test suite) are
left out of the page, so the docs show the code a user types. The notebook stays the one
source: the docs never drift from what the tests execute.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

MARKER = re.compile(r"<!--\s*notebook:\s*(\S+)\s*-->")


def without_asserts(source: str) -> str:
    """``source`` without its top-level ``assert`` statements (and without blank runs)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source
    drop: set[int] = set()
    for node in tree.body:
        if isinstance(node, ast.Assert):
            drop.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    lines = [line for i, line in enumerate(source.splitlines(), start=1) if i not in drop]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n")


def render(path: Path) -> str:
    nb = json.loads(path.read_text())
    parts: list[str] = []
    for cell in nb["cells"]:
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if cell["cell_type"] == "markdown":
            # the notebook's own title duplicates the page's
            parts.append(re.sub(r"^# .*\n?", "", source, count=1) if not parts else source)
        elif cell["cell_type"] == "code":
            code = without_asserts(source)
            if code:
                parts.append(f"```python\n{code}\n```")
    return "\n\n".join(p.strip("\n") for p in parts if p.strip())


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    root = Path(config["config_file_path"]).parent

    def replace(match: re.Match[str]) -> str:
        path = root / match.group(1)
        if not path.is_file():
            raise FileNotFoundError(
                f"{page.file.src_path}: notebook {match.group(1)} does not exist"
            )
        return render(path)

    return MARKER.sub(replace, markdown)
