"""Load a ViT-family model and turn image bytes into embeddings, one bad row at a time."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import AutoConfig, AutoModel
from transformers.utils import logging as hf_logging

from embedding_job.config import Device, DType, Pooling
from embedding_job.decode import decode_image
from embedding_job.errors import RowError
from embedding_job.model_files import embedding_dim
from embedding_job.preprocess import ImageTransform

log = logging.getLogger(__name__)

_TORCH_DTYPES = {
    DType.FLOAT16: torch.float16,
    DType.BFLOAT16: torch.bfloat16,
    DType.FLOAT32: torch.float32,
}


@dataclass(frozen=True)
class EmbedderSettings:
    """Everything an embedding worker needs; plain values, so it pickles to Ray actors."""

    model_dir: str
    dtype: DType = DType.FLOAT16
    pooling: Pooling = Pooling.CLS
    normalize: bool = True
    batch_size: int = 32
    device: Device = Device.AUTO
    rank: int = 0


def select_device(device: Device, rank: int) -> torch.device:
    """The torch device for a worker: GPU ``rank`` modulo the visible GPUs, or the CPU."""
    if device is Device.CPU:
        return torch.device("cpu")
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        return torch.device("cuda", rank % count)
    if device is Device.CUDA:
        raise RuntimeError("inference.device is cuda but no CUDA GPU is visible to this worker")
    log.warning("no CUDA GPU visible: embedding on CPU")
    return torch.device("cpu")


def select_dtype(dtype: DType, device: torch.device) -> torch.dtype:
    """The compute dtype; half precision on CPU is slow and inexact, so CPU uses float32."""
    if device.type == "cpu" and dtype is not DType.FLOAT32:
        log.warning("dtype %s requested on CPU: using float32", dtype.value)
        return torch.float32
    return _TORCH_DTYPES[dtype]


def load_model(model_dir: Path, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """The model with weights stored in ``dtype`` (not autocast), SDPA attention, eval mode."""
    config = AutoConfig.from_pretrained(model_dir)
    kwargs: dict[str, object] = {"dtype": dtype, "attn_implementation": "sdpa"}
    if config.model_type == "vit":
        # ViT's pooler is tanh(dense(CLS)), not the CLS token: the embedding needs neither.
        kwargs["add_pooling_layer"] = False
    hf_logging.disable_progress_bar()
    model = AutoModel.from_pretrained(model_dir, **kwargs)
    if device.type == "cuda" and dtype == torch.float32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    model = model.to(device).eval()
    return model


class Embedder:
    """Bytes → L2-normalised embeddings, isolating failures to the rows that cause them."""

    def __init__(self, settings: EmbedderSettings):
        self.settings = settings
        self.device = select_device(settings.device, settings.rank)
        self.dtype = select_dtype(settings.dtype, self.device)
        model_dir = Path(settings.model_dir)
        self.transform = ImageTransform.from_pretrained(model_dir)
        self.model = load_model(model_dir, self.device, self.dtype)
        self.dim = embedding_dim(model_dir)
        log.info(
            "loaded %s on %s as %s (dim %d, pooling %s)",
            model_dir,
            self.device,
            str(self.dtype).removeprefix("torch."),
            self.dim,
            settings.pooling.value,
        )

    def pixels(self, data: bytes) -> np.ndarray:
        """One image's bytes → resized, cropped (H, W, 3) uint8 pixels; RowError if unusable."""
        try:
            return self.transform.to_uint8(decode_image(data))
        except RowError:
            raise
        except Exception as exc:  # noqa: BLE001 - a decoder bug must not sink the batch
            raise RowError(f"decode failed: {type(exc).__name__}: {exc}") from None

    @torch.inference_mode()
    def embed_pixels(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Embed same-sized uint8 images; returns (N, dim) float32."""
        out = np.empty((len(images), self.dim), dtype=np.float32)
        step = self.settings.batch_size
        for start in range(0, len(images), step):
            chunk = torch.from_numpy(np.stack(images[start : start + step]))
            if self.device.type == "cuda":
                chunk = chunk.pin_memory().to(self.device, non_blocking=True)
            pixel_values = self.transform.normalize(chunk, self.dtype)
            hidden = self.model(pixel_values=pixel_values).last_hidden_state
            pooled = hidden[:, 0] if self.settings.pooling is Pooling.CLS else hidden.mean(dim=1)
            pooled = pooled.float()
            if self.settings.normalize:
                pooled = torch.nn.functional.normalize(pooled, p=2.0, dim=-1)
            out[start : start + len(chunk)] = pooled.cpu().numpy()
        return out

    def embed_bytes(
        self, items: Sequence[bytes | None], errors: Sequence[str | None] | None = None
    ) -> tuple[list[np.ndarray | None], list[str | None]]:
        """Embed each item; a row that fails gets ``None`` and a short error, the rest embed.

        ``errors`` carries failures found upstream (e.g. a download), kept as they are.
        """
        vectors: list[np.ndarray | None] = [None] * len(items)
        row_errors: list[str | None] = list(errors) if errors is not None else [None] * len(items)
        good: list[int] = []
        pixels: list[np.ndarray] = []
        for index, data in enumerate(items):
            if row_errors[index] is not None:
                continue
            if data is None:
                row_errors[index] = "missing image (null)"
                continue
            try:
                pixels.append(self.pixels(data))
            except RowError as exc:
                row_errors[index] = str(exc)
                continue
            good.append(index)
        if good:
            embedded = self.embed_pixels(pixels)
            for row, index in enumerate(good):
                vectors[index] = embedded[row]
        return vectors, row_errors
