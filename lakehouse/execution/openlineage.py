"""OpenLineage run events for asset steps, emitted by the coordinator (layer 4).

Configured with ``Lakehouse(..., openlineage={...})``:

``{"transport": "file", "path": "events.jsonl"}``
    one JSON event per line appended to ``path``.
``{"transport": "http", "url": "http://marquez:5000"}``
    POSTed to ``url`` + ``endpoint`` (default ``api/v1/lineage``); optional ``timeout``
    (seconds, default 5), ``api_key``, ``headers``, ``retries`` (default 1).
``{"transport": {...}}``
    any openlineage-python transport configuration (``{"type": "kafka", ...}``).

Optional keys: ``namespace`` (the jobs' namespace, default ``"lakehouse"``) and
``flush_timeout`` (seconds the end of a run waits for unsent events, default 60).

Each asset step emits ``START`` when it is submitted and ``COMPLETE`` or ``FAIL`` when its
result arrives. Events are built and sent in order by one background thread of the
coordinating process (never by workers), so a slow receiver does not hold up the
scheduling; the end of the run waits for them. The job is the asset; inputs and outputs
are the tables, with the warehouse URI as dataset namespace and the asset key as dataset
name. Events carry the schema, column lineage, output statistics (rows, bytes when the
format reports them), table versions, the partitions (subset facets and a ``lakehouse``
run facet), and the run of ``materialize()`` as parent. Building or sending an event
never fails a run: errors are logged on the ``lakehouse`` logger.
"""

from __future__ import annotations

import datetime as _dt
import functools
import queue
import threading
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .. import _logging

if TYPE_CHECKING:  # pragma: no cover
    from .step import Step, StepResult

log = _logging.get_logger()

PRODUCER = "https://github.com/lakehouse-project/lakehouse"
#: The JSON schema of the custom ``lakehouse`` run facet (documented in docs/lineage.md).
FACET_SCHEMA = "https://github.com/lakehouse-project/lakehouse/blob/main/docs/lineage.md#the-lakehouse-run-facet"
DEFAULT_NAMESPACE = "lakehouse"
RUN_JOB = "materialize"
#: At most this many partition keys are listed in a subset facet.
MAX_SUBSET_KEYS = 1000

_KIND_TO_OL = {
    "identity": ("DIRECT", "IDENTITY"),
    "transformed": ("DIRECT", "TRANSFORMATION"),
    "aggregated": ("DIRECT", "AGGREGATION"),
    "filter/join key": ("INDIRECT", "FILTER"),
}


