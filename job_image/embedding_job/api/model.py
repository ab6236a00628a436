"""The model section of the job config: which model embeds the images and how its output
becomes a vector (``model``, and each entry of ``models``).

Imports nothing heavy, like the rest of the contract.
"""

from __future__ import annotations

import re
from enum import StrEnum

from pydantic import Field, field_validator

from embedding_job.api.base import Spec
from embedding_job.api.kube_names import MAX_PATH

#: Models of one job (``models``): every embedding worker holds all of them on its GPU, and
#: each costs its own GPU time per image; a handful is what one pass is for.
MAX_MODELS = 4
_ALIAS = re.compile(r"^[A-Za-z0-9_]{1,64}$")

DEFAULT_MODEL = "facebook/dinov2-large"
DEFAULT_MODELS_ROOT = "/models"


class DType(StrEnum):
    FLOAT16 = "float16"
    BFLOAT16 = "bfloat16"
    FLOAT32 = "float32"


class Pooling(StrEnum):
    AUTO = "auto"
    CLS = "cls"
    MEAN = "mean"
    POOLER = "pooler"
    PROJECTED = "projected"


class ModelSpec(Spec):
    """Which model embeds the images, and how its output becomes a vector."""

    name: str = Field(
        DEFAULT_MODEL,
        min_length=1,
        max_length=256,
        description=(
            "Hugging Face model id, e.g. facebook/dinov2-large, google/vit-base-patch16-224-in21k, "
            "openai/clip-vit-base-patch32, google/siglip-base-patch16-224: a ViT, DINOv2 or "
            "DINOv3 backbone, a CLIP- or SigLIP-style image-text model, or any other vision "
            "checkpoint whose output is a token sequence."
        ),
    )
    path: str = Field(
        DEFAULT_MODELS_ROOT,
        min_length=1,
        max_length=MAX_PATH,
        description="Models root directory: the model is loaded from <path>/<name>.",
    )
    download: bool = Field(
        False,
        description=(
            "When the model is not under path, download it from the Hugging Face hub into "
            "<path>/<name> (uses HF_TOKEN if set). Off by default: a job never fetches weights "
            "unless asked."
        ),
    )
    dtype: DType = Field(
        DType.FLOAT16,
        description=(
            "Inference precision on GPU: float16 | bfloat16 | float32. On CPU, low precision "
            "falls back to float32."
        ),
    )
    pooling: Pooling = Field(
        Pooling.AUTO,
        description=(
            "How the model's output becomes one vector. auto: what the model's family means "
            "(projected for image-text models such as CLIP and SigLIP and for vision towers "
            "with a projection, pooler for other split-off vision towers, cls for backbones "
            "with a CLS token such as ViT and DINOv2, mean for those without); cls: the CLS "
            "token of the last hidden state; mean: the mean over all its tokens (CLS "
            "included); pooler: the model's own pooled output; projected: the image embedding "
            "of an image-text model (get_image_features). The manifest records the pooling used."
        ),
    )
    normalize: bool = Field(True, description="L2-normalise each embedding.")
    alias: str | None = Field(
        None,
        description=(
            "Only in models: the model's short name in the output, its embedding column "
            "being <output.embeddingColumn>_<alias>. Empty: the last part of name with each "
            "character other than a letter, digit or '_' as '_' (openai/clip-vit-base-patch32: "
            "clip_vit_base_patch32)."
        ),
        json_schema_extra={"pattern": _ALIAS.pattern, "maxLength": 64},
    )
    batch_size: int | None = Field(
        None,
        ge=1,
        le=8192,
        description="Images per forward pass of this model; empty: inference.batchSize.",
    )

    @field_validator("name")
    @classmethod
    def _model_name(cls, value: str) -> str:
        if value.startswith("/") or ".." in value.split("/") or "\\" in value:
            raise ValueError(
                "name must be a relative model id like 'facebook/dinov2-large'; "
                "put the directory in model.path"
            )
        return value

    @field_validator("alias")
    @classmethod
    def _alias(cls, value: str | None) -> str | None:
        if value is not None and not _ALIAS.fullmatch(value):
            raise ValueError(f"{value!r} is not an alias (1-64 letters, digits or '_')")
        return value

    @property
    def resolved_alias(self) -> str:
        """The alias, or the one derived from the model's name."""
        if self.alias is not None:
            return self.alias
        return re.sub(r"[^A-Za-z0-9_]", "_", self.name.rsplit("/", 1)[-1])[:64]
