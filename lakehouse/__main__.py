"""``python -m lakehouse``: the same command line as the ``lakehouse`` script."""

from __future__ import annotations

from lakehouse.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
