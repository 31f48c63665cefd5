"""OpenLineage events of asset steps: every emitted event is parsed back into
openlineage-python's typed event and facet classes (and must serialize to exactly what
was emitted) and validated against a JSON schema written from the spec's required
fields (tests/openlineage_schema.py); HTTP events arrive on a local server (issue: lineage)."""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema
import polars as pl
import pytest
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import (
    base_subset_dataset,
    column_lineage_dataset,
    dataset_version_dataset,
    datasource_dataset,
    error_message_run,
    job_type_job,
    nominal_time_run,
    output_statistics_output_dataset,
    parent_run,
    processing_engine_run,
    schema_dataset,
    storage_dataset,
    tags_run,
)
from openlineage.client.serde import Serde
from openlineage_schema import RUN_EVENT  # tests/openlineage_schema.py

import lakehouse as lh
from lakehouse.execution.openlineage import _facet_class, run_uuid, transport_config

# ------------------------------------------------------------------ typed parsing


def _facet(cls: Any, data: dict[str, Any], **nested: Any) -> Any:
    body = {k: v for k, v in data.items() if k not in ("_producer", "_schemaURL")}
    body.update(nested)
    obj = cls(producer=data["_producer"], **body)
    assert obj._schemaURL == data["_schemaURL"], (cls, data["_schemaURL"])
    return obj


def _input_field(d: dict[str, Any]) -> Any:
    cld = column_lineage_dataset
    return cld.InputField(namespace=d["namespace"], name=d["name"], field=d["field"],
                          transformations=[cld.Transformation(**t) for t in d.get("transformations", [])])


def _condition(d: dict[str, Any]) -> Any:
    assert d["type"] == "partition"
    return base_subset_dataset.PartitionSubsetCondition(
        partitions=[base_subset_dataset.Partition(**p) for p in d["partitions"]])


