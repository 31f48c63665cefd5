"""Structured logging (layer 0): every record of the ``lakehouse`` logger carries
``run_id``, ``asset`` and ``partition`` attributes, and the library is quiet by default.

The attributes come from context variables that the coordinator and each step set
(:func:`bind`); records logged outside a run carry ``None``. Nothing is printed unless
the application configures logging, e.g.::

    import logging
    logging.basicConfig(format="%(levelname)s %(run_id)s %(asset)s %(partition)s %(message)s")
    logging.getLogger("lakehouse").setLevel(logging.INFO)

>>> import logging
>>> rec = logging.LogRecord("lakehouse", logging.INFO, __file__, 1, "hello", None, None)
>>> with bind(run_id="r1", asset="orders"):
...     _ = ContextFilter().filter(rec)
>>> rec.run_id, rec.asset, rec.partition
('r1', 'orders', None)
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterator

LOGGER_NAME = "lakehouse"
FIELDS = ("run_id", "asset", "partition")

_run_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "lakehouse_run_id", default=None
)
_asset: contextvars.ContextVar[str | None] = contextvars.ContextVar("lakehouse_asset", default=None)
_partition: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "lakehouse_partition", default=None
)
_VARS = {"run_id": _run_id, "asset": _asset, "partition": _partition}


class ContextFilter(logging.Filter):
    """Fills ``run_id``, ``asset`` and ``partition`` on records that do not set them."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _VARS.items():
            if getattr(record, name, None) is None:
                setattr(record, name, var.get())
        return True


_FILTER = ContextFilter()


def install() -> logging.Logger:
    """Attach the context filter and a ``NullHandler`` to the ``lakehouse`` logger (idempotent)."""
    logger = logging.getLogger(LOGGER_NAME)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
        logger.addHandler(logging.NullHandler())
    return logger


@contextlib.contextmanager
def bind(**values: str | None) -> Iterator[None]:
    """Set ``run_id``/``asset``/``partition`` for records logged inside the block."""
    tokens = []
    for name, value in values.items():
        if name not in _VARS:
            raise TypeError(f"unknown log field {name!r}; use one of {FIELDS}")
        tokens.append((_VARS[name], _VARS[name].set(value)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def current() -> dict[str, str | None]:
    """The bound fields."""
    return {name: var.get() for name, var in _VARS.items()}


def get_logger() -> logging.Logger:
    """The ``lakehouse`` logger, with the context filter installed."""
    return install()
