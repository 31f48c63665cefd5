"""The audit of write-audit-publish: evaluate an asset's checks on the data about to be
published (layer 4), and the check-history views built from the catalog.

Built-in checks become Polars expressions counted in ONE pass over the staged data;
samples of failing rows are fetched only for the checks that failed. Custom checks get
the data as the type their parameter asks for; pandera schemas validate it lazily.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..checks import Check, CheckResult
from ..errors import CheckFailedError

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl

    from ..api import Lakehouse
    from ..assets import Context

#: How many failing rows a check keeps as a sample.
SAMPLE_ROWS = 5


@dataclass(frozen=True)
class Outcome:
    """The result of one check on one partition range."""

    check: Check
    passed: bool
    failing_rows: int | None = None
    sample: tuple[Mapping[str, Any], ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def blocks(self) -> bool:
        return not self.passed and self.check.blocking

    def summary(self) -> str:
        """``check 'x' failed: 3 failing rows; sample: [...]`` (or the error)."""
        if self.passed:
            return f"check {self.check.name!r} passed"
        if self.error:
            return f"check {self.check.name!r} failed: {self.error}"
        parts = []
        if self.failing_rows is not None:
            parts.append(f"{self.failing_rows} failing row{'s' if self.failing_rows != 1 else ''}")
        if self.metadata:
            parts.append(_json(self.metadata))
        if self.sample:
            parts.append(f"sample: {_json(list(self.sample))}")
        return f"check {self.check.name!r} failed" + (": " + "; ".join(parts) if parts else "")

    def row(self, start: int, end: int) -> dict[str, Any]:
        """The row stored in the catalog's ``lh_checks`` table."""
        detail = self.error or (_json(self.metadata) if self.metadata else None)
        return {
            "check_name": self.check.name,
            "severity": self.check.severity,
            "passed": bool(self.passed),
            "failing_rows": self.failing_rows,
            "detail": detail,
            "sample": _json(list(self.sample)) if self.sample else None,
            "pstart": start,
            "pend": end,
        }


def _json(value: Any) -> str:
    return json.dumps(value, default=str, separators=(", ", ": "))


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _rows(df: pl.DataFrame) -> tuple[dict[str, Any], ...]:
    return tuple({k: _plain(v) for k, v in r.items()} for r in df.head(SAMPLE_ROWS).to_dicts())


def _row_expr(chk: Check) -> pl.Expr | None:
    """A boolean expression true for the rows failing a row-wise built-in check."""
    import polars as pl

    if chk.kind == "not_null":
        return pl.any_horizontal([pl.col(c).is_null() for c in chk.columns])
    if chk.kind == "accepted_values":
        col = pl.col(chk.columns[0])
        return col.is_not_null() & ~col.is_in(list(chk.values))
    if chk.kind == "expect":
        expr = pl.sql_expr(chk.expr) if isinstance(chk.expr, str) else chk.expr
        return ~expr.fill_null(False)
    return None


def _missing(lf: pl.LazyFrame, chk: Check) -> str | None:
    cols = set(lf.collect_schema().names())
    gone = [c for c in chk.columns if c not in cols]
    if gone:
        return (
            f"column(s) {gone} are not in the output (columns: {sorted(cols)}); "
            "fix the check or the asset"
        )
    return None