def run_uuid(text: str) -> str:
    """A stable UUID for a lakehouse run or step id (OpenLineage run ids are UUIDs)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"lakehouse:{text}"))


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat()


def _iso(ts: Any) -> str:
    if isinstance(ts, _dt.datetime):
        value = ts if ts.tzinfo else ts.replace(tzinfo=_dt.timezone.utc)
        return value.astimezone(_dt.timezone.utc).isoformat()
    return str(ts)


def warehouse_namespace(uri: str) -> str:
    """The dataset namespace for a warehouse: its URI (``file://`` for local paths)."""
    text = uri.rstrip("/")
    return text if "://" in text else f"file://{text}"


def transport_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The openlineage-python transport configuration for a lakehouse ``openlineage=`` setting."""
    transport = config.get("transport")
    if isinstance(transport, Mapping):
        return dict(transport)
    if transport == "file":
        path = config.get("path")
        if not path:
            raise ValueError('openlineage={"transport": "file"} needs "path"')
        return {"type": "file", "log_file_path": str(path), "append": True}
    if transport == "http":
        url = config.get("url")
        if not url:
            raise ValueError('openlineage={"transport": "http"} needs "url"')
        out: dict[str, Any] = {
            "type": "http",
            "url": str(url),
            "endpoint": config.get("endpoint", "api/v1/lineage"),
            "timeout": float(config.get("timeout", 5.0)),
            "retry": {
                "total": int(config.get("retries", 1)),
                "backoff_factor": 0.2,
                "status_forcelist": [500, 502, 503, 504],
            },
        }
        if config.get("api_key"):
            out["auth"] = {"type": "api_key", "apiKey": str(config["api_key"])}
        if config.get("headers"):
            out["custom_headers"] = dict(config["headers"])
        return out
    if transport == "console":
        return {"type": "console"}
    raise ValueError(
        f"unknown OpenLineage transport {transport!r}: use 'file', 'http' or a transport mapping"
    )


class OpenLineageEmitter:
    """Builds and sends the events of one lakehouse (one per ``materialize()`` run)."""

    def __init__(self, lake: Any, config: Mapping[str, Any], run_id: str) -> None:
        from openlineage.client import OpenLineageClient

        self.lake = lake
        self.config = dict(config)
        self.namespace = str(self.config.get("namespace") or DEFAULT_NAMESPACE)
        self.run_id = run_id
        self.parent_uuid = run_uuid(run_id)
        client = self.config.get("client")
        self.client = (
            client
            if client is not None
            else OpenLineageClient(config={"transport": transport_config(self.config)})
        )
        self.dataset_namespace = warehouse_namespace(lake.settings.warehouse_uri)
        self._lineage: dict[tuple[str, str], Any] = {}
        self._stored: dict[tuple[str, str], str] | None = None
        self.sent = 0
        self.failed = 0
        self.flush_timeout = float(self.config.get("flush_timeout", 60.0))
        self._queue: queue.Queue[tuple[str, Step, StepResult | None, str] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._static: dict[str, Any] = {}

    # -- public hooks (called by the coordinator) ---------------------------------------

    def start(self, step: Step) -> None:
        self._put(("START", step, None, _now()))

    def finish(self, step: Step, result: StepResult) -> None:
        state = "COMPLETE" if result.status == "materialized" else "FAIL"
        self._put((state, step, result, _now()))

    def close(self) -> None:
        """Send what is queued (waiting at most ``flush_timeout`` seconds), then stop."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(self.flush_timeout)
        if self._thread.is_alive():
            log.warning(
                "OpenLineage: events of run %s still unsent after %.0f s; they are sent in the "
                "background or lost when the process exits",
                self.run_id,
                self.flush_timeout,
            )
        self._thread = None

    # -- sending (one background thread, in order, off the coordinator's critical path) --

    def _put(self, item: tuple[str, Step, StepResult | None, str]) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._sender, name=f"lakehouse-openlineage-{self.run_id}", daemon=True
            )
            self._thread.start()
        self._queue.put(item)

    def _sender(self) -> None:
        with _logging.bind(run_id=self.run_id):
            while True:
                item = self._queue.get()
                if item is None:
                    return
                state, step, result, when = item
                with _logging.bind(asset=step.asset, partition=step.partitions_text):
                    self._emit(functools.partial(self._event, state, step, result, when))

    # -- building -----------------------------------------------------------------------

    def _emit(self, build: Any) -> None:
        try:
            event = build()
        except Exception as exc:
            self.failed += 1
            log.warning("could not build an OpenLineage event: %s: %s", type(exc).__name__, exc)
            return
        try:
            self.client.emit(event)
            self.sent += 1
        except Exception as exc:
            self.failed += 1
            log.warning(
                "could not send an OpenLineage %s event for %s: %s: %s",
                event.eventType.value,
                event.job.name,
                type(exc).__name__,
                exc,
            )

    def _event(
        self, state: str, step: Step, result: StepResult | None, when: str | None = None
    ) -> Any:
        from openlineage.client.event_v2 import InputDataset, Job, Run, RunEvent, RunState
        from openlineage.client.facet_v2 import (
            error_message_run,
            job_type_job,
            parent_run,
            processing_engine_run,
        )

        if not self._static:  # the same for every event of the run
            self._static.update(
                {
                    "parent": parent_run.ParentRunFacet(
                        run=parent_run.Run(runId=self.parent_uuid),
                        job=parent_run.Job(namespace=self.namespace, name=RUN_JOB),
                        root=parent_run.Root(
                            run=parent_run.RootRun(runId=self.parent_uuid),
                            job=parent_run.RootJob(namespace=self.namespace, name=RUN_JOB),
                        ),
                        producer=PRODUCER,
                    ),
                    "processing_engine": processing_engine_run.ProcessingEngineRunFacet(
                        version=_version(),
                        name="lakehouse",
                        openlineageAdapterVersion=_ol_version(),
                        producer=PRODUCER,
                    ),
                    "jobType": job_type_job.JobTypeJobFacet(
                        processingType="BATCH",
                        integration="LAKEHOUSE",
                        jobType="ASSET",
                        producer=PRODUCER,
                    ),
                }
            )
        run_facets: dict[str, Any] = {
            "parent": self._static["parent"],
            "processing_engine": self._static["processing_engine"],
            "lakehouse": _lakehouse_facet(step, result),
        }
        nominal = self._nominal(step)
        if nominal is not None:
            run_facets["nominalTime"] = nominal
        if result is not None and result.status != "materialized":
            run_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
                message=result.error or result.status,
                programmingLanguage="PYTHON",
                producer=PRODUCER,
            )
        job_facets: dict[str, Any] = {"jobType": self._static["jobType"]}
        inputs = [self._input(step, i) for i in range(len(step.inputs))]
        inputs += [
            InputDataset(
                namespace=self.dataset_namespace,
                name=d.asset,
                facets=self._version_facets(d.version),
            )
            for d in step.deps
        ]
        outputs = [self._output(step, result)]
        event_time = when or _now()
        return RunEvent(
            eventType=RunState[state],
            eventTime=event_time,
            run=Run(runId=run_uuid(step.step_id), facets=run_facets),
            job=Job(namespace=self.namespace, name=step.asset, facets=job_facets),
            inputs=inputs,
            outputs=outputs,
            producer=PRODUCER,
        )

    def _version_facets(self, version: Any) -> dict[str, Any]:
        from openlineage.client.facet_v2 import dataset_version_dataset

        if version is None:
            return {}
        return {
            "version": dataset_version_dataset.DatasetVersionDatasetFacet(
                datasetVersion=str(version), producer=PRODUCER
            )
        }

    def _input(self, step: Step, index: int) -> Any:
        from openlineage.client.event_v2 import InputDataset
        from openlineage.client.facet_v2 import base_subset_dataset

        inp = step.inputs[index]
        facets = self._version_facets(inp.version.version)
        facets.update(self._storage_facets(inp.ref.format, inp.ref.uri))
        input_facets: dict[str, Any] = {}
        up_spec = (
            self.lake.graph.specs.get(inp.version.asset) if inp.predicate is not None else None
        )
        if up_spec is not None and up_spec.partitions is not None:
            from ..plan import map_up

            keys = _keys(
                up_spec, map_up(self.lake.graph, step.asset, inp.version.asset, step.ranges)
            )
            if keys is not None:
                input_facets["subset"] = base_subset_dataset.InputSubsetInputDatasetFacet(
                    inputCondition=_partition_condition(up_spec, keys), producer=PRODUCER
                )
        return InputDataset(
            namespace=self.dataset_namespace,
            name=inp.version.asset,
            facets=facets,
            inputFacets=input_facets,
        )

    def _storage_facets(self, fmt: str, uri: str) -> dict[str, Any]:
        from openlineage.client.facet_v2 import datasource_dataset, storage_dataset

        return {
            "storage": storage_dataset.StorageDatasetFacet(
                storageLayer=fmt, fileFormat="parquet", producer=PRODUCER
            ),
            "dataSource": datasource_dataset.DatasourceDatasetFacet(
                name=self.dataset_namespace, uri=uri, producer=PRODUCER
            ),
        }

    def _output(self, step: Step, result: StepResult | None) -> Any:
        from openlineage.client.event_v2 import OutputDataset
        from openlineage.client.facet_v2 import (
            base_subset_dataset,
            output_statistics_output_dataset,
            schema_dataset,
        )

        spec = step.spec
        facets: dict[str, Any] = self._storage_facets(step.table.format, step.table.uri)
        output_facets: dict[str, Any] = {}
        if spec.partitions is not None:
            keys = _keys(spec, step.ranges)
            if keys is not None:
                output_facets["subset"] = base_subset_dataset.OutputSubsetOutputDatasetFacet(
                    outputCondition=_partition_condition(spec, keys), producer=PRODUCER
                )
        if result is not None and result.status == "materialized":
            facets.update(self._version_facets(result.version))
            schema = getattr(result, "output_schema", None) or ()
            if schema:
                facets["schema"] = schema_dataset.SchemaDatasetFacet(
                    fields=[
                        schema_dataset.SchemaDatasetFacetFields(
                            name=n, type=t, ordinal_position=i + 1
                        )
                        for i, (n, t) in enumerate(schema)
                    ],
                    producer=PRODUCER,
                )
            lineage = self._column_lineage(step, result)
            if lineage is not None:
                facet = self._lineage_facet(lineage)
                if facet is not None:
                    facets["columnLineage"] = facet
            output_facets["outputStatistics"] = (
                output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
                    rowCount=result.rows, size=getattr(result, "bytes", None), producer=PRODUCER
                )
            )
        return OutputDataset(
            namespace=self.dataset_namespace,
            name=step.asset,
            facets=facets,
            outputFacets=output_facets,
        )

    def _column_lineage(self, step: Step, result: StepResult) -> Any:
        from ..engines.column_lineage import ColumnLineage

        if result.column_lineage:
            return ColumnLineage.from_json(result.column_lineage)
        if self._stored is None:  # one query per run: every stored lineage, parsed on demand
            self._stored = {
                (r["asset"], r["code_version"]): r["column_lineage"]
                for r in self.lake.catalog.rows("code_versions")
                if r.get("column_lineage")
            }
        key = (step.asset, step.code_version)
        if key not in self._lineage:
            self._lineage[key] = ColumnLineage.from_json(self._stored.get(key))
        return self._lineage[key]

    def _lineage_facet(self, lineage: Any) -> Any:
        from openlineage.client.facet_v2 import column_lineage_dataset as cld

        def field(e: Any) -> Any:
            kind, sub = _KIND_TO_OL[e.kind]
            return cld.InputField(
                namespace=self.dataset_namespace,
                name=e.source_asset,
                field=e.source_column,
                transformations=[cld.Transformation(type=kind, subtype=sub, description=e.kind)],
            )

        fields: dict[str, list[Any]] = {}
        dataset: list[Any] = []
        for e in lineage.edges:
            if e.kind not in _KIND_TO_OL or e.source_asset is None or e.source_column is None:
                continue  # unknown: OpenLineage has no way to say it; the column is left out
            if e.column is None:
                dataset.append(field(e))
            else:
                fields.setdefault(e.column, []).append(field(e))
        if not fields and not dataset:
            return None
        return cld.ColumnLineageDatasetFacet(
            fields={name: cld.Fields(inputFields=items) for name, items in fields.items()},
            dataset=dataset,
            producer=PRODUCER,
        )

    def _nominal(self, step: Step) -> Any:
        from openlineage.client.facet_v2 import nominal_time_run

        defn = step.spec.partitions
        if defn is None or not step.ranges or not hasattr(defn, "window_of"):
            return None
        try:
            start, end = defn.window_of(step.ranges)
        except Exception:
            return None
        return nominal_time_run.NominalTimeRunFacet(
            nominalStartTime=_iso(start), nominalEndTime=_iso(end), producer=PRODUCER
        )


