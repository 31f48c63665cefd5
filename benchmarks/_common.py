"""Shared by the benchmark scripts (run as ``python benchmarks/<name>.py``)."""

from __future__ import annotations

import compileall
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def compile_package() -> None:
    """Write lakehouse's bytecode before measuring, so every fresh process imports the
    package as a wheel install has it (machines that set PYTHONDONTWRITEBYTECODE would
    otherwise recompile it in each process and charge that to lakehouse)."""
    compileall.compile_dir(str(ROOT / "lakehouse"), quiet=1)