def run_checks(
    checks: Sequence[Check], lf: pl.LazyFrame, ctx: Context | None = None
) -> list[Outcome]:
    """Evaluate ``checks`` on ``lf`` (the data about to be published).

    A check that cannot run (a missing column, an exception in a custom check, a wrong
    return type) fails, with the reason as its error.
    """
    import polars as pl

    out: dict[int, Outcome] = {}
    rowwise: list[tuple[int, Check, pl.Expr]] = []
    total: int | None = None
    for i, chk in enumerate(checks):
        if chk.kind in ("not_null", "accepted_values", "unique"):
            problem = _missing(lf, chk)
            if problem:
                out[i] = Outcome(chk, False, error=problem)
                continue
        if chk.kind in ("not_null", "accepted_values", "expect"):
            try:
                expr = _row_expr(chk)
            except Exception as exc:
                out[i] = Outcome(
                    chk, False, error=f"cannot build the condition: {type(exc).__name__}: {exc}"
                )
                continue
            assert expr is not None
            rowwise.append((i, chk, expr))
    # one pass: the failing-row count of every row-wise check, and the row count
    exprs = [e.sum().alias(f"c{i}") for i, _, e in rowwise] + [pl.len().alias("__rows")]
    counts: dict[str, Any] = {}
    try:
        counts = lf.select(exprs).collect().to_dicts()[0]
    except Exception:
        for i, chk, e in rowwise:
            try:
                counts[f"c{i}"] = lf.select(e.sum()).collect().item()
            except Exception as exc:
                out[i] = Outcome(
                    chk, False, error=f"cannot evaluate: {type(exc).__name__}: {_first_line(exc)}"
                )
        counts["__rows"] = lf.select(pl.len()).collect().item()
    total = int(counts.get("__rows") or 0)
    for i, chk, expr in rowwise:
        if i in out:
            continue
        bad = int(counts.get(f"c{i}") or 0)
        sample: tuple[dict[str, Any], ...] = ()
        if bad:
            sample = _rows(lf.filter(expr).head(SAMPLE_ROWS).collect())
        out[i] = Outcome(chk, bad == 0, failing_rows=bad, sample=sample)
    for i, chk in enumerate(checks):
        if i in out:
            continue
        try:
            if chk.kind == "unique":
                out[i] = _unique(chk, lf)
            elif chk.kind == "row_count":
                ok = (chk.min is None or total >= chk.min) and (chk.max is None or total <= chk.max)
                out[i] = Outcome(chk, ok, metadata={"rows": total})
            elif chk.kind == "custom":
                out[i] = _custom(chk, lf, ctx)
            elif chk.kind == "pandera":
                out[i] = _pandera(chk, lf)
            else:  # pragma: no cover - kinds are validated at declaration
                out[i] = Outcome(chk, False, error=f"unknown check kind {chk.kind!r}")
        except Exception as exc:
            out[i] = Outcome(chk, False, error=f"raised {type(exc).__name__}: {_first_line(exc)}")
    return [out[i] for i in range(len(checks))]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def _unique(chk: Check, lf: pl.LazyFrame) -> Outcome:
    import polars as pl

    cols = list(chk.columns)
    dup = (
        lf.drop_nulls(cols).group_by(cols).agg(pl.len().alias("count")).filter(pl.col("count") > 1)
    )
    stats = (
        dup.select(pl.col("count").sum().alias("rows"), pl.len().alias("keys"))
        .collect()
        .to_dicts()[0]
    )
    bad = int(stats["rows"] or 0)
    if not bad:
        return Outcome(chk, True, failing_rows=0)
    sample = _rows(dup.sort("count", descending=True).head(SAMPLE_ROWS).collect())
    return Outcome(
        chk, False, failing_rows=bad, sample=sample, metadata={"duplicate_keys": int(stats["keys"])}
    )


def _custom(chk: Check, lf: pl.LazyFrame, ctx: Context | None) -> Outcome:
    assert chk.fn is not None and chk.data_param is not None
    kind = chk.data_type
    if kind == "LazyFrame":
        data: Any = lf
    elif kind == "Table":
        data = lf.collect().to_arrow()
    else:
        data = lf.collect()
    kwargs: dict[str, Any] = {chk.data_param: data}
    if chk.context_param:
        kwargs[chk.context_param] = ctx
    value = chk.fn(**kwargs)
    if isinstance(value, CheckResult):
        sample = tuple(dict(r) for r in value.sample[:SAMPLE_ROWS])
        return Outcome(
            chk,
            bool(value.passed),
            failing_rows=value.failing_rows,
            sample=sample,
            metadata=dict(value.metadata),
        )
    if type(value).__name__ == "bool_" or isinstance(value, bool):  # numpy bools too
        return Outcome(chk, bool(value))
    return Outcome(
        chk,
        False,
        error=(
            f"returned {type(value).__name__}, not a bool or lh.CheckResult; "
            "return True/False or lh.CheckResult(passed, metadata)"
        ),
    )


def _pandera(chk: Check, lf: pl.LazyFrame) -> Outcome:
    from .._plugins import require

    require("pandera", "pandera")
    import pandera.errors as pe

    df = lf.collect()
    try:
        chk.schema.validate(df, lazy=True)
    except pe.SchemaErrors as exc:
        cases = exc.failure_cases
        failing = None
        try:
            idx = cases.get_column("index").drop_nulls()
            failing = int(idx.n_unique()) if len(idx) else None
        except Exception:
            failing = None
        sample = _rows(cases.drop([c for c in ("schema_context",) if c in cases.columns]))
        return Outcome(
            chk,
            False,
            failing_rows=failing,
            sample=sample,
            metadata={"failure_cases": int(cases.height)},
        )
    except pe.SchemaError as exc:
        return Outcome(chk, False, error=_first_line(exc))
    return Outcome(chk, True, failing_rows=0)