def _dataset_facets(facets: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, d in facets.items():
        if name == "schema":
            out[name] = _facet(schema_dataset.SchemaDatasetFacet, d, fields=[
                schema_dataset.SchemaDatasetFacetFields(**f) for f in d["fields"]])
        elif name == "columnLineage":
            cld = column_lineage_dataset
            out[name] = _facet(cld.ColumnLineageDatasetFacet, d, fields={
                k: cld.Fields(inputFields=[_input_field(i) for i in v["inputFields"]])
                for k, v in d["fields"].items()}, dataset=[_input_field(i) for i in d.get("dataset", [])])
        elif name == "version":
            out[name] = _facet(dataset_version_dataset.DatasetVersionDatasetFacet, d)
        elif name == "storage":
            out[name] = _facet(storage_dataset.StorageDatasetFacet, d)
        elif name == "dataSource":
            out[name] = _facet(datasource_dataset.DatasourceDatasetFacet, d)
        else:
            raise AssertionError(f"unexpected dataset facet {name}")
    return out


def typed(event: dict[str, Any]) -> RunEvent:
    """The event as openlineage-python's classes (their validators run on construction)."""
    run_facets: dict[str, Any] = {}
    for name, d in event["run"].get("facets", {}).items():
        if name == "parent":
            pr = parent_run
            run_facets[name] = _facet(pr.ParentRunFacet, d, run=pr.Run(**d["run"]), job=pr.Job(**d["job"]),
                                      root=pr.Root(run=pr.RootRun(**d["root"]["run"]),
                                                   job=pr.RootJob(**d["root"]["job"])))
        elif name == "processing_engine":
            run_facets[name] = _facet(processing_engine_run.ProcessingEngineRunFacet, d)
        elif name == "errorMessage":
            run_facets[name] = _facet(error_message_run.ErrorMessageRunFacet, d)
        elif name == "nominalTime":
            run_facets[name] = _facet(nominal_time_run.NominalTimeRunFacet, d)
        elif name == "lakehouse":
            run_facets[name] = _facet(_facet_class(), d)
        elif name == "tags":  # added by the openlineage client itself
            run_facets[name] = _facet(tags_run.TagsRunFacet, d, tags=[
                tags_run.TagsRunFacetFields(**t) for t in d["tags"]])
        else:
            raise AssertionError(f"unexpected run facet {name}")
    job_facets = {name: _facet(job_type_job.JobTypeJobFacet, d) for name, d in event["job"].get("facets", {}).items()}
    inputs = []
    for d in event.get("inputs", []):
        in_facets = {k: _facet(base_subset_dataset.InputSubsetInputDatasetFacet, v,
                               inputCondition=_condition(v["inputCondition"]))
                     for k, v in d.get("inputFacets", {}).items()}
        inputs.append(InputDataset(namespace=d["namespace"], name=d["name"], facets=_dataset_facets(d["facets"]),
                                   inputFacets=in_facets))
    outputs = []
    for d in event.get("outputs", []):
        out_facets: dict[str, Any] = {}
        for k, v in d.get("outputFacets", {}).items():
            if k == "outputStatistics":
                out_facets[k] = _facet(output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet, v)
            elif k == "subset":
                out_facets[k] = _facet(base_subset_dataset.OutputSubsetOutputDatasetFacet, v,
                                       outputCondition=_condition(v["outputCondition"]))
            else:
                raise AssertionError(f"unexpected output facet {k}")
        outputs.append(OutputDataset(namespace=d["namespace"], name=d["name"], facets=_dataset_facets(d["facets"]),
                                     outputFacets=out_facets))
    return RunEvent(eventType=RunState(event["eventType"]), eventTime=event["eventTime"],
                    run=Run(runId=event["run"]["runId"], facets=run_facets),
                    job=Job(namespace=event["job"]["namespace"], name=event["job"]["name"], facets=job_facets),
                    inputs=inputs, outputs=outputs, producer=event["producer"])


def check(events: list[dict[str, Any]]) -> list[RunEvent]:
    """Schema-validate and type every event; the typed event serializes to the same JSON."""
    out = []
    validator = jsonschema.Draft202012Validator(RUN_EVENT, format_checker=jsonschema.FormatChecker())
    for event in events:
        validator.validate(event)
        t = typed(event)
        assert Serde.to_dict(t) == event
        out.append(t)
    return out


def read_events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ------------------------------------------------------------------------ assets


def pipeline(fail: bool = False) -> list:
    @lh.asset
    def orders() -> pl.DataFrame:
        return pl.DataFrame({"id": [1, 2, 3], "customer": ["a", "b", "a"], "amount": [10.0, 20.0, 5.0]})

    @lh.asset
    def customers() -> pl.DataFrame:
        return pl.DataFrame({"customer": ["a", "b"], "country": ["de", "fr"]})

    @lh.asset
    def enriched(orders: pl.LazyFrame, customers: pl.LazyFrame) -> pl.LazyFrame:
        if fail:
            raise RuntimeError("boom in enriched")
        return orders.join(customers, on="customer").select("id", "country", net=pl.col("amount") * 0.8)

    @lh.asset(engine="duckdb")
    def by_country(enriched):
        return "select country, sum(net) as revenue from enriched group by country"

    return [orders, customers, enriched, by_country]


# -------------------------------------------------------------------------- tests


def test_file_transport_events_are_valid_and_complete(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    lake = lh.Lakehouse(tmp_path / "lake", assets=pipeline(),
                        openlineage={"transport": "file", "path": str(path), "namespace": "shop"})
    result = lake.materialize()
    events = check(read_events(path))
    order = [(e.job.name, e.eventType.value) for e in events]
    assert sorted(order) == sorted((job, state) for job in ("orders", "customers", "enriched", "by_country")
                                   for state in ("START", "COMPLETE"))
    pos = {item: i for i, item in enumerate(order)}
    for job in ("orders", "customers", "enriched", "by_country"):
        assert pos[(job, "START")] < pos[(job, "COMPLETE")]
    assert pos[("enriched", "START")] > max(pos[("orders", "COMPLETE")], pos[("customers", "COMPLETE")])
    assert pos[("by_country", "START")] > pos[("enriched", "COMPLETE")]
    raw = read_events(path)
    namespace = f"file://{tmp_path / 'lake'}"
    parent = run_uuid(result.run_id)
    for e in raw:
        assert e["job"]["namespace"] == "shop"
        assert e["run"]["facets"]["parent"]["run"]["runId"] == parent
        job = e["run"]["facets"]["parent"]["job"]
        assert (job["namespace"], job["name"]) == ("shop", "materialize")
        assert e["run"]["facets"]["lakehouse"]["runId"] == result.run_id
        assert [o["namespace"] for o in e["outputs"]] == [namespace]
        assert [o["name"] for o in e["outputs"]] == [e["job"]["name"]]
    # START and COMPLETE of one step share its run id; steps differ
    ids = {(e["job"]["name"], e["eventType"]): e["run"]["runId"] for e in raw}
    assert ids[("enriched", "START")] == ids[("enriched", "COMPLETE")] != ids[("orders", "START")]

    done = {e["job"]["name"]: e for e in raw if e["eventType"] == "COMPLETE"}
    enriched = done["enriched"]
    assert sorted((i["namespace"], i["name"], i["facets"]["version"]["datasetVersion"])
                  for i in enriched["inputs"]) == [(namespace, "customers", "0"), (namespace, "orders", "0")]
    out = enriched["outputs"][0]
    assert [(f["name"], f["type"], f["ordinal_position"]) for f in out["facets"]["schema"]["fields"]] == [
        ("id", "int64", 1), ("country", "string", 2), ("net", "double", 3)]
    assert out["facets"]["version"]["datasetVersion"] == "0"
    assert out["facets"]["storage"]["storageLayer"] == "delta"
    assert out["outputFacets"]["outputStatistics"]["rowCount"] == 3
    table_dir = tmp_path / "lake" / "enriched"
    assert out["outputFacets"]["outputStatistics"]["size"] == sum(
        p.stat().st_size for p in table_dir.rglob("*.parquet") if "_stage" not in str(p) and "__lakehouse" not in str(p))
    lineage = out["facets"]["columnLineage"]
    assert lineage["fields"]["net"]["inputFields"] == [{
        "namespace": namespace, "name": "orders", "field": "amount",
        "transformations": [{"type": "DIRECT", "subtype": "TRANSFORMATION", "description": "transformed"}]}]
    assert lineage["fields"]["country"]["inputFields"][0]["transformations"][0]["subtype"] == "IDENTITY"
    assert {(i["name"], i["field"]) for i in lineage["dataset"]} == {("orders", "customer"), ("customers", "customer")}
    assert all(i["transformations"][0]["type"] == "INDIRECT" for i in lineage["dataset"])
    agg = done["by_country"]["outputs"][0]["facets"]["columnLineage"]["fields"]["revenue"]["inputFields"]
    assert agg[0]["name"] == "enriched" and agg[0]["transformations"][0]["subtype"] == "AGGREGATION"
    # roots read nothing; their columns are unknown, which OpenLineage cannot express: no facet
    assert done["orders"]["inputs"] == []
    assert "columnLineage" not in done["orders"]["outputs"][0]["facets"]


def test_iceberg_outputs_report_bytes_and_layer(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    assets = pipeline()
    lake = lh.Lakehouse(tmp_path / "lake", assets=assets, format="iceberg",
                        openlineage={"transport": "file", "path": str(path)})
    lake.materialize()
    raw = read_events(path)
    check(raw)
    done = {e["job"]["name"]: e for e in raw if e["eventType"] == "COMPLETE"}
    out = done["enriched"]["outputs"][0]
    assert out["facets"]["storage"]["storageLayer"] == "iceberg"
    assert out["facets"]["version"]["datasetVersion"] == lake.table("enriched").version
    assert out["outputFacets"]["outputStatistics"]["size"] > 0
    assert "net" in out["facets"]["columnLineage"]["fields"]


def test_second_run_reuses_the_stored_column_lineage(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    lake = lh.Lakehouse(tmp_path / "lake", assets=pipeline(), openlineage={"transport": "file", "path": str(path)})
    lake.materialize()
    path.unlink()
    lake.materialize(force=True)  # no analysis this time: the facet comes from the catalog
    done = {e["job"]["name"]: e for e in read_events(path) if e["eventType"] == "COMPLETE"}
    check(list(done.values()))
    assert "net" in done["enriched"]["outputs"][0]["facets"]["columnLineage"]["fields"]
    assert done["enriched"]["outputs"][0]["facets"]["version"]["datasetVersion"] == "1"


def test_failed_step_emits_fail_with_the_error(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    lake = lh.Lakehouse(tmp_path / "lake", assets=pipeline(fail=True),
                        openlineage={"transport": "file", "path": str(path)})
    result = lake.materialize(raise_on_error=False)
    assert not result.ok
    events = check(read_events(path))
    states = [(e.job.name, e.eventType.value) for e in events]
    assert ("enriched", "FAIL") in states
    assert ("by_country", "START") not in states  # never started: its upstream failed
    fail = next(e for e in read_events(path) if e["eventType"] == "FAIL")
    assert "boom in enriched" in fail["run"]["facets"]["errorMessage"]["message"]
    assert fail["run"]["facets"]["errorMessage"]["programmingLanguage"] == "PYTHON"
    assert fail["run"]["facets"]["lakehouse"]["status"] == "failed"


def test_partitioned_steps_carry_subsets_and_nominal_time(tmp_path: Path) -> None:
    days = lh.daily(start="2013-01-01", end="2013-02-01")

    @lh.asset(partitions=days, partition_column="day", code_version="1")
    def events(ctx: lh.Context) -> pl.DataFrame:
        d = pl.date_range(ctx.partition.start.date(), ctx.partition.end.date(), "1d", eager=True, closed="left")
        return pl.DataFrame({"day": d, "n": list(range(len(d)))})

    @lh.asset(partitions=days, partition_column="day", code_version="1")
    def doubled(events: pl.LazyFrame) -> pl.LazyFrame:
        return events.with_columns(n=pl.col("n") * 2)

    path = tmp_path / "events.jsonl"
    lake = lh.Lakehouse(tmp_path / "lake", assets=[events, doubled], openlineage={"transport": "file",
                                                                                   "path": str(path)})
    lake.materialize(partitions="2013-01-03..2013-01-04")
    raw = read_events(path)
    check(raw)
    done = next(e for e in raw if e["job"]["name"] == "doubled" and e["eventType"] == "COMPLETE")
    assert done["run"]["facets"]["nominalTime"]["nominalStartTime"].startswith("2013-01-03T00:00:00")
    assert done["run"]["facets"]["nominalTime"]["nominalEndTime"].startswith("2013-01-05T00:00:00")
    assert done["run"]["facets"]["lakehouse"]["partitions"] == "2013-01-03..2013-01-04"
    parts = done["outputs"][0]["outputFacets"]["subset"]["outputCondition"]["partitions"]
    assert [p["identifier"] for p in parts] == ["2013-01-03", "2013-01-04"]
    assert parts[0]["dimensions"] == {"day": "2013-01-03"}
    consumed = done["inputs"][0]["inputFacets"]["subset"]["inputCondition"]["partitions"]
    assert [p["identifier"] for p in consumed] == ["2013-01-03", "2013-01-04"]
    assert done["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"] == 2


class _Receiver(BaseHTTPRequestHandler):
    events: list[dict[str, Any]]
    paths: list[str]

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.events.append(json.loads(body))  # type: ignore[attr-defined]
        self.server.paths.append(self.path)  # type: ignore[attr-defined]
        self.server.headers.append(dict(self.headers))  # type: ignore[attr-defined]
        self.send_response(201)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def receiver() -> Iterator[ThreadingHTTPServer]:
    """An OpenLineage HTTP receiver on 127.0.0.1 (what Marquez's /api/v1/lineage does)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    server.events, server.paths, server.headers = [], [], []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_http_transport_posts_every_event(tmp_path: Path, receiver: ThreadingHTTPServer) -> None:
    url = f"http://127.0.0.1:{receiver.server_address[1]}"
    lake = lh.Lakehouse(tmp_path / "lake", assets=pipeline(),
                        openlineage={"transport": "http", "url": url, "api_key": "secret-token"})
    lake.materialize()
    events = receiver.events  # type: ignore[attr-defined]
    assert len(events) == 8
    check(events)
    assert set(receiver.paths) == {"/api/v1/lineage"}  # type: ignore[attr-defined]
    assert all(h.get("Authorization") == "Bearer secret-token" for h in receiver.headers)  # type: ignore[attr-defined]
    assert [e["eventType"] for e in events if e["job"]["name"] == "by_country"] == ["START", "COMPLETE"]


def test_emission_failures_never_fail_a_run(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    lake = lh.Lakehouse(tmp_path / "lake", assets=pipeline(),
                        openlineage={"transport": "http", "url": f"http://127.0.0.1:{port}", "timeout": 0.5,
                                     "retries": 0})
    with caplog.at_level(logging.WARNING, logger="lakehouse"):
        result = lake.materialize()
    assert result.ok and lake.read("by_country").height == 2
    sent = [r for r in caplog.records if "could not send an OpenLineage" in r.getMessage()]
    assert len(sent) == 8
    assert all(r.run_id == result.run_id for r in sent)

    # a file that cannot be written: logged too, the run still succeeds
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("")
    lake2 = lh.Lakehouse(tmp_path / "lake2", assets=pipeline(),
                         openlineage={"transport": "file", "path": str(blocked / "events.jsonl")})
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="lakehouse"):
        assert lake2.materialize().ok
    assert any("could not send an OpenLineage" in r.getMessage() for r in caplog.records)


def test_configuration_errors_are_clear() -> None:
    with pytest.raises(lh.ConfigError, match="transport"):
        lh.Lakehouse("/tmp/nowhere", assets=[], openlineage={"path": "x"})
    with pytest.raises(ValueError, match="needs \"url\""):
        transport_config({"transport": "http"})
    with pytest.raises(ValueError, match="unknown OpenLineage transport"):
        transport_config({"transport": "carrier-pigeon"})
    assert transport_config({"transport": {"type": "console"}}) == {"type": "console"}
    assert transport_config({"transport": "file", "path": "e.jsonl"})["append"] is True
