"""Offline demo material: sample images and clearly labelled random-init models.

A random-init model produces meaningless vectors. It exists so that the pipeline, the tests and
the benchmarks can run where no real checkpoint can be downloaded; it is only ever used by the
``demo`` command and by tests, never by ``run``.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

DEMO_MODEL_NAME = "demo/random-init-dinov2-small"

#: Small configs that load through the real code path in seconds on a CPU.
TINY = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
}
SMALL = {
    "hidden_size": 384,
    "num_hidden_layers": 4,
    "num_attention_heads": 6,
    "intermediate_size": 1536,
}


#: The kinds make_random_model builds: one per model family the job tells apart.
MODEL_KINDS = ("vit", "dinov2", "dinov3", "deit", "clip", "clip-vision", "siglip")


def make_random_model(
    directory: Path,
    kind: str = "dinov2",
    size: Mapping[str, Any] | None = None,
    seed: int = 0,
    preprocessor_config: Path | None = None,
) -> Path:
    """Save a random-init model of ``kind`` (MODEL_KINDS) plus its image processor config to
    ``directory``: ViT, DINOv2, DINOv3 and DeiT backbones, a CLIP and a SigLIP image-text
    model (``size`` is their vision tower's; the text tower is the smallest), and a CLIP vision
    tower with its projection (``clip-vision``).

    ``preprocessor_config``: a ``preprocessor_config.json`` to ship instead of the generated one,
    byte for byte (e.g. a real checkpoint's, whose ``size`` may be a plain int).
    """
    import torch

    from embedding_job.logs import quiet_transformers

    dims: dict[str, Any] = dict(size or TINY)
    torch.manual_seed(seed)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}: one of {', '.join(MODEL_KINDS)}")
    with quiet_transformers():
        model, processor = _random_model(kind, dims)
        model.save_pretrained(directory)
        if isinstance(processor, dict):  # a processor class that needs torchvision: its file
            (directory / "preprocessor_config.json").write_text(json.dumps(processor, indent=2))
        else:
            processor.save_pretrained(directory)
    if preprocessor_config is not None:
        (directory / "preprocessor_config.json").write_bytes(Path(preprocessor_config).read_bytes())
    (directory / "RANDOM_INIT_DEMO_MODEL.txt").write_text(
        "This model has random weights: its embeddings carry no meaning.\n"
        "For demos and tests only.\n"
    )
    return directory


def _random_model(kind: str, dims: dict[str, Any]) -> tuple[Any, Any]:
    """(model, image processor or its saved settings) of one kind, weights random."""
    import transformers

    hf: Any = transformers  # each branch builds other classes from the same few names

    imagenet = {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}
    square = {"height": 224, "width": 224}
    if kind == "vit":
        vit = hf.ViTModel(hf.ViTConfig(image_size=224, patch_size=16, **dims))
        return vit, hf.ViTImageProcessor(size=square)
    if kind == "dinov2":
        processor = hf.BitImageProcessor(
            size={"shortest_edge": 256},
            crop_size=square,
            resample=3,
            do_convert_rgb=True,
            **imagenet,
        )
        # ``size`` may set image_size and patch_size too (a real checkpoint's config values).
        config = hf.Dinov2Config(**{"image_size": 224, "patch_size": 14, **dims})
        return hf.Dinov2Model(config), processor
    if kind == "dinov3":
        config = hf.DINOv3ViTConfig(image_size=224, patch_size=16, num_register_tokens=4, **dims)
        # Its processor class has only a torchvision backend: the settings it saves.
        settings: dict[str, Any] = {"image_processor_type": "DINOv3ViTImageProcessorFast"}
        settings["size"] = square
        settings.update(do_resize=True, resample=2, do_rescale=True, do_normalize=True, **imagenet)
        return hf.DINOv3ViTModel(config), settings
    if kind == "deit":
        deit = hf.DeiTModel(hf.DeiTConfig(image_size=224, patch_size=16, **dims))
        processor = hf.DeiTImageProcessor(size={"height": 256, "width": 256}, crop_size=square)
        return deit, processor
    text = {**TINY, "vocab_size": 128, "max_position_embeddings": 16}
    text.update(bos_token_id=0, eos_token_id=2, pad_token_id=1)
    if kind == "clip":
        vision = {"image_size": 224, "patch_size": 32, **dims}
        config = hf.CLIPConfig(vision_config=vision, text_config=text, projection_dim=16)
        return hf.CLIPModel(config), hf.CLIPImageProcessor()
    if kind == "clip-vision":
        vision = hf.CLIPVisionConfig(image_size=224, patch_size=32, projection_dim=16, **dims)
        return hf.CLIPVisionModelWithProjection(vision), hf.CLIPImageProcessor()
    vision = {"image_size": 224, "patch_size": 16, **dims}
    config = hf.SiglipConfig(vision_config=vision, text_config=text)
    return hf.SiglipModel(config), hf.SiglipImageProcessor()


def sample_image(seed: int, size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    """A deterministic synthetic picture: smooth gradients plus a few shapes and noise."""
    rng = np.random.default_rng(seed)
    width, height = size
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, size=3)
    freq = rng.uniform(0.5, 4.0, size=3) / max(width, height)
    channels = [
        127.5 + 127.5 * np.sin(2 * np.pi * f * (x + y * (i + 1)) + p)
        for i, (f, p) in enumerate(zip(freq, phase, strict=True))
    ]
    array = np.stack(channels, axis=-1)
    for _ in range(3):
        cx, cy, r = (
            rng.integers(0, width),
            rng.integers(0, height),
            rng.integers(8, max(9, min(size) // 3)),
        )
        mask = (x - cx) ** 2 + (y - cy) ** 2 < r**2
        array[mask] = rng.uniform(0, 255, size=3)
    array += rng.normal(0, 8, size=array.shape)
    image = Image.fromarray(np.clip(array, 0, 255).astype(np.uint8), "RGB")
    return image if mode == "RGB" else image.convert(mode)


def encode(image: Image.Image, fmt: str = "JPEG", **kwargs: object) -> bytes:
    """Image → file bytes in ``fmt``."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def make_sample_images(directory: Path, count: int = 24, seed: int = 0) -> list[Path]:
    """Write ``count`` varied sample images (JPEG/PNG, several sizes and modes)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    shapes = [(500, 375), (640, 480), (375, 500), (256, 256), (1024, 768)]
    paths = []
    for index in range(count):
        size = shapes[index % len(shapes)]
        if index % 6 == 5:
            path = directory / f"img_{index:04d}.png"
            path.write_bytes(encode(sample_image(seed + index, size, "RGBA"), "PNG"))
        elif index % 6 == 4:
            path = directory / f"img_{index:04d}_gray.jpg"
            path.write_bytes(encode(sample_image(seed + index, size, "L"), "JPEG", quality=90))
        else:
            path = directory / f"img_{index:04d}.jpg"
            path.write_bytes(encode(sample_image(seed + index, size), "JPEG", quality=90))
        paths.append(path)
    return paths
