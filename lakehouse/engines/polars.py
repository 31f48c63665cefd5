"""The Polars engine: inputs are lazy scans with the partition predicate pushed down."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import polars as pl

from . import InputSource

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

    from ..assets import Context
    from ..partitions import Predicate


def predicate_expr(pred: Predicate) -> pl.Expr:
    """The Polars expression of a neutral partition predicate (OR of ANDs)."""
    ors: list[pl.Expr] = []
    for conj in pred:
        ands: list[pl.Expr] = []
        for clause in conj:
            col = pl.col(clause.column)
            if hasattr(clause, "values"):
                ands.append(col.is_in(list(clause.values)))
            else:
                ands.append((col >= pl.lit(clause.start)) & (col < pl.lit(clause.end)))
        expr = ands[0]
        for e in ands[1:]:
            expr = expr & e
        ors.append(expr)
    out = ors[0]
    for e in ors[1:]:
        out = out | e
    return out


def scan(source: InputSource) -> pl.LazyFrame:
    """A lazy scan of one input, filtered to its partitions."""
    ref = source.ref
    if ref.format == "delta":
        lf = pl.scan_delta(
            ref.uri,
            version=None if ref.version is None else int(ref.version),
            storage_options=dict(ref.storage_options) or None,
        )
    elif ref.format == "iceberg" and source.table is not None:
        # pyiceberg plans the scan (partition pruning, stats) with the table's own FileIO;
        # Polars' native reader would ignore it and go to AWS with default credentials
        lf = pl.scan_iceberg(
            source.table(),
            snapshot_id=None if ref.version is None else int(ref.version),
            reader_override="pyiceberg",
        )
    elif source.arrow is not None:
        data = source.arrow()
        lf = pl.from_arrow(data).lazy() if not hasattr(data, "read_all") else pl.from_arrow(data.read_all()).lazy()  # type: ignore[union-attr]
    else:
        lf = pl.scan_pyarrow_dataset(source.dataset())
    if source.predicate:
        lf = lf.filter(predicate_expr(source.predicate))
    return lf


def convert(lf: pl.LazyFrame, annotation: str) -> Any:
    """``lf`` in the type named by a parameter annotation (default: the LazyFrame)."""
    ann = annotation.replace(" ", "")
    last = ann.split(".")[-1].split("[")[0]
    if not ann or last == "LazyFrame" or ann == "Any":
        return lf
    if last == "DataFrame":
        if "pd." in ann or "pandas" in ann:
            return lf.collect().to_pandas()
        return lf.collect()
    if last == "Table":
        return lf.collect().to_arrow()
    if last == "RecordBatchReader":
        return lazy_to_reader(lf)
    if last in ("DuckDBPyRelation", "Relation"):
        import duckdb

        return duckdb.from_arrow(lf.collect().to_arrow())
    return lf


def lazy_to_reader(lf: pl.LazyFrame) -> pa.RecordBatchReader:
    """Stream a LazyFrame as Arrow record batches through Polars' streaming engine."""
    import pyarrow as pa

    schema = lf.collect_schema()
    empty = pl.DataFrame(schema=schema).to_arrow()

    def batches() -> Iterator[pa.RecordBatch]:
        for df in lf.collect_batches():
            for batch in df.to_arrow().to_batches():
                yield batch.cast(empty.schema) if batch.schema != empty.schema else batch

    return pa.RecordBatchReader.from_batches(empty.schema, batches())


class PolarsEngine:
    """Runs Polars asset functions."""

    name = "polars"

    def prepare(self, source: InputSource, annotation: str) -> Any:
        return convert(scan(source), annotation)

    def call(self, fn: Callable[..., Any], kwargs: dict[str, Any], ctx: Context, asset: str) -> Any:
        return fn(**kwargs)

    def close(self) -> None:
        pass
