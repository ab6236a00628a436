"""The EmbeddingJob CRD, generated from the spec contract (``embedding_job.spec``).

``python -m embedding_operator.crd`` prints it; ``make sync-crds`` writes it to ``crds/`` and a
test fails when the committed copy drifts from what this module generates.
"""

from __future__ import annotations

import copy
import sys
from typing import Any

import yaml

from embedding_job.spec import MAX_NAME_LENGTH, EmbeddingJobSpec
from embedding_operator import GROUP, KIND, PLURAL, SHORT_NAME, VERSION

PHASES = ["Pending", "Submitted", "Running", "Succeeded", "Failed", "Suspended"]

_DROP = {"title", "additionalProperties", "$defs"}
_IMMUTABLE = ["input", "model", "inference", "output", "errors", "cluster"]


def _structural(node: Any, defs: dict[str, Any]) -> Any:
    """Pydantic JSON Schema → Kubernetes structural OpenAPI v3 (refs inlined, nulls → nullable)."""
    if isinstance(node, list):
        return [_structural(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = copy.deepcopy(defs[node["$ref"].rsplit("/", 1)[-1]])
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _structural(merged, defs)
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o != {"type": "null"}]
        nullable = len(options) < len(node["anyOf"])
        if len(options) != 1:
            raise ValueError(f"cannot express anyOf {node['anyOf']} structurally")
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        merged = {**_structural(options[0], defs), **rest}
        if nullable:
            merged["nullable"] = True
        return _structural(merged, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP or (key == "default" and value is None):
            continue
        if key == "exclusiveMinimum" and not isinstance(value, bool):
            # JSON Schema's numeric bound → OpenAPI v3.0's minimum + boolean flag.
            out["minimum"], out["exclusiveMinimum"] = value, True
        elif key == "properties":
            out[key] = {name: _structural(prop, defs) for name, prop in value.items()}
        else:
            out[key] = _structural(value, defs)
    if node.get("additionalProperties") not in (None, False, True):
        out["additionalProperties"] = _structural(node["additionalProperties"], defs)
    return out


def _object_defaults(schema: dict[str, Any]) -> None:
    """``default: {}`` on nested objects, so the apiserver applies their fields' defaults."""
    required = set(schema.get("required", []))
    for name, prop in schema.get("properties", {}).items():
        if prop.get("type") == "object" and "properties" in prop:
            if not prop.get("nullable") and name not in required:
                prop.setdefault("default", {})
            _object_defaults(prop)
        if prop.get("type") == "array" and isinstance(prop.get("items"), dict):
            _object_defaults(prop["items"])


def spec_schema() -> dict[str, Any]:
    """The structural schema of ``spec``, with the CEL rule that makes it immutable."""
    raw = EmbeddingJobSpec.model_json_schema(by_alias=True, mode="validation")
    schema: dict[str, Any] = _structural(raw, raw.get("$defs", {}))
    _object_defaults(schema)
    unchanged = " && ".join(f"self.{field} == oldSelf.{field}" for field in _IMMUTABLE)
    schema["x-kubernetes-validations"] = [
        {
            "rule": unchanged,
            "message": (
                "spec is immutable once submitted (only spec.suspend may change): "
                "delete and re-create the EmbeddingJob to change it"
            ),
        }
    ]
    return schema


def _condition_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "A condition, per Kubernetes API conventions.",
        "required": ["type", "status"],
        "properties": {
            "type": {"type": "string", "description": "Condition type, e.g. Ready or Failed."},
            "status": {
                "type": "string",
                "enum": ["True", "False", "Unknown"],
                "description": "True, False or Unknown.",
            },
            "reason": {"type": "string", "description": "CamelCase reason for the status."},
            "message": {"type": "string", "description": "Human-readable details."},
            "observedGeneration": {
                "type": "integer",
                "description": "metadata.generation the condition was set for.",
            },
            "lastTransitionTime": {
                "type": "string",
                "format": "date-time",
                "description": "When the status last changed.",
            },
        },
    }


def status_schema() -> dict[str, Any]:
    """The structural schema of ``status`` (written by the operator only)."""

    def text(description: str) -> dict[str, Any]:
        return {"type": "string", "description": description}

    def integer(description: str) -> dict[str, Any]:
        return {"type": "integer", "description": description}

    return {
        "type": "object",
        "description": "Observed state, written by the operator.",
        "properties": {
            "phase": {
                "type": "string",
                "enum": PHASES,
                "description": "Pending, Submitted, Running, Succeeded, Failed or Suspended.",
            },
            "reason": text("CamelCase reason of the current phase."),
            "message": text("Human-readable details of the current phase."),
            "observedGeneration": integer("metadata.generation the status describes."),
            "conditions": {
                "type": "array",
                "description": "Ready, Running, Succeeded, Failed and Suspended conditions.",
                "items": _condition_schema(),
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
            },
            "rayJobName": text("The RayJob that runs this job."),
            "rayClusterName": text("The RayCluster KubeRay created for the RayJob."),
            "jobId": text("Ray job submission id."),
            "dashboardURL": text("Ray dashboard address of the cluster."),
            "startTime": {
                "type": "string",
                "format": "date-time",
                "description": "When the job started running.",
            },
            "completionTime": {
                "type": "string",
                "format": "date-time",
                "description": "When the job finished (succeeded or failed).",
            },
            "progress": {
                "type": "object",
                "description": "Reported by the running job every few seconds (best effort).",
                "properties": {
                    "rowsTotal": integer("Input rows, when known."),
                    "rowsDone": integer("Rows processed (embedded or failed) by this run."),
                    "rowsFailed": integer("Rows that failed so far."),
                    "rowsSkipped": integer("Rows skipped because an earlier run did them."),
                    "imagesPerSecond": {
                        "type": "number",
                        "description": "Average throughput of this run.",
                    },
                    "updatedAt": {
                        "type": "string",
                        "format": "date-time",
                        "description": "When the job last reported.",
                    },
                },
            },
            "jobError": {
                "type": "object",
                "description": (
                    "Why the job itself failed, reported by the job as it exits (its last "
                    "attempt); becomes reason and message when the phase is Failed."
                ),
                "properties": {
                    "reason": text("CamelCase error kind, e.g. ModelNotFound, TooManyFailures."),
                    "message": text("What went wrong and how to fix it."),
                    "time": {
                        "type": "string",
                        "format": "date-time",
                        "description": "When the job reported it.",
                    },
                },
            },
            "output": {
                "type": "object",
                "description": "Where the embeddings are, and what was written.",
                "properties": {
                    "uri": text("Output location (output.uri of the spec)."),
                    "format": text("parquet or lance."),
                    "files": {
                        "type": "array",
                        "items": {"type": "string"},
                        "description": "Data files written, relative to uri.",
                    },
                    "rows": integer("Rows in the output (one per input row)."),
                    "rowsFailed": integer("Rows whose image could not be embedded."),
                    "rowsSkipped": integer("Rows kept from an earlier run (resume)."),
                    "embeddingDim": integer("Length of each embedding."),
                    "model": text("Model that produced the embeddings."),
                    "dtype": text("Inference precision."),
                    "pooling": text("cls or mean."),
                },
            },
        },
    }


def build_crd() -> dict[str, Any]:
    """The CustomResourceDefinition manifest."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": [SHORT_NAME],
                "categories": ["all"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                        {"name": "Model", "type": "string", "jsonPath": ".spec.model.name"},
                        {
                            "name": "Rows",
                            "type": "integer",
                            "jsonPath": ".status.progress.rowsDone",
                        },
                        {"name": "Output", "type": "string", "jsonPath": ".status.output.uri"},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                        {
                            "name": "RayJob",
                            "type": "string",
                            "jsonPath": ".status.rayJobName",
                            "priority": 1,
                        },
                        {
                            "name": "Message",
                            "type": "string",
                            "jsonPath": ".status.message",
                            "priority": 1,
                        },
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": (
                                "EmbeddingJob embeds a set of images with a ViT-family model on "
                                "a KubeRay Ray cluster and writes the vectors to storage."
                            ),
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string", "description": "API version."},
                                "kind": {"type": "string", "description": "EmbeddingJob."},
                                "metadata": {"type": "object"},
                                "spec": spec_schema(),
                                "status": status_schema(),
                            },
                            "x-kubernetes-validations": [
                                {
                                    "rule": f"self.metadata.name.size() <= {MAX_NAME_LENGTH}",
                                    "message": (
                                        f"metadata.name must be at most {MAX_NAME_LENGTH} "
                                        "characters (KubeRay's RayJob name limit)"
                                    ),
                                }
                            ],
                        }
                    },
                }
            ],
        },
    }


def render() -> str:
    """The CRD as YAML, as committed in crds/."""
    header = "# Generated by `make sync-crds` from embedding_job.spec; do not edit by hand.\n"
    return header + yaml.safe_dump(build_crd(), sort_keys=False, width=100)


if __name__ == "__main__":
    sys.stdout.write(render())
