"""Lineage for auditors: provenance trees, impact analysis, column lineage (layer 5).

Everything here reads the catalog's records, never the current definitions, so the
answers survive later rewrites of the upstream tables and changes to the code:

* a materialization record stores the version (and sequence number) of every input it
  read and, for partitioned inputs, the partition ranges it consumed;
* column lineage is stored once per code version of an asset (``lh_code_versions``).

The functions back :meth:`lakehouse.Lakehouse.provenance`, :meth:`~lakehouse.Lakehouse.impact`,
:meth:`~lakehouse.Lakehouse.column_lineage` and :attr:`lakehouse.Lineage.columns`.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .errors import UnknownAssetError

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl

    from .api import Lakehouse
    from .engines.column_lineage import ColumnLineage

OK = ("materialized", "adopted")
Ranges = tuple[tuple[int, int], ...]

PROVENANCE_SCHEMA = {
    "asset": "String",
    "version": "String",
    "partitions": "String",
    "input": "String",
    "input_version": "String",
    "run_id": "String",
    "code_version": "String",
    "materialized_at": "Datetime",
    "depth": "Int64",
}
IMPACT_SCHEMA = {
    "asset": "String",
    "partitions": "String",
    "version": "String",
    "input": "String",
    "input_version": "String",
    "run_id": "String",
    "code_version": "String",
    "materialized_at": "Datetime",
    "current": "Boolean",
    "depth": "Int64",
}
COLUMNS_SCHEMA = {
    "column": "String",
    "source_asset": "String",
    "source_column": "String",
    "kind": "String",
}
COLUMN_LINEAGE_SCHEMA = {
    "asset": "String",
    "column": "String",
    "source_asset": "String",
    "source_column": "String",
    "kind": "String",
    "depth": "Int64",
}


def _frame(rows: list[dict[str, Any]], schema: Mapping[str, str]) -> pl.DataFrame:
    import polars as pl

    types = {
        k: (pl.Datetime("us", "UTC") if v == "Datetime" else getattr(pl, v))
        for k, v in schema.items()
    }
    return pl.DataFrame(rows, schema=types)


def _ts(m: Mapping[str, Any]) -> _dt.datetime | None:
    start = m.get("started_at")
    if start is None:
        return None
    return _dt.datetime.fromtimestamp(
        float(start) + float(m.get("seconds") or 0), tz=_dt.timezone.utc
    )


def recorded_key(lake: Lakehouse, name: str) -> str:
    """The asset key for ``name``: from the definitions, or from the catalog for an asset
    that has since been removed or renamed."""
    try:
        return lake.graph.key_of(name)
    except UnknownAssetError:
        if lake.catalog.materializations(name):
            return name
        raise


# ----------------------------------------------------------------------- ranges


def _norm(ranges: Iterable[Sequence[int]]) -> Ranges:
    out: list[tuple[int, int]] = []
    for a, b in sorted((int(r[0]), int(r[1])) for r in ranges):
        if b <= a:
            continue
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return tuple(out)


def _intersect(x: Ranges, y: Ranges) -> Ranges:
    out = []
    for a, b in x:
        for c, d in y:
            lo, hi = max(a, c), min(b, d)
            if lo < hi:
                out.append((lo, hi))
    return _norm(out)


def _subtract(x: Ranges, y: Ranges) -> Ranges:
    out = list(x)
    for c, d in y:
        nxt = []
        for a, b in out:
            if d <= a or c >= b:
                nxt.append((a, b))
                continue
            if a < c:
                nxt.append((a, c))
            if d < b:
                nxt.append((d, b))
        out = nxt
    return _norm(out)


class _Records:
    """Materialization records, loaded once per asset."""

    def __init__(self, lake: Lakehouse) -> None:
        self.lake = lake
        self.catalog = lake.catalog
        self._by_asset: dict[str, list[dict[str, Any]]] = {}

    def of(self, asset: str) -> list[dict[str, Any]]:
        """Successful materializations of ``asset``, oldest first."""
        if asset not in self._by_asset:
            rows = [
                m
                for m in self.catalog.materializations(asset)
                if m["status"] in OK and m["seq"] is not None
            ]
            rows.sort(key=lambda m: (int(m["seq"]), int(m["id"])))
            self._by_asset[asset] = rows
        return self._by_asset[asset]

    def load_all(self) -> None:
        for m in self.catalog.materializations():
            if m["status"] in OK and m["seq"] is not None:
                self._by_asset.setdefault(m["asset"], []).append(m)
        for rows in self._by_asset.values():
            rows.sort(key=lambda m: (int(m["seq"]), int(m["id"])))

    def appends(self, asset: str, m: Mapping[str, Any]) -> bool:
        """Whether ``m``'s write kept earlier rows of the same partitions (append / merge)."""
        mode = (m.get("extra") or {}).get("write")
        if mode is None:
            try:
                spec = self.lake.graph.specs.get(asset)
            except Exception:
                spec = None
            mode = str(spec.write) if spec is not None else "overwrite"
        return not str(mode).startswith("overwrite")

    def find(self, asset: str, version: str | None) -> dict[str, Any]:
        """The materialization that produced ``version`` (default: the newest)."""
        rows = self.of(asset)
        if not rows:
            raise UnknownAssetError(
                "has never been materialized", asset=asset, hint=f"run lake.materialize({asset!r})"
            )
        if version is None:
            return rows[-1]
        hits = [m for m in rows if str(m["version"]) == str(version)]
        if not hits:
            recent = ", ".join(str(m["version"]) for m in rows[-5:])
            raise UnknownAssetError(
                f"has no recorded version {version!r} (recent: {recent})",
                asset=asset,
                hint="see lake.history(name) for the recorded versions",
            )
        return hits[-1]

    def behind(self, asset: str, seq: int, needed: Ranges | None) -> list[dict[str, Any]]:
        """The materializations whose rows make up ``asset`` at sequence ``seq``,
        restricted to the partition ranges ``needed`` (``None``: all)."""
        out: list[dict[str, Any]] = []
        covered: Ranges = ()
        for m in reversed(self.of(asset)):
            if int(m["seq"]) > seq:
                continue
            mine: Ranges = ((int(m["pstart"]), int(m["pend"])),)
            if needed is not None:
                mine = _intersect(mine, needed)
            live = _subtract(mine, covered)
            if live:
                out.append(m)
            if not self.appends(asset, m):
                covered = _norm(covered + mine)
            if needed is not None and not _subtract(needed, covered):
                break
        return out


