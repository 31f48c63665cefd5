"""The Polars engine: inputs are lazy scans with the partition predicate pushed down."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import polars as pl

from . import InputSource

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

    from ..assets import Context
    from ..partitions import Predicate


def _literal(value: Any, dtype: Any) -> pl.Expr:
    """A literal comparable with a column of ``dtype`` (dates vs datetimes, time zones)."""
    if dtype is not None and isinstance(dtype, pl.Datetime):
        if isinstance(value, _dt.datetime):
            if dtype.time_zone is None and value.tzinfo is not None:
                value = value.astimezone(_dt.timezone.utc).replace(tzinfo=None)
        elif isinstance(value, _dt.date):
            value = _dt.datetime(value.year, value.month, value.day)
        return pl.lit(value).cast(dtype)
    if dtype is not None and dtype == pl.Date and isinstance(value, _dt.datetime):
        return pl.lit(value.date())
    return pl.lit(value)


def predicate_expr(pred: Predicate, schema: Mapping[str, Any] | None = None) -> pl.Expr:
    """The Polars expression of a neutral partition predicate (OR of ANDs).

    With ``schema`` the literals are converted to the column types first.
    """
    ors: list[pl.Expr] = []
    for conj in pred:
        ands: list[pl.Expr] = []
        for clause in conj:
            col = pl.col(clause.column)
            dtype = schema.get(clause.column) if schema is not None else None
            if hasattr(clause, "values"):
                ands.append(col.is_in(list(clause.values)))
            else:
                ands.append(
                    (col >= _literal(clause.start, dtype)) & (col < _literal(clause.end, dtype))
                )
        expr = ands[0]
        for e in ands[1:]:
            expr = expr & e
        ors.append(expr)
    out = ors[0]
    for e in ors[1:]:
        out = out | e
    return out


def rows_outside(
    data: pa.Table | pl.DataFrame, pred: Predicate, columns: Sequence[str]
) -> tuple[int, int, Any]:
    """``(rows outside pred, rows with a null partition value, first offending value)``.

    One pass over the partition columns answers the usual case, where every row is
    inside: for a predicate that is one box of ranges (a contiguous run of time
    partitions) it is the minimum and maximum of each column, compared with the bounds;
    otherwise the number of rows failing the predicate. Only when some row is outside
    are the offending rows looked up, to name the first one.
    """
    df = data if isinstance(data, pl.DataFrame) else pl.from_arrow(data)
    assert isinstance(df, pl.DataFrame)
    if not df.height:
        return 0, 0, None
    schema = df.schema
    nulls_expr = pl.any_horizontal(pl.col(c).is_null() for c in columns).sum().alias("nulls")
    if not pred:  # matches nothing: every row is outside
        nulls = df.select(nulls_expr).item()
        bad = df
    else:
        box = pred[0] if len(pred) == 1 and all(hasattr(c, "start") for c in pred[0]) else None
        if box is not None:  # an AND of ranges: inside iff each column's min and max are
            inside = pl.all_horizontal(
                (pl.col(c.column).min() >= _literal(c.start, schema.get(c.column)))
                & (pl.col(c.column).max() < _literal(c.end, schema.get(c.column)))
                for c in box
            ).alias("inside")
            nulls, all_inside = df.select(nulls_expr, inside).row(0)
            # (unknown only when a column holds nulls alone: no row is known outside)
            if all_inside is not False:
                return 0, int(nulls), None
        else:
            outside = (~predicate_expr(pred, schema)).sum()
            nulls, count = df.select(nulls_expr, outside.alias("outside")).row(0)
            if not count:
                return 0, int(nulls), None
        bad = df.filter(~predicate_expr(pred, schema))
    first = None
    if bad.height:
        row = bad.row(0, named=True)
        first = row[columns[0]] if len(columns) == 1 else {c: row[c] for c in columns}
    return bad.height, int(nulls), first


def scan(source: InputSource) -> pl.LazyFrame:
    """A lazy scan of one input, filtered to its partitions."""
    ref = source.ref
    if ref.format == "delta" and ref.files is not None:
        # every file of this version, reported by the write that made it earlier in this
        # run: a plain Parquet scan, cast to the table's schema, reads the version exactly
        import pyarrow as pa

        # (Schema.empty_table() would import pandas: ~0.3 s in a fresh process)
        empty = pa.Table.from_batches([], schema=ref.files.schema)
        schema = pl.from_arrow(empty).schema  # type: ignore[union-attr]
        lf = pl.scan_parquet(list(ref.files.paths)).cast(dict(schema))
    elif ref.format == "delta":
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
        lf = (
            pl.from_arrow(data).lazy()
            if not hasattr(data, "read_all")
            else pl.from_arrow(data.read_all()).lazy()
        )  # type: ignore[union-attr]
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