def _first_sample(text: str | None) -> str | None:
    if not text:
        return None
    try:
        rows = json.loads(text)
    except ValueError:
        return None
    return _json(rows[0]) if rows else None


def blocking_error(
    outcomes: Sequence[Outcome], asset: str, partitions: str | None
) -> CheckFailedError | None:
    """The error of a blocked publication, or ``None`` when no blocking check failed."""
    failed = [o for o in outcomes if o.blocks]
    if not failed:
        return None
    text = "; ".join(o.summary() for o in failed)
    return CheckFailedError(
        f"{text}; nothing was published",
        asset=asset,
        partition=partitions,
        hint="fix the data or the asset and materialize again (it is retried), "
        "or declare the check "
        "with severity='warn' to publish anyway; see lake.checks(name)",
    )


# ---------------------------------------------------------------------------- views


CHECKS_SCHEMA = (
    "run_id",
    "asset",
    "partitions",
    "check",
    "severity",
    "passed",
    "failing_rows",
    "detail",
    "sample",
    "checked_at",
)


def checks_frame(lake: Lakehouse, key: str | None) -> pl.DataFrame:
    """See :meth:`lakehouse.Lakehouse.checks`: check history, newest first."""
    import datetime as _dt

    import polars as pl

    where = {"asset": key} if key is not None else {}
    rows = sorted(
        lake.catalog.rows("checks", **where), key=lambda r: (r["checked_at"], r["id"]), reverse=True
    )
    data = [
        {
            "run_id": r["run_id"],
            "asset": r["asset"],
            "partitions": r["partitions"],
            "check": r["check_name"],
            "severity": r["severity"],
            "passed": bool(r["passed"]),
            "failing_rows": r["failing_rows"],
            "detail": r["detail"],
            "sample": r.get("sample"),
            "checked_at": _dt.datetime.fromtimestamp(r["checked_at"], tz=_dt.timezone.utc),
        }
        for r in rows
    ]
    schema = {
        "run_id": pl.String,
        "asset": pl.String,
        "partitions": pl.String,
        "check": pl.String,
        "severity": pl.String,
        "passed": pl.Boolean,
        "failing_rows": pl.Int64,
        "detail": pl.String,
        "sample": pl.String,
        "checked_at": pl.Datetime("us", "UTC"),
    }
    return pl.DataFrame(data, schema=schema)


def check_failed_reasons(
    lake: Lakehouse, state: Mapping[str, Sequence[Any]]
) -> dict[str, list[tuple[Any, str, str | None]]]:
    """The ``check_failed`` staleness of every asset (a ``Lakehouse._extensions`` hook).

    A partition is ``check_failed`` when a blocking check failed on it after its last
    successful materialization; the cause is the failed check and its failing rows.
    """
    from ..partitions import RangeSet

    rows = lake.catalog.failed_checks() if hasattr(lake.catalog, "failed_checks") else []
    if not rows:
        return {}
    out: dict[str, list[tuple[Any, str, str | None]]] = {}
    graph_keys = set(lake.graph.specs)
    for r in sorted(rows, key=lambda r: r["checked_at"], reverse=True):
        key = r["asset"]
        if key not in graph_keys:
            continue
        start = int(r["pstart"]) if r.get("pstart") is not None else 0
        end = int(r["pend"]) if r.get("pend") is not None else 1
        failed = RangeSet.of(start, end)
        # partitions successfully written after the failure are no longer check_failed
        later = RangeSet(
            [(s.start, s.end) for s in state.get(key, ()) if s.materialized_at >= r["checked_at"]]
        )
        failed = failed - later
        taken = RangeSet()
        for rs, _, _ in out.get(key, ()):
            taken = taken | rs
        failed = failed - taken
        if failed:
            cause = r["check_name"]
            n = r.get("failing_rows")
            if n:
                cause += f": {n} failing row{'s' if n != 1 else ''}"
            sample = _first_sample(r.get("sample"))
            if sample:
                cause += f", e.g. {sample}"
            elif r.get("detail") and not n:
                cause += f": {str(r['detail'])[:120]}"
            out.setdefault(key, []).append((failed, "check_failed", cause))
    return out
