"""Small HTML helpers for notebook views (standard library only)."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Any

STYLE = (
    "<style>.lh-view{font-family:system-ui,sans-serif;font-size:13px}"
    ".lh-view table{border-collapse:collapse;margin:4px 0}"
    ".lh-view th,.lh-view td{border:1px solid #ddd;padding:2px 8px;text-align:left}"
    ".lh-view th{background:#f4f4f4}.lh-stale{color:#b45309;font-weight:600}"
    ".lh-fresh{color:#15803d}.lh-failed{color:#b91c1c;font-weight:600}</style>"
)


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, limit: int = 50) -> str:
    """An HTML table of at most ``limit`` rows (with a note on the rest)."""
    out = ["<table><thead><tr>", *(f"<th>{esc(h)}</th>" for h in headers), "</tr></thead><tbody>"]
    n = 0
    extra = 0
    for row in rows:
        if n >= limit:
            extra += 1
            continue
        n += 1
        out.append("<tr>" + "".join(f"<td>{cell_html(c)}</td>" for c in row) + "</tr>")
    out.append("</tbody></table>")
    if extra:
        out.append(f"<div>… {extra} more rows</div>")
    return "".join(out)


def cell_html(value: Any) -> str:
    if value is True:
        return '<span class="lh-stale">stale</span>'
    if value is False:
        return '<span class="lh-fresh">fresh</span>'
    if value in ("failed", "upstream_failed", "check_failed"):
        return f'<span class="lh-failed">{esc(value)}</span>'
    return esc(value)


def view(title: str, body: str) -> str:
    return f'{STYLE}<div class="lh-view"><b>{esc(title)}</b>{body}</div>'
