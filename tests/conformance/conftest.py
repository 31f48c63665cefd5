"""The conformance cells: table format {delta, iceberg} x storage {local, s3}.

Every test in this folder that takes the ``cell`` fixture runs once per cell. A cell
builds lakehouses on its own fresh warehouse (a temporary folder, or a fresh prefix in
the module's bucket on the local S3 server) and reads tables back with an independent
path: plain ``pl.read_delta`` for Delta, plain pyiceberg for Iceberg, both compared
through DuckDB over Arrow.

A gap in one cell is declared with :func:`gap` (a strict xfail naming the reason).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CELLS = [
    pytest.param(("delta", "local"), id="delta-local"),
    pytest.param(("iceberg", "local"), id="iceberg-local"),
    pytest.param(("delta", "s3"), id="delta-s3", marks=pytest.mark.s3),
    pytest.param(("iceberg", "s3"), id="iceberg-s3", marks=pytest.mark.s3),
]

#: Declared gaps: (test name, format, storage) -> reason. Empty means every cell passes.
GAPS: dict[tuple[str, str, str], str] = {}


@dataclass
class Cell:
    """One format x storage combination with a fresh warehouse."""

    format: str
    storage: str
    warehouse: str
    local_dir: str
    storage_options: dict[str, str] = field(default_factory=dict, repr=False)
    lakes: list[Any] = field(default_factory=list, repr=False)

    def lake(self, assets: Any, **kwargs: Any) -> Any:
        """A Lakehouse on this cell's warehouse (format default = the cell's format)."""
        import lakehouse as lh

        kwargs.setdefault("format", self.format)
        lake = lh.Lakehouse(
            self.warehouse,
            assets=assets,
            storage_options=self.storage_options or None,
            local_dir=self.local_dir,
            **kwargs,
        )
        self.lakes.append(lake)
        return lake

    # -- independent readers ----------------------------------------------------------

    def read_independent(self, lake: Any, name: str, version: str | None = None) -> Any:
        """The table read WITHOUT lakehouse's adapters, as a Polars DataFrame."""
        import polars as pl

        spec = lake._spec(name)
        ref = lake.table_ref(spec)
        if ref.format == "delta":
            return pl.read_delta(
                ref.uri,
                version=None if version is None else int(version),
                storage_options=dict(ref.storage_options) or None,
            )
        table = self.iceberg_table(lake, name)
        scan = table.scan(snapshot_id=None if version is None else int(version))
        return pl.from_arrow(scan.to_arrow())

    def iceberg_table(self, lake: Any, name: str) -> Any:
        """The asset's table loaded with plain pyiceberg from the catalog properties."""
        from pyiceberg.catalog import load_catalog

        spec = lake._spec(name)
        props = {k: v for k, v in lake._iceberg_props().items() if not k.startswith("lakehouse.")}
        catalog = load_catalog(props.pop("name", "lakehouse"), **props)  # rows are keyed by name
        ns = (spec.namespace or "default").replace("/", "_")
        return catalog.load_table((ns, spec.name))

    def commit_properties(self, lake: Any, name: str) -> list[dict[str, str]]:
        """The custom properties of every commit, oldest first, read without lakehouse."""
        spec = lake._spec(name)
        ref = lake.table_ref(spec)
        if ref.format == "delta":
            from deltalake import DeltaTable

            dt = DeltaTable(ref.uri, storage_options=dict(ref.storage_options) or None)
            return [{k: str(v) for k, v in h.items()} for h in reversed(dt.history())]
        table = self.iceberg_table(lake, name)
        out = []
        for snap in table.snapshots():
            out.append(dict(snap.summary.additional_properties or {}))
        return out


def same_rows(a: Any, b: Any, *, by: list[str] | None = None) -> bool:
    """Whether two DataFrames hold the same rows (compared in DuckDB over Arrow)."""
    import duckdb

    left = a.to_arrow()
    right = b.to_arrow()
    if left.num_rows != right.num_rows:
        return False
    if set(left.column_names) != set(right.column_names):
        return False
    cols = ", ".join(f'"{c}"' for c in left.column_names)
    con = duckdb.connect()
    con.register("l", left)
    con.register("r", right)
    diff = con.execute(
        f"SELECT count(*) FROM ((SELECT {cols} FROM l EXCEPT ALL SELECT {cols} FROM r) "
        f"UNION ALL (SELECT {cols} FROM r EXCEPT ALL SELECT {cols} FROM l))"
    ).fetchone()
    con.close()
    return diff is not None and diff[0] == 0


@pytest.fixture(params=CELLS)
def cell(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cell]:
    fmt, storage = request.param
    name = request.node.originalname
    reason = GAPS.get((name, fmt, storage))
    if reason:
        request.applymarker(pytest.mark.xfail(reason=reason, strict=True))
    if storage == "local":
        c = Cell(fmt, storage, str(tmp_path / "wh"), str(tmp_path / "state"))
    else:
        bucket = request.getfixturevalue("s3_bucket")
        c = Cell(
            fmt,
            storage,
            f"s3://{bucket.name}/{uuid.uuid4().hex[:10]}",
            str(tmp_path / "state"),
            storage_options=dict(bucket.storage_options),
        )
    try:
        yield c
    finally:
        for lake in c.lakes:
            lake.close()