def _input_ranges(m: Mapping[str, Any], asset: str) -> Ranges | None:
    ranges = ((m.get("extra") or {}).get("input_ranges") or {}).get(asset)
    return _norm(ranges) if ranges is not None else None


# ------------------------------------------------------------------- provenance


def provenance_frame(
    lake: Lakehouse, name: str, version: str | None = None, depth: int | None = None
) -> pl.DataFrame:
    """See :meth:`lakehouse.Lakehouse.provenance`."""
    key = recorded_key(lake, name)
    recs = _Records(lake)
    root = recs.find(key, version)
    rows: list[dict[str, Any]] = []
    # a version of a partitioned table is made of every materialization still live in it
    start = recs.behind(key, int(root["seq"]), None)
    queue: deque[tuple[dict[str, Any], int]] = deque((m, 0) for m in start)
    seen: set[int] = set()
    while queue:
        m, level = queue.popleft()
        if int(m["id"]) in seen:
            continue
        seen.add(int(m["id"]))
        base = {
            "asset": m["asset"],
            "version": m["version"],
            "partitions": m["partitions"],
            "run_id": m["run_id"],
            "code_version": m["code_version"],
            "materialized_at": _ts(m),
            "depth": level,
        }
        if not m["inputs"]:
            rows.append({**base, "input": None, "input_version": None})
        for inp in m["inputs"]:
            rows.append({**base, "input": inp.asset, "input_version": inp.version})
            if depth is not None and level + 1 > depth:
                continue
            for up in recs.behind(inp.asset, int(inp.seq), _input_ranges(m, inp.asset)):
                queue.append((up, level + 1))
    return _frame(rows, PROVENANCE_SCHEMA)


