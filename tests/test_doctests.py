"""Every example in a docstring of the ``lakehouse`` package runs as a doctest."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from pathlib import Path

import pytest

import lakehouse

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(lakehouse.__path__, prefix="lakehouse.")
    if not info.name.endswith("__main__")
)


def test_modules_are_found() -> None:
    assert {
        "lakehouse.config",
        "lakehouse.cli",
        "lakehouse.notebook",
        "lakehouse.partitions",
    } <= set(MODULES)


@pytest.mark.parametrize("name", ["lakehouse", *MODULES])
def test_docstring_examples(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    for key in [k for k in __import__("os").environ if k.startswith("LAKEHOUSE_")]:
        monkeypatch.delenv(key)
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    tests = finder.find(module, name)  # each test gets a copy of the module globals
    for test in tests:
        runner.run(test)
    results = runner.summarize(verbose=False)
    assert results.failed == 0, (
        f"{results.failed} of {results.attempted} docstring examples of {name} failed"
    )
