"""The EmbeddingJob CRD, generated from the spec contract (``embedding_job.api``).

``python -m embedding_operator.crd`` prints it; ``make sync-crds`` writes it to ``crds/`` and a
test fails when the committed copy drifts from what this module generates.
"""

from __future__ import annotations

import copy
import sys
from typing import Any

import yaml

from embedding_job.api import (
    GROUP,
    KIND,
    MAX_NAME_LENGTH,
    PLURAL,
    SHORT_NAME,
    VERSION,
    EmbeddingJobSpec,
    EmbeddingJobStatus,
)

_DROP = {"title", "additionalProperties", "$defs", "propertyNames"}
#: Every spec field but suspend is fixed once the job exists: each attempt of the job (a retry,
#: a resume after suspend) reads its spec again, and must read what the first one read.
_MUTABLE = {"suspend"}
_IMMUTABLE = [
    field.alias or name
    for name, field in EmbeddingJobSpec.model_fields.items()
    if name not in _MUTABLE
]


def _structural(node: Any, defs: dict[str, Any]) -> Any:
    """Pydantic JSON Schema → Kubernetes structural OpenAPI v3 (refs inlined, nulls → nullable)."""
    if isinstance(node, list):
        return [_structural(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "patternProperties" in node:
        # Pydantic's rule for constrained map keys; neither it nor propertyNames is structural.
        # Maps of labels carry a CEL rule for their keys instead (kube_names.label_map_schema).
        (values,) = node["patternProperties"].values()
        rest = {k: v for k, v in node.items() if k != "patternProperties"}
        return _structural({**rest, "additionalProperties": values}, defs)
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
        },
        *schema.get("x-kubernetes-validations", []),
    ]
    return schema


def status_schema() -> dict[str, Any]:
    """The structural schema of ``status`` (written by the operator and the job only)."""
    raw = EmbeddingJobStatus.model_json_schema(by_alias=True, mode="serialization")
    schema: dict[str, Any] = _omitted_not_null(_structural(raw, raw.get("$defs", {})))
    return schema


def _omitted_not_null(node: Any) -> Any:
    """Status fields are left out, never null (a merge patch's null deletes the key)."""
    if isinstance(node, list):
        return [_omitted_not_null(item) for item in node]
    if not isinstance(node, dict):
        return node
    return {
        key: " ".join(value.split()) if key == "description" else _omitted_not_null(value)
        for key, value in node.items()
        if key != "nullable"
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
                        {"name": "Model", "type": "string", "jsonPath": ".status.model"},
                        {
                            "name": "Rows",
                            "type": "integer",
                            "jsonPath": ".status.progress.rowsDone",
                        },
                        {"name": "Output", "type": "string", "jsonPath": ".status.output.uri"},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                        {
                            "name": "Images/s",
                            "type": "number",
                            "jsonPath": ".status.progress.imagesPerSecond",
                            "description": "Rows per second over the last minute.",
                            "priority": 1,
                        },
                        {
                            "name": "ETA-Seconds",
                            "type": "integer",
                            "jsonPath": ".status.progress.remainingSeconds",
                            "description": "Estimated seconds until every row is done.",
                            "priority": 1,
                        },
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
    header = "# Generated by `make sync-crds` from embedding_job.api; do not edit by hand.\n"
    return header + yaml.safe_dump(build_crd(), sort_keys=False, width=100)


if __name__ == "__main__":
    sys.stdout.write(render())
