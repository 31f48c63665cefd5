"""The DuckDB engine: each input is a view named after its parameter on the asset's
own connection; a function may return a relation or a SQL string run there."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import duckdb

from ..errors import OutputError
from . import InputSource

if TYPE_CHECKING:  # pragma: no cover
    from ..assets import Context


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class DuckDBEngine:
    """Runs DuckDB asset functions on a private in-memory connection."""

    name = "duckdb"

    def __init__(self) -> None:
        self.con = duckdb.connect(":memory:")

    def prepare(self, source: InputSource, annotation: str) -> Any:
        from ..partitions import predicate_sql

        raw = f"__lh_src_{source.param}"
        data: Any = source.arrow() if source.arrow is not None else source.dataset()
        self.con.register(raw, data)
        where = f" WHERE {predicate_sql(source.predicate)}" if source.predicate else ""
        self.con.execute(
            f"CREATE OR REPLACE TEMP VIEW {_quote(source.param)} AS "
            f"SELECT * FROM {_quote(raw)}{where}"
        )
        rel = self.con.view(source.param)
        last = annotation.replace(" ", "").split(".")[-1].split("[")[0]
        if last == "LazyFrame":
            return rel.pl().lazy()
        if last == "DataFrame":
            return rel.df() if ("pd." in annotation or "pandas" in annotation) else rel.pl()
        if last == "Table":
            return rel.fetch_arrow_table()
        return rel

    def call(self, fn: Callable[..., Any], kwargs: dict[str, Any], ctx: Context, asset: str) -> Any:
        ctx.duckdb = self.con
        result = fn(**kwargs)
        if isinstance(result, str):
            try:
                return self.con.sql(result)
            except duckdb.Error as exc:
                raise OutputError(
                    f"the SQL it returned failed: {exc}",
                    asset=asset,
                    hint="inputs are views named after the function's parameters",
                ) from exc
        return result

    def close(self) -> None:
        self.con.close()
