"""The EmbeddingJob resource: its API names, and its spec (the job config plus where it runs).

The one home of every name the API exposes (as KubeRay's ``*_types.go``): the operator validates
user specs with this model and generates the CRD from it, so the two can never disagree.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from embedding_job.api.base import ConfigError, format_errors
from embedding_job.api.cluster import TMP_PATH, ClusterSpec
from embedding_job.api.job import EmbeddingJobConfig
from embedding_job.api.kube_names import DNS_LABEL, AbsolutePath
from embedding_job.api.model import DEFAULT_MODEL, DEFAULT_MODELS_ROOT, MAX_MODELS, ModelSpec

GROUP = "embedding.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "EmbeddingJob"
PLURAL = "embeddingjobs"
SHORT_NAME = "ej"

#: KubeRay refuses RayJob names longer than this; our RayJob carries the EmbeddingJob's name.
MAX_NAME_LENGTH = 47

_SECRET_KEYS = re.compile(
    r"(^|_)(key|secret|token|password|credential)s?$|accesskey|secretkey", re.IGNORECASE
)


class PodModelSpec(ModelSpec):
    """The model of an EmbeddingJob: as the job's, with a path the pods can use."""

    # A relative path means nothing in a pod (and cannot be a mountPath).
    path: AbsolutePath = Field(
        DEFAULT_MODELS_ROOT,
        description="Models root directory in the pods (absolute): the model is loaded from "
        "<path>/<name>.",
    )


def _model_left_out_rule() -> str:
    """CEL: with ``models``, ``model`` is what the apiserver's defaulting made of nothing."""
    defaults = PodModelSpec().model_dump(mode="json", by_alias=True)
    unchanged = " && ".join(
        f"!has(self.model.{key})" if value is None else f"self.model.{key} == {json.dumps(value)}"
        for key, value in defaults.items()
    )
    return f"!has(self.models) || self.models.size() == 0 || !has(self.model) || ({unchanged})"


def named_models(spec: Mapping[str, Any]) -> str:
    """The models an EmbeddingJob's spec (as stored) embeds with, in its order: ``models``'
    names when given (``model`` is then only what defaulting made of nothing), else
    ``model``'s. What its status and ``kubectl get ej`` call its model."""
    chosen = spec.get("models") or [spec.get("model") or {}]
    return ", ".join(str(model.get("name") or DEFAULT_MODEL) for model in chosen)


class EmbeddingJobSpec(EmbeddingJobConfig):
    """spec of an EmbeddingJob: what to embed (the job config) and where to run it."""

    model_config = ConfigDict(
        **EmbeddingJobConfig.model_config,
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": _model_left_out_rule(),
                    "message": "give either model or models: with models, leave model out",
                }
            ]
        },
    )

    model: PodModelSpec = Field(default_factory=PodModelSpec, description="The model and pooling.")
    models: list[PodModelSpec] = Field(
        default_factory=list,
        max_length=MAX_MODELS,
        description=EmbeddingJobConfig.model_fields["models"].description,
        json_schema_extra=EmbeddingJobConfig.model_fields["models"].json_schema_extra,
    )
    cluster: ClusterSpec = Field(default_factory=ClusterSpec, description="The Ray cluster.")
    suspend: bool = Field(
        False, description="Suspend the job (Kueue admission or by hand); the only mutable field."
    )

    @field_validator("cluster", mode="before")
    @classmethod
    def _no_inline_secrets(cls, value: Any) -> Any:
        if isinstance(value, dict):
            inline = [k for k in value if _SECRET_KEYS.search(k)]
            if inline:
                raise ValueError(
                    f"inline credentials {inline} are not accepted: put them in a Secret and use "
                    "storageSecretRef / hfTokenSecretRef"
                )
        return value

    @model_validator(mode="after")
    def _volumes_leave_model_path_to_the_models_claim(self) -> EmbeddingJobSpec:
        if TMP_PATH in self.model_paths():
            # The pods' scratch dir is mounted there: a models volume on top of it would
            # give two mounts at one path, a pod Kubernetes refuses to create.
            raise ValueError(
                f"a model path may not be {TMP_PATH}, the pods' scratch dir: use a directory "
                f"of its own (e.g. {TMP_PATH}/models or /models)"
            )
        if self.cluster.models_volume_claim:
            for path in self.model_paths():
                clash = [v.name for v in self.cluster.volumes if v.mount_path == path]
                if clash:
                    raise ValueError(
                        f"cluster.volumes {clash} mount at model.path ({path}), where "
                        "cluster.modelsVolumeClaim is mounted: use another mountPath"
                    )
        return self

    def model_paths(self) -> list[str]:
        """Every models root the job reads (model.path, or each of models' paths), once each."""
        paths = [spec.path for spec, _ in self.embedding_columns()]
        return list(dict.fromkeys(paths))


def parse_spec(data: dict[str, Any]) -> EmbeddingJobSpec:
    """Validate an EmbeddingJob spec; ConfigError names each offending field as spec.<path>."""
    try:
        return EmbeddingJobSpec.model_validate(data)
    except ValidationError as exc:
        problems = format_errors(exc, EmbeddingJobSpec)
        raise ConfigError([f"spec.{p}" for p in problems]) from None


def check_name(name: str) -> list[str]:
    """Problems with an EmbeddingJob name (empty when fine)."""
    problems = []
    if len(name) > MAX_NAME_LENGTH:
        problems.append(
            f"metadata.name: {len(name)} characters; at most {MAX_NAME_LENGTH} (KubeRay's limit)"
        )
    if not DNS_LABEL.match(name):
        problems.append("metadata.name: must be a DNS label (lowercase letters, digits, '-')")
    return problems