# ------------------------------------------------------------------------ impact


def impact_frame(lake: Lakehouse, name: str, version: str | None = None) -> pl.DataFrame:
    """See :meth:`lakehouse.Lakehouse.impact`."""
    key = recorded_key(lake, name)
    recs = _Records(lake)
    recs.load_all()
    root = recs.find(key, version)
    consumers: dict[str, list[tuple[dict[str, Any], Any]]] = {}
    for mats in list(recs._by_asset.values()):
        for m in mats:
            for inp in m["inputs"]:
                consumers.setdefault(inp.asset, []).append((m, inp))
    live_ids = {r.mat_id for rows in lake.catalog.state().values() for r in rows}
    rows: list[dict[str, Any]] = []
    seen: set[int] = {int(root["id"])}
    queue: deque[tuple[dict[str, Any], int]] = deque([(root, 0)])
    while queue:
        bad, level = queue.popleft()
        asset = bad["asset"]
        bad_seq = int(bad["seq"])
        bad_ranges: Ranges = ((int(bad["pstart"]), int(bad["pend"])),)
        later = [m for m in recs.of(asset) if int(m["seq"]) > bad_seq]
        for m, inp in consumers.get(asset, []):
            if int(m["id"]) in seen or int(inp.seq) < bad_seq:
                continue
            live = bad_ranges
            if not recs.appends(asset, bad):
                for o in later:
                    if int(o["seq"]) <= int(inp.seq) and not recs.appends(asset, o):
                        live = _subtract(live, ((int(o["pstart"]), int(o["pend"])),))
            needed = _input_ranges(m, asset)
            if not (live if needed is None else _intersect(live, needed)):
                continue  # the bad rows had been overwritten, or were not read
            seen.add(int(m["id"]))
            rows.append(
                {
                    "asset": m["asset"],
                    "partitions": m["partitions"],
                    "version": m["version"],
                    "input": asset,
                    "input_version": inp.version,
                    "run_id": m["run_id"],
                    "code_version": m["code_version"],
                    "materialized_at": _ts(m),
                    "current": int(m["id"]) in live_ids,
                    "depth": level + 1,
                }
            )
            queue.append((m, level + 1))
    return _frame(rows, IMPACT_SCHEMA)


# ---------------------------------------------------------------- column lineage


class _ColumnIndex:
    """The recorded column lineage of every asset: the code version behind its table's
    newest write, else its current code version, else the newest one recorded."""

    def __init__(self, lake: Lakehouse, only: str | None = None) -> None:
        from .engines.column_lineage import ColumnLineage

        catalog = lake.catalog
        stored: dict[str, dict[str, str]] = {}
        for r in catalog.rows("code_versions", **({"asset": only} if only is not None else {})):
            if r.get("column_lineage"):
                stored.setdefault(r["asset"], {})[r["code_version"]] = r["column_lineage"]
        latest: dict[str, str] = {}
        for asset, rows in catalog.state(None if only is None else [only]).items():
            if rows:
                latest[asset] = max(rows, key=lambda r: r.seq).code_version
        self.by_asset: dict[str, ColumnLineage] = {}
        for asset, versions in stored.items():
            text = versions.get(latest.get(asset, ""))
            if text is None:
                text = versions.get(_current_code_version(lake, asset) or "")
            if text is None:
                text = list(versions.values())[-1]
            parsed = ColumnLineage.from_json(text)
            if parsed is not None:
                self.by_asset[asset] = parsed

    def columns(self, asset: str) -> set[str]:
        lin = self.by_asset.get(asset)
        return set(lin.columns) if lin is not None else set()


def _current_code_version(lake: Lakehouse, asset: str) -> str | None:
    try:
        spec = lake.graph.specs.get(asset)
        if spec is None:
            return None
        if spec.code_version:
            return spec.code_version
        from .fingerprint import code_version

        return code_version(spec.fn) if spec.fn is not None else None
    except Exception:
        return None


