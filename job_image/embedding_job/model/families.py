"""What a checkpoint is, read from its files before any weights load: its family, the poolings
it offers, the one it means by default, and the width of each.

Families are told apart by what the checkpoint is, not by its name:

- an **image-text** model (its config has a ``vision_config``: CLIP, SigLIP, MetaCLIP 2, ...)
  embeds images with ``get_image_features``, the projection the model defines;
- a **vision tower** split off such a model (``model_type`` ``*_vision_model``, e.g. a
  ``CLIPVisionModelWithProjection``) has its pooled output, and a projection if it kept one;
- any other checkpoint is a **backbone** loaded with ``AutoModel`` whose output is a token
  sequence (ViT, DINOv2, DINOv3, DeiT, BEiT, ...): its CLS token if it has one, else the mean.

Whether a checkpoint has a CLS token is read from its parameter names (the safetensors
header), so a pooling the model cannot give is refused before any data is read.
"""

from __future__ import annotations

import inspect
import json
import struct
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from embedding_job.api import Pooling
from embedding_job.errors import ModelNotUsableError
from embedding_job.logs import quiet_transformers

#: Parameters that hold a CLS token (ViT, DINOv2/v3, DeiT, BEiT: cls_token; CLIP: class_embedding).
_CLS_PARAMETERS = ("cls_token", "class_embedding")


class Kind(StrEnum):
    """How a checkpoint embeds an image."""

    BACKBONE = "backbone"
    IMAGE_TEXT = "image-text"
    VISION_TOWER = "vision-tower"


@dataclass(frozen=True)
class Checkpoint:
    """A model directory as its config and weights' names describe it."""

    directory: Path
    model_type: str
    architecture: str | None
    kind: Kind
    #: The vision part's config (the whole config for backbones and towers) as a dict.
    vision: dict[str, Any]
    #: The top-level config as a dict.
    top: dict[str, Any]
    #: Whether the vision part has a CLS token; None when the weights' names are unknown.
    has_cls_token: bool | None
    #: The transformers class that loads it (what AutoModel picks; the class the checkpoint
    #: names for a tower with a projection, which AutoModel would load without it).
    model_class: Any = field(compare=False, repr=False)

    @property
    def family(self) -> str:
        """What the manifest calls it: ``<model_type> <kind>``, e.g. ``clip image-text``."""
        return f"{self.model_type} {self.kind.value}"

    @property
    def has_projection(self) -> bool:
        """Whether the checkpoint defines an image embedding beyond its vision encoder."""
        if self.kind is Kind.IMAGE_TEXT:
            return True
        return self.kind is Kind.VISION_TOWER and str(self.architecture).endswith("WithProjection")

    def default_pooling(self) -> Pooling:
        """The pooling the family means: its projection, a tower's pooled output, the CLS
        token of a backbone that has one, otherwise the mean."""
        if self.has_projection:
            return Pooling.PROJECTED
        if self.kind is Kind.VISION_TOWER:
            return Pooling.POOLER
        return Pooling.MEAN if self.has_cls_token is False else Pooling.CLS

    def resolve_pooling(self, requested: Pooling) -> Pooling:
        """The pooling to use (``auto`` resolved); ModelNotUsableError for one the model lacks."""
        pooling = self.default_pooling() if requested is Pooling.AUTO else requested
        if pooling is Pooling.PROJECTED and not self.has_projection:
            raise ModelNotUsableError(
                f"{self.directory}: pooling projected needs an image-text model (CLIP, SigLIP) "
                f"or a vision tower with a projection; this is a {self.family}: use auto, cls, "
                "mean or pooler"
            )
        if pooling is Pooling.CLS and self.has_cls_token is False:
            raise ModelNotUsableError(
                f"{self.directory}: pooling cls, but this {self.family} has no CLS token: use "
                "auto, mean or pooler"
            )
        return pooling

    def dim(self, pooling: Pooling) -> int:
        """Width of the vectors ``pooling`` gives."""
        width: Any
        if pooling is Pooling.PROJECTED:
            source = self.top if self.kind is Kind.IMAGE_TEXT else self.vision
            # SigLIP defines no projection width: its image embedding is its pooled output.
            width = source.get("projection_dim") or self.vision.get("hidden_size")
        else:
            width = self.vision.get("hidden_size")
        if not isinstance(width, int) or width <= 0:
            raise ModelNotUsableError(
                f"{self.directory}/config.json gives no embedding width for pooling "
                f"{pooling.value} (hidden_size / projection_dim): is this a vision model?"
            )
        return width


