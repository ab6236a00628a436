"""The original component's computation (the parity reference) and a stand-in for
torchvision.io's GPU JPEG decoder, for the embedder's and data path's tests."""

from __future__ import annotations

import io
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import transformers
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


#: Each family's transformers class (the reference computation names it, not AutoModel).
FAMILY_CLASSES = {
    "clip": "CLIPModel",
    "siglip": "SiglipModel",
    "clip-vision": "CLIPVisionModelWithProjection",
    "dinov3": "DINOv3ViTModel",
    "deit": "DeiTModel",
    "vit": "ViTModel",
    "dinov2": "Dinov2Model",
}


def family_reference(model_dir: Path, kind: str, images: list[bytes], pooling: str) -> np.ndarray:
    """The family's own computation in transformers, L2-normalised: its processor's pixels
    (DINOv3's recipe by hand, its class needing torchvision), then get_image_features for
    image-text models (projected: its pooler_output), a tower's image_embeds, or a backbone's
    last hidden state (cls, mean) or pooler_output (pooler; DINOv3's is its CLS token)."""
    pil = [Image.open(io.BytesIO(data)).convert("RGB") for data in images]
    if kind == "dinov3":
        pixel_values = dinov3_pixels(model_dir, pil)
    else:
        processor = AutoImageProcessor.from_pretrained(model_dir, use_fast=True)
        pixel_values = processor(images=pil, return_tensors="pt")["pixel_values"]
    model = getattr(transformers, FAMILY_CLASSES[kind]).from_pretrained(model_dir).eval()
    with torch.no_grad():
        if kind in ("clip", "siglip"):
            output = model.get_image_features(pixel_values=pixel_values.float())
        else:
            output = model(pixel_values=pixel_values.float())
    if pooling == "projected":
        vectors = output.pooler_output if kind in ("clip", "siglip") else output.image_embeds
    elif pooling == "pooler" or (kind == "dinov3" and pooling == "cls"):
        vectors = output.pooler_output
    else:
        hidden = output.last_hidden_state
        vectors = hidden[:, 0] if pooling == "cls" else hidden.mean(dim=1)
    return torch.nn.functional.normalize(vectors, dim=-1).numpy()


def dinov3_pixels(model_dir: Path, images: list[Image.Image]) -> torch.Tensor:
    """What DINOv3ViTImageProcessor computes (rescale, antialiased resize of the float image,
    normalise), from its saved settings."""
    import json

    settings = json.loads((model_dir / "preprocessor_config.json").read_text())
    size = (settings["size"]["height"], settings["size"]["width"])
    mode = {2: "bilinear", 3: "bicubic"}[settings["resample"]]
    mean = torch.tensor(settings["image_mean"]).view(3, 1, 1)
    std = torch.tensor(settings["image_std"]).view(3, 1, 1)
    out = []
    for image in images:
        pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1).float()
        pixels = pixels * settings["rescale_factor"]
        resized = torch.nn.functional.interpolate(
            pixels[None], size=size, mode=mode, antialias=True, align_corners=False
        )[0]
        out.append((resized - mean) / std)
    return torch.stack(out)


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