def column_rows(lake: Lakehouse, key: str) -> list[dict[str, Any]]:
    """``column, source_asset, source_column, kind`` rows of ``key``'s recorded lineage."""
    lin = _ColumnIndex(lake, only=key).by_asset.get(key)
    return lin.rows() if lin is not None else []


def split_ref(lake: Lakehouse, ref: str, column: str | None = None) -> tuple[str, str]:
    """``"asset.column"`` (asset keys may hold ``/``; the longest known asset wins)."""
    if column is not None:
        return recorded_key(lake, ref), column
    names: set[str] = set()
    with contextlib.suppress(Exception):  # definitions that do not load: the catalog alone
        names.update(lake.graph.specs)
    candidates = sorted((n for n in names if ref.startswith(n + ".")), key=len, reverse=True)
    if candidates:
        return candidates[0], ref[len(candidates[0]) + 1 :]
    if "." not in ref:
        raise UnknownAssetError(
            f"{ref!r} does not name a column", hint="write 'asset.column', e.g. 'orders.amount'"
        )
    asset, col = ref.rsplit(".", 1)
    return recorded_key(lake, asset), col


def column_lineage_frame(
    lake: Lakehouse,
    ref: str,
    direction: str = "upstream",
    *,
    column: str | None = None,
    indirect: bool = True,
) -> pl.DataFrame:
    """See :meth:`lakehouse.Lakehouse.column_lineage`."""
    if direction not in ("upstream", "downstream"):
        raise ValueError(f"direction={direction!r}: use 'upstream' or 'downstream'")
    asset, col = split_ref(lake, ref, column)
    index = _ColumnIndex(lake)
    if asset not in index.by_asset:
        raise UnknownAssetError(
            "has no recorded column lineage yet",
            asset=asset,
            hint=f"run lake.materialize({asset!r}); lineage is recorded per code version",
        )
    known = index.columns(asset) | {
        e.source_column
        for lin in index.by_asset.values()
        for e in lin.edges
        if e.source_asset == asset and e.source_column
    }
    if col not in known:
        cols = ", ".join(sorted(index.columns(asset))) or "none recorded"
        raise UnknownAssetError(
            f"has no column {col!r} in its recorded lineage (columns: {cols})",
            asset=asset,
            hint="check the column name; lake.lineage(name).columns lists them",
        )
    rows: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = {(asset, col)}
    queue: deque[tuple[str, str, int]] = deque([(asset, col, 1)])
    emitted: set[tuple[Any, ...]] = set()
    while queue:
        a, c, level = queue.popleft()
        if direction == "upstream":
            lin = index.by_asset.get(a)
            edges = (
                []
                if lin is None
                else [e for e in lin.edges if e.column == c or (indirect and e.column is None)]
            )
            for e in edges:
                row = (a, e.column, e.source_asset, e.source_column, e.kind)
                if row not in emitted:
                    emitted.add(row)
                    rows.append(
                        {
                            "asset": a,
                            "column": e.column,
                            "source_asset": e.source_asset,
                            "source_column": e.source_column,
                            "kind": e.kind,
                            "depth": level,
                        }
                    )
                if (
                    e.source_asset is not None
                    and e.source_column is not None
                    and (e.source_asset, e.source_column) not in seen
                ):
                    seen.add((e.source_asset, e.source_column))
                    queue.append((e.source_asset, e.source_column, level + 1))
        else:
            for down, lin in index.by_asset.items():
                for e in lin.edges:
                    if e.source_asset != a or e.source_column != c:
                        continue
                    if e.column is None and not indirect:
                        continue
                    row = (down, e.column, a, c, e.kind)
                    if row not in emitted:
                        emitted.add(row)
                        rows.append(
                            {
                                "asset": down,
                                "column": e.column,
                                "source_asset": a,
                                "source_column": c,
                                "kind": e.kind,
                                "depth": level,
                            }
                        )
                    if e.column is not None and (down, e.column) not in seen:
                        seen.add((down, e.column))
                        queue.append((down, e.column, level + 1))
    return _frame(rows, COLUMN_LINEAGE_SCHEMA)
