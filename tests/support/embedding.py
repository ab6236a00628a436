"""The original component's computation (the parity reference) and a stand-in for
torchvision.io's GPU JPEG decoder, for the embedder's and data path's tests."""

from __future__ import annotations

import io
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoModel

from embedding_job.api import PreprocessingSpec
from embedding_job.imaging.decode import decode_image


def as_the_original_sees_it(data: bytes) -> Image.Image:
    """The image the original component's processor works on.

    The original hands ``Image.open``'s result to ``AutoImageProcessor(use_fast=True)``, whose
    RGB conversion in the transformers 4.x it was written for is Pillow's ``convert("RGB")``,
    pixels only: done here, because transformers 5 composites transparency over white instead
    (even on an RGB image that only carries a palette's transparent colour in ``info``).
    """
    image = Image.open(io.BytesIO(data)).convert("RGB")
    image.info.pop("transparency", None)
    return image


def as_opened(data: bytes) -> Image.Image:
    """The image exactly as Pillow opens it (the processor converts it, or refuses it)."""
    return Image.open(io.BytesIO(data))


def reference_embeddings(
    model_dir: Path,
    images: list[bytes],
    cls_token: bool,
    load: Callable[[bytes], Image.Image] = as_the_original_sees_it,
) -> np.ndarray:
    """The original component: AutoImageProcessor(use_fast=True) + AutoModel, CLS or mean, L2."""
    processor = AutoImageProcessor.from_pretrained(model_dir, use_fast=True)
    model = AutoModel.from_pretrained(model_dir).to(torch.float32).eval()
    pil = [load(data) for data in images]
    pixel_values = processor(images=pil, return_tensors="pt")["pixel_values"].to(torch.float32)
    with torch.no_grad():
        hidden = model(pixel_values=pixel_values).last_hidden_state
    pooled = hidden[:, 0] if cls_token else hidden.mean(dim=1)
    return torch.nn.functional.normalize(pooled, dim=-1).numpy()


def fake_torchvision_io() -> types.ModuleType:
    """decode_jpeg's contract ((3, H, W) uint8 per input, EXIF applied) implemented with PIL."""
    module = types.ModuleType("torchvision.io")
    module.ImageReadMode = types.SimpleNamespace(RGB="RGB")  # type: ignore[attr-defined]
    calls: list[int] = []

    def decode_jpeg(
        data: list[torch.Tensor], mode: str, device: torch.device, apply_exif_orientation: bool
    ) -> list[torch.Tensor]:
        calls.append(len(data))
        out = []
        for tensor in data:
            options = PreprocessingSpec(exif_orientation=apply_exif_orientation)
            image = decode_image(tensor.numpy().tobytes(), options=options)
            array = torch.from_numpy(np.array(image)).permute(2, 0, 1)
            out.append(array.to(device))
        return out

    module.decode_jpeg = decode_jpeg  # type: ignore[attr-defined]
    module.calls = calls  # type: ignore[attr-defined]
    return module
