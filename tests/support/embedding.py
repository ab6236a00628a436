"""The original component's computation (the parity reference) and a stand-in for
torchvision.io's GPU JPEG decoder, for the embedder's and data path's tests."""

from __future__ import annotations

import io
import types
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoModel

from embedding_job.imaging.decode import decode_image


def reference_embeddings(model_dir: Path, images: list[bytes], cls_token: bool) -> np.ndarray:
    """The original component: AutoImageProcessor(use_fast=True) + AutoModel, CLS or mean, L2."""
    processor = AutoImageProcessor.from_pretrained(model_dir, use_fast=True)
    model = AutoModel.from_pretrained(model_dir).to(torch.float32).eval()
    pil = [Image.open(io.BytesIO(data)).convert("RGB") for data in images]
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
            image = decode_image(tensor.numpy().tobytes())
            array = torch.from_numpy(np.array(image)).permute(2, 0, 1)
            out.append(array.to(device))
        return out

    module.decode_jpeg = decode_jpeg  # type: ignore[attr-defined]
    module.calls = calls  # type: ignore[attr-defined]
    return module
