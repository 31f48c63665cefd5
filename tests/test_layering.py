"""The layering rules of DESIGN.md §3, checked on the source: each module imports only
from its own layer or the layers above it, and adapters never import each other."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "lakehouse"

LAYERS = {
    "errors": 0,
    "config": 0,
    "_plugins": 0,
    "_html": 0,
    "_logging": 0,
    "assets": 1,
    "partitions": 1,
    "checks": 1,
    "graph": 1,
    "fingerprint": 1,
    "sources": 1,
    "engines": 2,
    "storage": 2,
    "catalog": 2,
    "plan": 3,
    "execution": 4,
}
FRONT = 5  # api, cli, notebook, testing, views, examples, ...
HEAVY = (
    "polars",
    "duckdb",
    "deltalake",
    "pyarrow",
    "sqlalchemy",
    "pyiceberg",
    "dask",
    "distributed",
    "pandas",
)


def layer_of(module: str) -> tuple[int, str]:
    top = module.split(".")[1] if module.startswith("lakehouse.") else module
    return LAYERS.get(top, FRONT), top


def modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append((".".join(parts), path))
    return out


def imports(module: str, path: Path) -> list[tuple[str, bool]]:
    """(imported module, at module top level) for every lakehouse/third-party import."""
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: list[tuple[str, bool]] = []
    top_level = {id(n) for n in tree.body}
    type_checking: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            type_checking.update(id(n) for n in ast.walk(node))
    for node in ast.walk(tree):
        if id(node) in type_checking:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append((alias.name, id(node) in top_level))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
                if node.module is None:
                    found.extend((f"{name}.{a.name}", id(node) in top_level) for a in node.names)
                    continue
            else:
                name = node.module or ""
            found.append((name, id(node) in top_level))
    return found


@pytest.mark.parametrize(
    ("module", "path"), modules(), ids=lambda v: str(v) if isinstance(v, str) else ""
)
def test_module_respects_layers(module: str, path: Path) -> None:
    my_layer, my_top = layer_of(module)
    for name, top_level in imports(module, path):
        if name.startswith("lakehouse"):
            if name == "lakehouse":
                continue
            layer, top = layer_of(name)
            assert layer <= my_layer, f"{module} (layer {my_layer}) imports {name} (layer {layer})"
            if my_layer == 2 and layer == 2:
                assert top == my_top, f"adapter {module} imports another adapter {name}"
        elif my_layer <= 1 and name.split(".")[0] in HEAVY:
            assert not top_level, f"{module} (layer {my_layer}) imports {name} at module level"


def test_checker_catches_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "lakehouse" / "graph.py"
    bad.parent.mkdir()
    bad.write_text("from .api import Lakehouse\n")
    found = imports("lakehouse.graph", bad)
    assert ("lakehouse.api", True) in found
    assert layer_of("lakehouse.api")[0] > layer_of("lakehouse.graph")[0]


def test_import_is_light() -> None:
    code = (
        "import sys, lakehouse, lakehouse as lh\n"
        "heavy = [m for m in %r if m in sys.modules]\n"
        "print(','.join(heavy))\n" % (HEAVY,)
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PKG.parent
    ).stdout.strip()
    assert out == "", f"import lakehouse pulled in: {out}"


def test_a_polars_run_on_delta_does_not_import_pandas(tmp_path: Path) -> None:
    """pandas costs ~0.3 s to import; a run that never hands a user pandas must not pay it
    (pyarrow imports it for some calls, e.g. ``Schema.empty_table()``)."""
    code = (
        "import sys, polars as pl, lakehouse as lh\n"
        "@lh.asset\n"
        "def up() -> pl.DataFrame:\n"
        "    return pl.DataFrame({'x': [1, 2], 'c': pl.Series(['a', 'b'], dtype=pl.Categorical)})\n"
        "@lh.asset\n"
        "def down(up: pl.LazyFrame) -> pl.LazyFrame:\n"
        "    return up.select(pl.col('x') * 2)\n"
        "lake = lh.Lakehouse(sys.argv[1], assets=[up, down])\n"
        "assert lake.materialize().ok and sorted(lake.read('down')['x']) == [2, 4]\n"
        "print('pandas' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "lake")],
        capture_output=True,
        text=True,
        check=True,
        cwd=PKG.parent,
    ).stdout.strip()
    assert out == "False"
