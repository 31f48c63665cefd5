"""The step side of column lineage (layer 4).

A step computes column lineage only when the coordinator asks (``Step.column_lineage``:
the asset's code version has none stored yet), so the hot path stays cheap. The probe
marks each input ``LazyFrame`` so the analyser can tell which upstream a part of the
plan reads, records ``LazyFrame.collect()`` calls while the function runs, and analyses
the returned value before it is converted to Arrow.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .step import Step, StepInput


class LineageProbe:
    """Collects what the column-lineage analysers need during one step."""

    def __init__(self, step: Step) -> None:
        self.step = step
        self._salt = uuid.uuid4().hex[:12]
        self._captured: list[tuple[Any, Any]] = []

    def token(self, inp: StepInput) -> str:
        return f"{self._salt}:{inp.param}"

    def mark(self, inp: StepInput, value: Any) -> Any:
        """The prepared input, marked with its table when it is a ``LazyFrame``."""
        if type(value).__module__.split(".")[0] != "polars" or type(value).__name__ != "LazyFrame":
            return value
        try:
            from ..engines.column_lineage import mark

            return mark(value, self.token(inp))
        except Exception:
            return value

    @contextlib.contextmanager
    def capture(self) -> Iterator[None]:
        """Record ``LazyFrame.collect()`` results while the asset function runs."""
        try:
            from ..engines.column_lineage import capture_collects

            cm = capture_collects()
            records = cm.__enter__()
        except Exception:
            yield
            return
        try:
            yield
        finally:
            self._captured = list(records)
            cm.__exit__(None, None, None)

    def sources(self) -> list[Any]:
        from ..engines.column_lineage import SourceTable

        return [
            SourceTable(
                asset=inp.version.asset, uri=inp.ref.uri, name=inp.param, token=self.token(inp)
            )
            for inp in self.step.inputs
        ]

    def analyse(self, value: Any, engine: Any) -> str | None:
        """The lineage of ``value`` as the JSON the catalog stores (``None`` on any error)."""
        try:
            from ..engines.column_lineage import analyse

            result = analyse(
                value, self.sources(), captured=self._captured, con=getattr(engine, "con", None)
            )
            return result.to_json()
        except Exception:
            return None
        finally:
            self._captured = []
