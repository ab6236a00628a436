"""Reading a job config: YAML/JSON text, ``--set key.path=value`` overrides, validation."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic.alias_generators import to_camel

from embedding_job.api.base import ConfigError, format_errors
from embedding_job.api.job import EmbeddingJobConfig


def parse_config(data: Mapping[str, Any]) -> EmbeddingJobConfig:
    """Validate a job config mapping (camelCase or snake_case keys), applying defaults.

    Raises ConfigError naming each offending field.
    """
    try:
        return EmbeddingJobConfig.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, EmbeddingJobConfig)) from None


def _parse_scalar(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(data: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides (values parsed as YAML scalars) to a config mapping."""
    result: dict[str, Any] = json.loads(json.dumps(dict(data)))
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError([f"--set {item!r}: expected key.path=value"])
        parts = [to_camel(p) for p in key.strip().split(".")]
        node = result
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError([f"--set {item!r}: {part} is not a section"])
            node = child
        node[parts[-1]] = _parse_scalar(raw)
    return result


def load_config(text: str, overrides: Iterable[str] = ()) -> EmbeddingJobConfig:
    """Parse YAML or JSON config text, apply overrides, validate."""
    try:
        data = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        raise ConfigError([f"<file>: not valid YAML/JSON: {exc}"]) from None
    if not isinstance(data, dict):
        raise ConfigError(["<root>: the config must be a mapping with input and output sections"])
    return config_of(data, overrides)


#: The spec's fields that are the operator's, not the job's.
OPERATOR_FIELDS = frozenset({"cluster", "suspend"})


def config_of(data: Mapping[str, Any], overrides: Iterable[str] = ()) -> EmbeddingJobConfig:
    """The job config in a mapping: a config itself, or a whole EmbeddingJob (its spec's job
    fields; ``cluster`` and ``suspend`` are the operator's). Overrides applied, validated."""
    spec = data.get("spec")
    if data.get("kind") == "EmbeddingJob" and isinstance(spec, Mapping):
        # Everything but the operator's part: a field this job does not know (a spec written
        # for a newer job image) is refused by name, never silently dropped.
        data = {k: v for k, v in spec.items() if k not in OPERATOR_FIELDS}
    return parse_config(apply_overrides(data, overrides))


def json_schema() -> dict[str, Any]:
    """JSON Schema of the wire form (camelCase), for the CRD and documentation."""
    return EmbeddingJobConfig.model_json_schema(by_alias=True, mode="validation")
