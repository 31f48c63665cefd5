"""A JSON schema for the OpenLineage run events lakehouse emits, written for these tests
from the required fields of the OpenLineage 2-0-2 spec and its facet specs (it is not the
official schema file): every event, dataset and facet is checked for the fields the spec
requires and for their types."""

from __future__ import annotations

from typing import Any

UUID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
DATE_TIME = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$"


def facet(required: list[str] | None = None, properties: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every facet: ``_producer`` and ``_schemaURL`` (URIs) plus its own required fields."""
    return {
        "type": "object",
        "required": ["_producer", "_schemaURL", *(required or [])],
        "properties": {
            "_producer": {"type": "string", "format": "uri", "minLength": 1},
            "_schemaURL": {"type": "string", "format": "uri", "pattern": "^https?://"},
            **(properties or {}),
        },
    }


INPUT_FIELD = {
    "type": "object",
    "required": ["namespace", "name", "field"],
    "properties": {
        "namespace": {"type": "string"}, "name": {"type": "string"}, "field": {"type": "string"},
        "transformations": {"type": "array", "items": {
            "type": "object", "required": ["type"],
            "properties": {"type": {"enum": ["DIRECT", "INDIRECT"]},
                           "subtype": {"enum": ["IDENTITY", "TRANSFORMATION", "AGGREGATION", "JOIN", "GROUP_BY",
                                                "FILTER", "SORT", "WINDOW", "CONDITIONAL"]},
                           "description": {"type": "string"}, "masking": {"type": "boolean"}}}},
    },
}

PARTITION_CONDITION = {
    "type": "object",
    "required": ["type"],
    "properties": {
        "type": {"const": "partition"},
        "partitions": {"type": "array", "items": {
            "type": "object", "required": ["dimensions"],
            "properties": {"dimensions": {"type": "object"}, "identifier": {"type": "string"}}}},
    },
}

DATASET_FACETS = {
    "schema": facet(properties={"fields": {"type": "array", "items": {
        "type": "object", "required": ["name"],
        "properties": {"name": {"type": "string"}, "type": {"type": "string"},
                       "ordinal_position": {"type": "integer", "minimum": 1}}}}}),
    "columnLineage": facet(["fields"], {
        "fields": {"type": "object", "additionalProperties": {
            "type": "object", "required": ["inputFields"],
            "properties": {"inputFields": {"type": "array", "items": INPUT_FIELD}}}},
        "dataset": {"type": "array", "items": INPUT_FIELD},
    }),
    "version": facet(["datasetVersion"], {"datasetVersion": {"type": "string"}}),
    "storage": facet(["storageLayer"], {"storageLayer": {"type": "string"}, "fileFormat": {"type": "string"}}),
    "dataSource": facet(properties={"name": {"type": "string"}, "uri": {"type": "string", "format": "uri"}}),
}

DATASET = {
    "type": "object",
    "required": ["namespace", "name"],
    "properties": {
        "namespace": {"type": "string", "minLength": 1},
        "name": {"type": "string", "minLength": 1},
        "facets": {"type": "object", "properties": DATASET_FACETS, "additionalProperties": facet()},
    },
}

INPUT = {"allOf": [DATASET, {"properties": {"inputFacets": {"type": "object", "properties": {
    "subset": facet(["inputCondition"], {"inputCondition": PARTITION_CONDITION}),
}, "additionalProperties": facet()}}}]}

OUTPUT = {"allOf": [DATASET, {"properties": {"outputFacets": {"type": "object", "properties": {
    "outputStatistics": facet(properties={"rowCount": {"type": "integer", "minimum": 0},
                                          "size": {"type": "integer", "minimum": 0},
                                          "fileCount": {"type": "integer", "minimum": 0}}),
    "subset": facet(["outputCondition"], {"outputCondition": PARTITION_CONDITION}),
}, "additionalProperties": facet()}}}]}

RUN_FACETS = {
    "parent": facet(["run", "job"], {
        "run": {"type": "object", "required": ["runId"], "properties": {"runId": {"type": "string",
                                                                                  "pattern": UUID}}},
        "job": {"type": "object", "required": ["namespace", "name"],
                "properties": {"namespace": {"type": "string"}, "name": {"type": "string"}}},
        "root": {"type": "object", "required": ["run", "job"]},
    }),
    "errorMessage": facet(["message", "programmingLanguage"], {"message": {"type": "string"},
                                                             "programmingLanguage": {"type": "string"}}),
    "nominalTime": facet(["nominalStartTime"], {"nominalStartTime": {"type": "string", "pattern": DATE_TIME},
                                                "nominalEndTime": {"type": "string", "pattern": DATE_TIME}}),
    "processing_engine": facet(["version"], {"version": {"type": "string"}, "name": {"type": "string"}}),
    "lakehouse": facet(["runId", "stepId", "codeVersion"]),
    "tags": facet(properties={"tags": {"type": "array", "items": {
        "type": "object", "required": ["key", "value"],
        "properties": {"key": {"type": "string"}, "value": {"type": "string"}, "source": {"type": "string"}}}}}),
}

RUN_EVENT: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["eventTime", "producer", "schemaURL", "run", "job"],
    "properties": {
        "eventTime": {"type": "string", "pattern": DATE_TIME},
        "producer": {"type": "string", "format": "uri", "minLength": 1},
        "schemaURL": {"type": "string", "pattern": r"^https://openlineage\.io/spec/\d+-\d+-\d+/OpenLineage\.json"},
        "eventType": {"enum": ["START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"]},
        "run": {"type": "object", "required": ["runId"], "properties": {
            "runId": {"type": "string", "pattern": UUID},
            "facets": {"type": "object", "properties": RUN_FACETS, "additionalProperties": facet()},
        }},
        "job": {"type": "object", "required": ["namespace", "name"], "properties": {
            "namespace": {"type": "string", "minLength": 1}, "name": {"type": "string", "minLength": 1},
            "facets": {"type": "object", "properties": {
                "jobType": facet(["processingType", "integration"], {
                    "processingType": {"enum": ["BATCH", "STREAMING"]}, "integration": {"type": "string"}}),
            }, "additionalProperties": facet()},
        }},
        "inputs": {"type": "array", "items": INPUT},
        "outputs": {"type": "array", "items": OUTPUT},
    },
}
