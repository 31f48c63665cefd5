"""Column-level lineage of what an asset function returned (layer 2).

Two analysers map every output column to the upstream ``asset.column`` it came from:

* **Polars**: the resolved query plan of the returned ``LazyFrame`` (or of the last
  ``LazyFrame.collect()`` whose result the function returned). The plan is reached
  through Polars' internal node traverser: ``collect(post_opt_callback=...)`` hands the
  resolved, *unoptimized* plan to a callback that walks it and raises before anything
  executes. That traverser is internal API, so the analyser runs only on the Polars
  versions in :data:`SUPPORTED_POLARS` with a known plan-format version, and answers
  ``unknown`` on any surprise.
* **DuckDB**: the SQL of the returned relation, qualified with ``sqlglot`` against the
  input views' schemas, then ``sqlglot.lineage`` per output column; columns of
  ``WHERE``/``JOIN``/``HAVING``/``QUALIFY`` (and ``ORDER BY`` under ``LIMIT``) are
  collected separately as filter/join keys.

Each edge has a kind:

``identity``
    the value is copied unchanged (a rename keeps it ``identity``).
``transformed``
    computed row by row from the source (arithmetic, casts, string functions, ``when``).
``aggregated``
    computed over many rows: aggregations, window functions (including their partition
    and order columns), cumulative and rolling functions.
``filter/join key``
    the source decides *which rows* appear (filter predicates, join keys, ``unique``
    subsets, sort keys under a limit). These edges have ``column=None``: they apply to
    the whole output.
``unknown``
    the plan could not be analysed (Python UDFs, opaque ``map_batches``, an input that
    is not an upstream table, an unsupported Polars version): never guessed.

Nothing here imports a table format or the catalog: the execution layer passes the
input tables as :class:`SourceTable` values.

The values live in ``_model``, the analysers in ``_polars`` and ``_sql``; this module
is the entry point.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from ._model import (
    AGGREGATED,
    FILTER,
    IDENTITY,
    KINDS,
    MARK,
    TRANSFORMED,
    UNKNOWN,
    ColumnEdge,
    ColumnLineage,
    SourceTable,
    mark,
    unknown_lineage,
)
from ._polars import (
    SUPPORTED_IR_MAJOR,
    SUPPORTED_POLARS,
    polars_lineage,
    polars_version_supported,
)
from ._sql import relation_lineage, sql_lineage

__all__ = [
    "AGGREGATED",
    "FILTER",
    "IDENTITY",
    "KINDS",
    "MARK",
    "SUPPORTED_IR_MAJOR",
    "SUPPORTED_POLARS",
    "TRANSFORMED",
    "UNKNOWN",
    "ColumnEdge",
    "ColumnLineage",
    "SourceTable",
    "analyse",
    "capture_collects",
    "mark",
    "polars_lineage",
    "polars_version_supported",
    "relation_lineage",
    "sql_lineage",
    "unknown_lineage",
]

# ------------------------------------------------------------------ entry point


def analyse(
    value: Any, sources: Sequence[SourceTable], *, captured: Sequence[Any] = (), con: Any = None
) -> ColumnLineage:
    """The column lineage of ``value``, a step's return value. Never raises.

    Args:
        value: what the asset function returned.
        sources: the step's input tables.
        captured: ``(LazyFrame, DataFrame)`` pairs recorded by :func:`capture_collects`
            while the function ran (finds the plan behind an eager result).
        con: the DuckDB connection of a DuckDB step (for views' schemas).
    """
    try:
        return _analyse(value, sources, captured, con)
    except Exception as exc:
        return unknown_lineage(
            _columns_of(value), "none", f"analysis failed: {type(exc).__name__}: {exc}"
        )


def _analyse(
    value: Any, sources: Sequence[SourceTable], captured: Sequence[Any], con: Any
) -> ColumnLineage:
    mod = type(value).__module__.split(".")[0]
    if mod == "polars":
        import polars as pl

        if isinstance(value, pl.LazyFrame):
            return polars_lineage(value, sources)
        if isinstance(value, pl.DataFrame):
            for lf, df in reversed(list(captured)):
                if df is value:
                    return polars_lineage(lf, sources)
            return unknown_lineage(
                value.columns,
                "polars-plan",
                "an eager DataFrame built without LazyFrame.collect(): no plan to analyse",
            )
    if mod == "duckdb" and hasattr(value, "sql_query"):
        return relation_lineage(value, sources, con)
    return unknown_lineage(
        _columns_of(value), "none", f"cannot analyse a {type(value).__qualname__} result"
    )


def _columns_of(value: Any) -> list[str]:
    try:
        if hasattr(value, "collect_schema"):
            return list(value.collect_schema().names())
        if hasattr(value, "column_names"):
            return [str(c) for c in value.column_names]
        if hasattr(value, "columns"):
            return [str(c) for c in value.columns]
        if hasattr(value, "schema") and hasattr(value.schema, "names"):
            return list(value.schema.names)
    except Exception:
        pass
    return []


# ---------------------------------------------------------- capture of collect()


_capture_lock = threading.Lock()
_capture_state: dict[str, Any] = {"count": 0, "original": None}
_capture_local = threading.local()


@contextlib.contextmanager
def capture_collects() -> Iterator[list[tuple[Any, Any]]]:
    """Record ``(LazyFrame, DataFrame)`` for every ``LazyFrame.collect()`` on this thread.

    Used while an asset function runs, so an eager result can be traced to the plan
    that produced it. Other threads are not recorded; the patch is removed when the
    last capturing thread leaves.
    """
    import polars as pl

    records: list[tuple[Any, Any]] = []
    with _capture_lock:
        if _capture_state["count"] == 0:
            original = pl.LazyFrame.collect
            _capture_state["original"] = original

            def collect(self: Any, *args: Any, **kwargs: Any) -> Any:
                result = original(self, *args, **kwargs)
                sink = getattr(_capture_local, "records", None)
                if sink is not None and isinstance(result, pl.DataFrame):
                    sink.append((self, result))
                return result

            collect.__wrapped__ = original  # type: ignore[attr-defined]
            collect.__doc__ = original.__doc__
            pl.LazyFrame.collect = collect  # type: ignore[method-assign]
        _capture_state["count"] += 1
    previous = getattr(_capture_local, "records", None)
    _capture_local.records = records
    try:
        yield records
    finally:
        _capture_local.records = previous
        with _capture_lock:
            _capture_state["count"] -= 1
            if _capture_state["count"] == 0:
                pl.LazyFrame.collect = _capture_state["original"]  # type: ignore[method-assign]
                _capture_state["original"] = None