_FACET_CLASS: list[Any] = []


def _facet_class() -> Any:
    """The custom ``lakehouse`` run facet (an attrs class, built on first use)."""
    if _FACET_CLASS:
        return _FACET_CLASS[0]
    import attr
    from openlineage.client.generated.base import RunFacet

    @attr.define
    class LakehouseRunFacet(RunFacet):
        """lakehouse's own account of a step: run, code version, partitions, outcome."""

        runId: str
        stepId: str
        codeVersion: str
        reason: str
        format: str
        partitions: str | None = attr.field(default=None)
        inputVersions: list[dict[str, Any]] = attr.field(factory=list)
        status: str | None = attr.field(default=None)
        version: str | None = attr.field(default=None)
        rows: int | None = attr.field(default=None)
        seconds: float | None = attr.field(default=None)
        worker: str | None = attr.field(default=None)

        @staticmethod
        def _get_schema() -> str:
            return FACET_SCHEMA

    _FACET_CLASS.append(LakehouseRunFacet)
    return LakehouseRunFacet


def _lakehouse_facet(step: Step, result: StepResult | None) -> Any:
    props: dict[str, Any] = {
        "runId": step.run_id,
        "stepId": step.step_id,
        "codeVersion": step.code_version,
        "reason": step.reason,
        "partitions": step.partitions_text,
        "format": step.table.format,
        "inputVersions": [{"asset": v.asset, "version": v.version} for v in step.input_versions],
    }
    if result is not None:
        props.update(
            {
                "status": result.status,
                "version": result.version,
                "rows": result.rows,
                "seconds": round(result.seconds, 6),
                "worker": result.worker,
            }
        )
    return _facet_class()(producer=PRODUCER, **props)


def _keys(spec: Any, ranges: Any) -> list[str] | None:
    defn = spec.partitions
    if defn is None or not ranges or len(ranges) > MAX_SUBSET_KEYS:
        return None
    return [defn.key(i) for i in ranges.indices()]


def _partition_condition(spec: Any, keys: Sequence[str]) -> Any:
    from openlineage.client.facet_v2 import base_subset_dataset as bs

    defn = spec.partitions
    cols = list(spec.partition_column)
    parts = []
    for key in keys:
        if hasattr(defn, "split_key"):
            dims: dict[str, Any] = dict(defn.split_key(key))
        else:
            dims = {cols[0] if cols else "partition": key}
        parts.append(bs.Partition(dimensions=dims, identifier=key))
    return bs.PartitionSubsetCondition(partitions=parts)


@functools.lru_cache(maxsize=1)
def _version() -> str:
    try:
        from importlib.metadata import version

        return version("lakehouse")
    except Exception:
        return "0"


@functools.lru_cache(maxsize=1)
def _ol_version() -> str:
    try:
        from importlib.metadata import version

        return version("openlineage-python")
    except Exception:
        return "0"
