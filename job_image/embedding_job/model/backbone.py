"""One model on its device: loaded the way its family needs (model/families.py), and normalised
pixels → one pooled vector per image, the way its pooling says."""

from __future__ import annotations

import inspect
import logging
import time
from typing import Any

import numpy as np
import torch
from transformers.utils import logging as hf_logging

from embedding_job.api import Pooling
from embedding_job.errors import ModelNotUsableError
from embedding_job.logs import quiet_transformers
from embedding_job.model.families import Checkpoint, Kind

log = logging.getLogger(__name__)


def load_model(
    checkpoint: Checkpoint, pooling: Pooling, device: torch.device, dtype: torch.dtype
) -> torch.nn.Module:
    """The model with weights stored in ``dtype`` (not autocast), SDPA attention where the
    model has it, eval mode.

    The class is the checkpoint's (families.Checkpoint.model_class: AutoModel's choice, or the
    tower-with-projection class the checkpoint names). Image-text models load whole
    (``get_image_features`` is theirs); backbones without a pooling layer they would not use
    (ViT's pooler is tanh(dense(CLS)), not the CLS token).
    """
    model_dir = checkpoint.directory
    kwargs: dict[str, object] = {"dtype": dtype}
    model_class = checkpoint.model_class
    pools = "add_pooling_layer" in inspect.signature(model_class).parameters
    if checkpoint.kind is Kind.BACKBONE and pooling is not Pooling.POOLER and pools:
        kwargs["add_pooling_layer"] = False
    hf_logging.disable_progress_bar()
    # transformers prints a load report on every load (for ViT: the pooler weights we leave
    # out). Only weights the checkpoint lacks matter: those would be random.
    with quiet_transformers():
        try:
            model, info = model_class.from_pretrained(
                model_dir, output_loading_info=True, attn_implementation="sdpa", **kwargs
            )
        except ValueError as exc:
            if "sdpa" not in str(exc).lower():
                raise
            model, info = model_class.from_pretrained(model_dir, output_loading_info=True, **kwargs)
    missing = list(info.get("missing_keys") or [])
    if missing:
        log.warning(
            "%s has no weights for %d parameters (%s): they are randomly initialised",
            model_dir,
            len(missing),
            ", ".join(sorted(missing)[:5]),
        )
    if device.type == "cuda" and dtype == torch.float32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    module: torch.nn.Module = model.to(device).eval()
    return module


def pooled(
    module: torch.nn.Module, kind: Kind, pooling: Pooling, pixel_values: torch.Tensor
) -> torch.Tensor:
    """(N, width) vectors of ``pixel_values`` by ``pooling``, in the model's dtype.

    cls and mean read the vision encoder's last hidden state; pooler its pooled output;
    projected an image-text model's ``get_image_features`` (transformers 5 returns an output
    whose ``pooler_output`` is the image embedding) or a tower's ``image_embeds``.
    """
    model: Any = module  # the family's methods, which torch.nn.Module does not declare
    if kind is Kind.IMAGE_TEXT:
        if pooling is Pooling.POOLER:
            output = model.vision_model(pixel_values=pixel_values)
        else:
            output = model.get_image_features(pixel_values=pixel_values)
            if isinstance(output, torch.Tensor):  # older signatures: the embedding itself
                if pooling is not Pooling.PROJECTED:
                    raise ModelNotUsableError("get_image_features gives no hidden states")
                return output
    else:
        output = model(pixel_values=pixel_values)
    if pooling is Pooling.PROJECTED:
        tensor = output.pooler_output if kind is Kind.IMAGE_TEXT else output.image_embeds
    elif pooling is Pooling.POOLER:
        tensor = output.pooler_output
    else:
        hidden = output.last_hidden_state
        if hidden is None or hidden.dim() != 3:
            shape = None if hidden is None else tuple(hidden.shape)
            raise ModelNotUsableError(
                f"its output is not a token sequence (last_hidden_state {shape}): use pooling "
                "pooler"
            )
        tensor = hidden[:, 0] if pooling is Pooling.CLS else hidden.mean(dim=1)
    if tensor is None:
        raise ModelNotUsableError(f"its output has nothing for pooling {pooling.value}")
    result: torch.Tensor = tensor.flatten(1)  # a CNN's (N, C, 1, 1) pooled output
    return result


class Backbone:
    """A loaded model and its pooling: normalised pixels → float32 vectors."""

    def __init__(
        self,
        module: torch.nn.Module,
        checkpoint: Checkpoint,
        pooling: Pooling,
        normalize: bool,
    ):
        self.module = module
        self.checkpoint = checkpoint
        self.pooling = pooling
        self.normalize = normalize
        self.dim = checkpoint.dim(pooling)
        #: Seconds spent in forward passes so far, the load's check included.
        self.seconds = 0.0

    @torch.inference_mode()
    def __call__(self, pixel_values: torch.Tensor) -> np.ndarray:
        """(N, 3, H, W) → (N, dim) float32 (L2-normalised when asked)."""
        started = time.perf_counter()
        vectors = pooled(self.module, self.checkpoint.kind, self.pooling, pixel_values).float()
        if self.normalize:
            vectors = torch.nn.functional.normalize(vectors, p=2.0, dim=-1)
        result: np.ndarray = vectors.cpu().numpy()  # waits for the device: the time is real
        self.seconds += time.perf_counter() - started
        return result

    def check(self, pixel_values: torch.Tensor) -> None:
        """Run one batch (e.g. one blank image) and refuse, with the reason, a model that
        does not take images or gives vectors of another width than its config says."""
        try:
            width = self(pixel_values).shape[-1]
        except ModelNotUsableError as exc:
            raise ModelNotUsableError(f"{self.checkpoint.directory}: {exc}") from None
        except (TypeError, AttributeError, ValueError, RuntimeError) as exc:
            raise ModelNotUsableError(
                f"{self.checkpoint.directory} ({self.checkpoint.family}) cannot embed images "
                f"with pooling {self.pooling.value}: {type(exc).__name__}: {exc}"
            ) from None
        if width != self.dim:
            raise ModelNotUsableError(
                f"{self.checkpoint.directory} gives {width}-wide vectors with pooling "
                f"{self.pooling.value}, its config says {self.dim}"
            )
