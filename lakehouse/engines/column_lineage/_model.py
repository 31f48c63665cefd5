"""The values of column lineage: edge kinds, edges, results, input tables."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

IDENTITY = "identity"
TRANSFORMED = "transformed"
AGGREGATED = "aggregated"
FILTER = "filter/join key"
UNKNOWN = "unknown"
#: Every kind, in the order of increasing distance from the source value.
KINDS = (IDENTITY, TRANSFORMED, AGGREGATED, FILTER, UNKNOWN)
_RANK = {IDENTITY: 0, TRANSFORMED: 1, AGGREGATED: 2}


# ---------------------------------------------------------------------------- values


@dataclass(frozen=True)
class ColumnEdge:
    """One source of one output column.

    ``column`` is ``None`` for a filter/join key (it decides which rows exist);
    ``source_asset``/``source_column`` are ``None`` for an ``unknown`` edge.
    """

    column: str | None
    source_asset: str | None
    source_column: str | None
    kind: str


@dataclass(frozen=True)
class ColumnLineage:
    """The column lineage of one asset's code version."""

    edges: tuple[ColumnEdge, ...]
    analyser: str
    note: str | None = None

    def to_json(self) -> str:
        """Compact JSON as the catalog stores it."""
        return json.dumps(
            {
                "analyser": self.analyser,
                "note": self.note,
                "edges": [[e.column, e.source_asset, e.source_column, e.kind] for e in self.edges],
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str | None) -> ColumnLineage | None:
        if not text:
            return None
        data = json.loads(text)
        edges = tuple(ColumnEdge(*row) for row in data.get("edges", []))
        return cls(edges, data.get("analyser", ""), data.get("note"))

    def rows(self) -> list[dict[str, Any]]:
        """``column, source_asset, source_column, kind`` dicts."""
        return [
            {
                "column": e.column,
                "source_asset": e.source_asset,
                "source_column": e.source_column,
                "kind": e.kind,
            }
            for e in self.edges
        ]

    @property
    def columns(self) -> list[str]:
        """Output columns with at least one edge, in order."""
        seen: dict[str, None] = {}
        for e in self.edges:
            if e.column is not None:
                seen.setdefault(e.column, None)
        return list(seen)


@dataclass(frozen=True)
class SourceTable:
    """One input table of a step, as the analysers see it.

    Attributes:
        asset: the upstream asset key.
        uri: the table's root URI: data files below it belong to this asset.
        name: the name the input has inside the function (parameter / DuckDB view).
        token: the value of the :func:`mark` put on the input's LazyFrame.
        schema: ``{column: type text}`` (used for SQL analysis).
    """

    asset: str
    uri: str
    name: str | None = None
    token: str | None = None
    schema: Mapping[str, str] = field(default_factory=dict)


#: Name of the marker column :func:`mark` adds and drops again.
MARK = "__lakehouse_source__"


def mark(lf: Any, token: str) -> Any:
    """``lf`` with a marker naming its table in the unoptimized plan.

    The marker is a literal column added and dropped again: the optimizer removes it,
    so execution is unchanged, while the analyser finds the input behind it even when
    the scan itself cannot be inspected (Python dataset scans such as pyiceberg's).
    """
    import polars as pl

    return lf.with_columns(pl.lit(token).alias(MARK)).drop(MARK)


def unknown_lineage(columns: Sequence[str], analyser: str, note: str) -> ColumnLineage:
    """Every column ``unknown``, with the reason."""
    return ColumnLineage(tuple(ColumnEdge(c, None, None, UNKNOWN) for c in columns), analyser, note)


# --------------------------------------------------- shared by the analysers


SrcCol = tuple[str | None, str | None]
_UNKNOWN_SRC: SrcCol = (None, None)


@dataclass
class _Frame:
    """Lineage of every column of one plan node, plus its filter/join keys."""

    cols: dict[str, dict[SrcCol, str]]
    indirect: dict[SrcCol, None] = field(default_factory=dict)

    def unknown(self, name: str) -> dict[SrcCol, str]:
        return self.cols.get(name, {_UNKNOWN_SRC: UNKNOWN})


def _max_kind(a: str, b: str) -> str:
    if UNKNOWN in (a, b):
        return UNKNOWN
    return a if _RANK[a] >= _RANK[b] else b


def _to_lineage(frame: _Frame, names: Sequence[str], analyser: str) -> ColumnLineage:
    edges: list[ColumnEdge] = []
    notes = []
    for name in names:
        srcs = frame.unknown(name)
        for (asset, col), kind in sorted(
            srcs.items(), key=lambda kv: (kv[0][0] or "~", kv[0][1] or "")
        ):
            if kind == UNKNOWN or asset is None:
                edges.append(ColumnEdge(name, None, None, UNKNOWN))
                notes.append(name)
            else:
                edges.append(ColumnEdge(name, asset, col, kind))
    for asset, col in frame.indirect:
        if asset is not None:
            edges.append(ColumnEdge(None, asset, col, FILTER))
    unique = tuple(dict.fromkeys(edges))
    note = f"unknown columns: {', '.join(dict.fromkeys(notes))}" if notes else None
    return ColumnLineage(unique, analyser, note)