def read_checkpoint(directory: Path) -> Checkpoint:
    """Describe the checkpoint in ``directory`` (its config.json through transformers' own
    config class, so that defaults left out of the file count)."""
    directory = Path(directory)
    try:
        with quiet_transformers():
            from transformers import AutoConfig

            config = AutoConfig.from_pretrained(str(directory))
    except (ValueError, KeyError, OSError) as exc:
        raise ModelNotUsableError(
            f"{directory}/config.json is not a model transformers knows: {exc}"
        ) from None
    top = config.to_dict()
    model_type = str(top.get("model_type", ""))
    architecture = (top.get("architectures") or [None])[0]
    vision_config = getattr(config, "vision_config", None)
    if vision_config is not None:
        kind, vision = Kind.IMAGE_TEXT, vision_config.to_dict()
    elif model_type.endswith("_vision_model"):
        kind, vision = Kind.VISION_TOWER, top
    else:
        kind, vision = Kind.BACKBONE, top
    checkpoint = Checkpoint(
        directory=directory,
        model_type=model_type,
        architecture=architecture,
        kind=kind,
        vision=vision,
        top=top,
        has_cls_token=_has_cls_token(directory),
        model_class=_model_class(config, kind, architecture),
    )
    _check_takes_images(checkpoint)
    return checkpoint


def _model_class(config: Any, kind: Kind, architecture: str | None) -> Any:
    import transformers
    from transformers.models.auto.modeling_auto import MODEL_MAPPING

    if kind is Kind.VISION_TOWER and str(architecture).endswith("WithProjection"):
        return getattr(transformers, str(architecture), None)
    return MODEL_MAPPING.get(type(config), None)


def _check_takes_images(checkpoint: Checkpoint) -> None:
    """Refuse, before any weights load, a checkpoint whose model takes no images."""
    model_class = checkpoint.model_class
    if model_class is None:
        raise ModelNotUsableError(
            f"{checkpoint.directory}: transformers has no model class for "
            f"{checkpoint.architecture or checkpoint.model_type!r}"
        )
    if checkpoint.kind is Kind.IMAGE_TEXT:
        takes_images = hasattr(model_class, "get_image_features")
    else:
        takes_images = "pixel_values" in inspect.signature(model_class.forward).parameters
    if not takes_images:
        raise ModelNotUsableError(
            f"{checkpoint.directory}: {model_class.__name__} does not take images (no "
            "pixel_values input, no get_image_features): is this a vision model?"
        )


def _has_cls_token(directory: Path) -> bool | None:
    names = parameter_names(directory)
    if names is None:
        return None
    vision = [n for n in names if not n.startswith("text")]
    return any(n.rsplit(".", 1)[-1] in _CLS_PARAMETERS for n in vision)


def parameter_names(directory: Path) -> list[str] | None:
    """The checkpoint's parameter names from its safetensors header or index; None for other
    weight formats (reading a pickle would mean loading it)."""
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        return list(json.loads(index.read_text()).get("weight_map", {}))
    single = directory / "model.safetensors"
    if not single.is_file():
        return None
    with single.open("rb") as handle:
        # The format: an 8-byte little-endian header length, then the JSON header.
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
    return [name for name in header if name != "__metadata__"]
