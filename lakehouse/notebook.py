"""Jupyter views: the asset graph as SVG, and the HTML of ``Lakehouse`` and ``Lineage``.

Every object a notebook shows renders itself (``_repr_html_``): a ``Lakehouse`` (where it
is, how many assets, the graph and a table of assets), ``lake.lineage(name)`` (the graph
around one asset), a ``RunResult``; ``plan()``, ``status()`` and ``history()`` return Polars
DataFrames, which Jupyter renders as tables.

The graph is laid out left to right in layers (an asset sits one layer right of its
deepest upstream); within a layer, assets are ordered to keep edges short (barycenter
sweeps). Nodes keep a fixed, readable size whatever the number of assets: a large graph
scrolls inside its frame instead of shrinking. Stale assets are amber, fresh ones green,
assets whose last run failed a blocking check red; partitioned assets show their
partition count and how many are stale.

>>> from lakehouse.assets import AssetSpec
>>> from lakehouse.graph import AssetGraph
>>> a = AssetSpec("a", None, lambda: None)
>>> g = AssetGraph([a, AssetSpec("b", None, lambda a: None, deps=("a",))])
>>> svg = graph_svg(g, stale={"b": ("code_changed", None)})
>>> svg.startswith("<svg") and ">a</text>" in svg and "code_changed" in svg
True
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import _html

if TYPE_CHECKING:  # pragma: no cover
    from .api import Lakehouse, Lineage
    from .graph import AssetGraph
    from .partitions import PartitionsDefinition

# Geometry (px). Fixed sizes keep labels readable at any graph size.
NODE_H = 38
V_GAP = 12
H_GAP = 56
PAD = 16
CHAR_W = 7.0  # average width of a 12px sans-serif character
MAX_LABEL = 30
MIN_NODE_W = 110

COLOURS = {
    "fresh": ("#dcfce7", "#16a34a"),
    "stale": ("#fef3c7", "#d97706"),
    "failed": ("#fee2e2", "#dc2626"),
    "unknown": ("#f3f4f6", "#6b7280"),
}
FAILED_REASONS = ("check_failed", "failed")


@dataclass
class NodeState:
    """What the graph shows about one asset."""

    state: str = "unknown"  # fresh | stale | failed | unknown
    reason: str | None = None
    cause: str | None = None
    stale_partitions: int = 0


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _clip(text: str, n: int = MAX_LABEL) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def partition_summary(defn: PartitionsDefinition | None, stale: int = 0) -> str:
    """A short text for a node: ``daily · 365``, or ``daily · 2/365 stale`` when some are.

    >>> from lakehouse.partitions import daily
    >>> partition_summary(daily("2013-01-01", "2014-01-01"), stale=2)
    'daily · 2/365 stale'
    """
    if defn is None:
        return ""
    kind = getattr(defn, "granularity", None)
    if kind is None:
        dims = getattr(defn, "dims", None)
        kind = (
            " × ".join(str(getattr(d, "granularity", "static")) for _, d in dims)
            if dims
            else "static"
        )
    try:
        n = f"{defn.count():,}"
    except Exception:  # an open-ended definition counted at a bad time: still draw
        n = "?"
    return f"{kind} · {stale:,}/{n} stale" if stale else f"{kind} · {n}"


def layout(keys: Sequence[str], parents: Mapping[str, Sequence[str]]) -> dict[str, tuple[int, int]]:
    """``{key: (layer, row)}``: layers by longest path from a root, rows by barycenter.

    ``keys`` must be in topological order; edges to keys outside ``keys`` are ignored.

    >>> layout(["a", "b", "c"], {"a": [], "b": ["a"], "c": ["a", "b"]})
    {'a': (0, 0), 'b': (1, 0), 'c': (2, 0)}
    """
    members = set(keys)
    ps = {k: [p for p in parents.get(k, ()) if p in members] for k in keys}
    children: dict[str, list[str]] = {k: [] for k in keys}
    for k in keys:
        for p in ps[k]:
            children[p].append(k)
    layer: dict[str, int] = {}
    for k in keys:
        layer[k] = 1 + max((layer[p] for p in ps[k]), default=-1)
    n_layers = 1 + max(layer.values(), default=-1)
    layers: list[list[str]] = [[] for _ in range(n_layers)]
    for k in keys:
        layers[layer[k]].append(k)
    pos = {k: float(i) for lay in layers for i, k in enumerate(lay)}

    def sweep(order: Iterable[int], neighbours: Mapping[str, list[str]]) -> None:
        for li in order:
            lay = layers[li]
            bary = {}
            for i, k in enumerate(lay):
                ns = neighbours[k]
                bary[k] = sum(pos[n] for n in ns) / len(ns) if ns else pos[k]
                bary[k] += i * 1e-6  # stable ties
            lay.sort(key=bary.__getitem__)
            for i, k in enumerate(lay):
                pos[k] = float(i)

    for _ in range(4):
        sweep(range(1, n_layers), ps)
        sweep(range(n_layers - 2, -1, -1), children)
    return {k: (layer[k], int(pos[k])) for k in keys}


def graph_svg(
    graph: AssetGraph,
    *,
    keys: Sequence[str] | None = None,
    stale: Mapping[str, tuple[str, str | None]] | None = None,
    states: Mapping[str, NodeState] | None = None,
    focus: str | None = None,
) -> str:
    """The asset graph (or the ``keys`` part of it) as an SVG document.

    Args:
        graph: the asset graph.
        keys: the assets to draw (default: all), in any order.
        stale: ``{asset: (reason, cause)}`` for stale assets; others are drawn fresh.
        states: a :class:`NodeState` per asset instead of ``stale`` (more detail).
        focus: an asset drawn with a thick border (the subject of a lineage view).
    """
    chosen = graph.sort(keys) if keys is not None else list(graph.order)
    if states is None:
        states = {
            k: NodeState("stale", *stale[k])
            if stale and k in stale
            else NodeState("fresh" if stale is not None else "unknown")
            for k in chosen
        }
    pos = layout(chosen, graph.parents)
    labels = {k: _clip(k) for k in chosen}
    subs = {k: _sub_label(graph, k, states.get(k, NodeState())) for k in chosen}
    text_w = max([len(t) for t in labels.values()] + [len(t) for t in subs.values()] + [0])
    node_w = max(MIN_NODE_W, int(text_w * CHAR_W) + 20)
    n_layers = 1 + max((lay for lay, _ in pos.values()), default=-1)
    rows_in = [0] * max(n_layers, 1)
    for lay, row in pos.values():
        rows_in[lay] = max(rows_in[lay], row + 1)
    tallest = max(rows_in, default=1)
    legend_h = 24
    width = max(PAD * 2 + n_layers * node_w + max(n_layers - 1, 0) * H_GAP, 320)
    height = PAD * 2 + legend_h + tallest * NODE_H + max(tallest - 1, 0) * V_GAP

    def xy(k: str) -> tuple[float, float]:
        lay, row = pos[k]
        offset = (tallest - rows_in[lay]) * (NODE_H + V_GAP) / 2  # centre short layers
        return PAD + lay * (node_w + H_GAP), PAD + legend_h + offset + row * (NODE_H + V_GAP)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="lh-graph" '
        f'width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'font-family="system-ui,-apple-system,Segoe UI,sans-serif" font-size="12" '
        f'role="img" aria-label="asset graph of {len(chosen)} assets">',
        '<defs><marker id="lh-arrow" viewBox="0 0 10 10" refX="10" refY="5" '
        'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
        '<path d="M0,0 L10,5 L0,10 z" fill="#94a3b8"/></marker></defs>',
        f'<rect x="0" y="0" width="{width:.0f}" height="{height:.0f}" fill="#ffffff"/>',
    ]
    lx = PAD
    shown = {st.state for st in states.values()}
    for name, text in (
        ("fresh", "fresh"),
        ("stale", "stale"),
        ("failed", "check failed"),
        ("unknown", "no state"),
    ):
        if name in ("failed", "unknown") and name not in shown:
            continue
        fill, stroke = COLOURS[name]
        out.append(
            f'<rect x="{lx}" y="{PAD - 2}" width="14" height="12" rx="3" '
            f'fill="{fill}" stroke="{stroke}"/>'
            f'<text x="{lx + 19}" y="{PAD + 8}" fill="#374151">{text}</text>'
        )
        lx += 30 + int(len(text) * CHAR_W)
    out.append(
        f'<text x="{max(width - PAD, lx + 70):.0f}" y="{PAD + 8}" text-anchor="end" fill="#6b7280">'
        f"{len(chosen)} assets</text>"
    )
    members = set(chosen)
    for k in chosen:
        x2, y2 = xy(k)
        for p in graph.parents[k]:
            if p not in members:
                continue
            x1, y1 = xy(p)
            sx, sy, ex, ey = x1 + node_w, y1 + NODE_H / 2, x2, y2 + NODE_H / 2
            mid = (sx + ex) / 2
            hot = focus is not None and (k == focus or p == focus)
            colour = "#475569" if hot else "#94a3b8"
            span = pos[k][0] - pos[p][0]
            faint = "" if hot or span <= 1 else ' stroke-opacity="0.5"'  # long edges recede
            out.append(
                f'<path d="M{sx:.1f},{sy:.1f} C{mid:.1f},{sy:.1f} '
                f'{mid:.1f},{ey:.1f} {ex:.1f},{ey:.1f}" '
                f'fill="none" stroke="{colour}"{faint} stroke-width="{1.6 if hot else 1.1}" '
                f'marker-end="url(#lh-arrow)"><title>{_esc(p)} → {_esc(k)}</title></path>'
            )
    for k in chosen:
        x, y = xy(k)
        st = states.get(k, NodeState())
        fill, stroke = COLOURS.get(st.state, COLOURS["unknown"])
        sw = 3 if k == focus else 1.4
        tip = k + (f"\n{st.state}" if st.state != "unknown" else "")
        if st.reason:
            tip += f": {st.reason}" + (
                f" (caused by {st.cause})" if st.cause and st.cause != k else ""
            )
        spec = graph.specs[k]
        if spec.partitions is not None:
            tip += f"\n{spec.partitions.describe()}"
        out.append(
            f'<g class="lh-node lh-{st.state}" data-asset="{_esc(k)}"><title>{_esc(tip)}</title>'
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{node_w}" height="{NODE_H}" rx="6" '
            f'fill="{fill}" stroke="{stroke}" stroke-width="{sw}"/>'
            f'<text x="{x + 10:.1f}" y="{y + 16:.1f}" fill="#111827" font-weight="600">'
            f"{_esc(labels[k])}</text>"
            f'<text x="{x + 10:.1f}" y="{y + 30:.1f}" fill="#4b5563" font-size="11">'
            f"{_esc(subs[k])}</text></g>"
        )
    out.append("</svg>")
    return "".join(out)


def _sub_label(graph: AssetGraph, key: str, st: NodeState) -> str:
    spec = graph.specs[key]
    summary = partition_summary(spec.partitions, st.stale_partitions if st.state != "fresh" else 0)
    reason = st.reason if st.state in ("stale", "failed") else None
    if summary:
        if reason and len(summary) + len(reason) + 3 <= MAX_LABEL:
            return f"{summary} · {reason}"
        return summary
    if reason:
        return _clip(reason, MAX_LABEL)
    if st.state == "fresh":
        return "fresh"
    return spec.engine if spec.format is None else f"{spec.engine} · {spec.format}"


def node_states(lake: Lakehouse) -> dict[str, NodeState]:
    """The state of every asset of ``lake`` from its catalog (reads the catalog)."""
    from .views import current_staleness

    stale, _state, _cvs = current_staleness(lake)
    out: dict[str, NodeState] = {}
    for key in lake.graph.order:
        entries = stale.get(key, [])
        if not entries:
            out[key] = NodeState("fresh")
            continue
        _, reason, cause = entries[0]
        n = sum(len(e[0]) for e in entries) if lake.graph.specs[key].partitions is not None else 0
        state = "failed" if any(e[1] in FAILED_REASONS for e in entries) else "stale"
        out[key] = NodeState(state, reason, cause, n)
    return out


def _frame(svg: str, max_height: int = 560) -> str:
    return (
        f'<div class="lh-graph-frame" style="overflow:auto;max-height:{max_height}px;'
        "display:inline-block;max-width:100%;border:1px solid #e5e7eb;border-radius:6px;"
        f'margin:6px 0;background:#fff">{svg}</div>'
    )


def lakehouse_html(lake: Lakehouse) -> str:
    """The notebook view of a :class:`~lakehouse.Lakehouse`: settings, counts, graph, assets."""
    from .config import _mask
    from .errors import LakehouseError

    try:
        graph = lake.graph
    except LakehouseError as exc:
        return _html.view("Lakehouse", f'<div class="lh-failed">{_html.esc(exc)}</div>')
    try:
        states: dict[str, NodeState] | None = node_states(lake)
    except Exception as exc:  # a view never raises: it says what went wrong
        states = None
        problem = f'<div class="lh-failed">state unavailable: {_html.esc(exc)}</div>'
    else:
        problem = ""
    n_stale = sum(1 for s in (states or {}).values() if s.state in ("stale", "failed"))
    partitioned = sum(1 for s in graph.specs.values() if s.partitions is not None)
    info = [
        ("warehouse", lake.settings.warehouse_uri),
        ("catalog", _mask(lake.settings.catalog_url)),
        ("default format", lake.settings.format),
        ("assets", f"{len(graph)} ({partitioned} partitioned)"),
        ("stale", "?" if states is None else f"{n_stale} of {len(graph)}"),
    ]
    body = (
        "<table>"
        + "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in info)
        + "</table>"
        + problem
    )
    if len(graph):
        body += _frame(graph_svg(graph, states=states))
    rows = []
    for k, s in graph.specs.items():
        st = (states or {}).get(k, NodeState())
        rows.append(
            (
                k,
                ", ".join(graph.parents[k]),
                s.format or lake.settings.format,
                s.engine,
                s.partitions.describe() if s.partitions is not None else "",
                _state_cell(st),
            )
        )
    body += _table_raw(("asset", "upstreams", "format", "engine", "partitions", "state"), rows)
    return _html.view("Lakehouse", body)


def _state_cell(st: NodeState) -> str:
    cls = {"fresh": "lh-fresh", "stale": "lh-stale", "failed": "lh-failed"}.get(st.state, "")
    text = st.state if not st.reason else f"{st.state}: {st.reason}"
    return f'<span class="{cls}">{_esc(text)}</span>'


def _table_raw(headers: Sequence[str], rows: Sequence[Sequence[str]], limit: int = 200) -> str:
    """Like ``_html.table`` but the last column is trusted HTML (a state badge)."""
    out = ["<table><thead><tr>", *(f"<th>{_esc(h)}</th>" for h in headers), "</tr></thead><tbody>"]
    for row in rows[:limit]:
        cells = [f"<td>{_esc(c)}</td>" for c in row[:-1]] + [f"<td>{row[-1]}</td>"]
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    if len(rows) > limit:
        out.append(f"<div>… {len(rows) - limit} more assets</div>")
    return "".join(out)


def lineage_html(lineage: Lineage) -> str:
    """The notebook view of ``lake.lineage(name)``: the graph around the asset."""
    lake = lineage._lake
    keys = [*lineage.upstream, lineage.asset, *lineage.downstream]
    if lake is None:
        return _html.view(
            f"lineage of {lineage.asset}", _html.table(("upstream", "downstream"), lineage._edges)
        )
    try:
        states: dict[str, NodeState] | None = node_states(lake)
    except Exception as exc:  # a view never raises: it says what went wrong
        states = None
        problem = f'<div class="lh-failed">state unavailable: {_html.esc(exc)}</div>'
    else:
        problem = ""
    svg = graph_svg(lake.graph, keys=keys, states=states, focus=lineage.asset)
    note = (
        f"<div>{len(lineage.upstream)} upstream, {len(lineage.downstream)} downstream; "
        f"direct: reads {_esc(', '.join(lineage.parents) or 'nothing')}, "
        f"read by {_esc(', '.join(lineage.children) or 'nothing')}</div>"
    )
    return _html.view(f"lineage of {lineage.asset}", note + problem + _frame(svg))
