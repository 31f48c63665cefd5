"""Compute engines (layer 2): turn table versions into the inputs an asset function
asks for, call it, and turn what it returns into Arrow for the table writers.

Engines never import the table-format adapters: they receive an :class:`InputSource`
(a :class:`~lakehouse.assets.TableRef`, the partition predicate, and a factory for an
Arrow dataset) from the execution layer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import OutputError

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa
    import pyarrow.dataset as pads

    from ..assets import Context, TableRef
    from ..partitions import Predicate


@dataclass(frozen=True)
class InputSource:
    """One upstream as the execution layer hands it to an engine.

    ``table`` gives the format's own table object when the format has one an engine can
    scan lazily (a pyiceberg ``Table`` for Iceberg, read with ``pl.scan_iceberg``), so
    engines never import the format libraries themselves.
    """

    param: str
    ref: TableRef
    predicate: Predicate | None
    dataset: Callable[[], pads.Dataset]
    arrow: Callable[[], pa.Table | pa.RecordBatchReader] | None = None
    table: Callable[[], Any] | None = None


class Engine(Protocol):
    """The seam every compute engine implements."""

    name: str

    def prepare(self, source: InputSource, annotation: str) -> Any:
        """The input in the type the parameter's annotation asks for."""

    def call(self, fn: Callable[..., Any], kwargs: dict[str, Any], ctx: Context, asset: str) -> Any:
        """Call the asset function."""

    def close(self) -> None: ...


def get_engine(name: str) -> Engine:
    """A fresh engine instance for one step."""
    if name == "polars":
        from .polars import PolarsEngine

        return PolarsEngine()
    if name == "duckdb":
        from .duckdb import DuckDBEngine

        return DuckDBEngine()
    raise ValueError(f"unknown engine {name!r}")


def _module(value: Any) -> str:
    return type(value).__module__.split(".")[0]


_WIDER = {"uint8": "int16", "uint16": "int32", "uint32": "int64", "uint64": "int64"}


def table_types(data: pa.Table | pa.RecordBatchReader) -> pa.Table | pa.RecordBatchReader:
    """``data`` with unsigned integer columns widened to signed ones.

    Delta and Iceberg have no unsigned types, so a ``UInt32`` (``pl.len()``) would come
    back as a different type from the table and fail the next schema check.
    """
    import pyarrow as pa

    fields = [
        f.with_type(pa.from_numpy_dtype(_WIDER[str(f.type)])) if str(f.type) in _WIDER else f
        for f in data.schema
    ]
    schema = pa.schema(fields, metadata=data.schema.metadata)
    if schema.equals(data.schema):
        return data
    if isinstance(data, pa.Table):
        return data.cast(schema)
    return pa.RecordBatchReader.from_batches(schema, (b.cast(schema) for b in data))


def to_arrow(value: Any, asset: str, *, stream: bool = True) -> pa.Table | pa.RecordBatchReader:
    """Arrow data for what an asset function returned, in types every table format has."""
    return table_types(_to_arrow(value, asset, stream=stream))


def _to_arrow(value: Any, asset: str, *, stream: bool = True) -> pa.Table | pa.RecordBatchReader:
    """Arrow data for what an asset function returned.

    Polars DataFrames and pandas become tables; a LazyFrame, a DuckDB relation and a
    RecordBatchReader stream as record batches when ``stream`` (the writer consumes them
    batch by batch, so a result larger than memory is never collected whole).

    Raises:
        OutputError: for anything that is not table data, naming the asset and the type.
    """
    import pyarrow as pa

    mod = _module(value)
    if isinstance(value, pa.Table):
        return value
    if isinstance(value, pa.RecordBatchReader):
        return value if stream else value.read_all()
    if isinstance(value, pa.RecordBatch):
        return pa.Table.from_batches([value])
    if mod == "polars":
        import polars as pl

        if isinstance(value, pl.LazyFrame):
            if stream:
                from .polars import lazy_to_reader

                return lazy_to_reader(value)
            return value.collect(engine="streaming").to_arrow()
        if isinstance(value, pl.DataFrame):
            return value.to_arrow()
    if mod == "duckdb" and hasattr(value, "fetch_arrow_table"):
        if stream:
            reader = getattr(value, "to_arrow_reader", None) or value.fetch_record_batch
            return reader(100_000)
        return value.fetch_arrow_table()
    if mod == "pandas" and type(value).__name__ == "DataFrame":
        return pa.Table.from_pandas(value, preserve_index=False)
    if hasattr(value, "__arrow_c_stream__"):
        return pa.RecordBatchReader.from_stream(value)
    hint = (
        "return a pl.DataFrame, pl.LazyFrame, pa.Table, pa.RecordBatchReader, DuckDB relation "
        "or pandas DataFrame"
    )
    if isinstance(value, str):
        hint = "a SQL string is a valid result only for engine='duckdb' assets"
    raise OutputError(
        f"returned {type(value).__module__}.{type(value).__qualname__}, which is not table data",
        asset=asset,
        hint=hint,
    )
