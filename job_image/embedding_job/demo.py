"""Offline demo material: sample images and clearly labelled random-init models.

A random-init model produces meaningless vectors. It exists so that the pipeline, the tests and
the benchmarks can run where no real checkpoint can be downloaded; it is only ever used by the
``demo`` command and by tests, never by ``run``.
"""

from __future__ import annotations

import io
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


def make_random_model(
    directory: Path,
    kind: str = "dinov2",
    size: Mapping[str, Any] | None = None,
    seed: int = 0,
    preprocessor_config: Path | None = None,
) -> Path:
    """Save a random-init ViT or DINOv2 model plus its image processor config to ``directory``.

    ``preprocessor_config``: a ``preprocessor_config.json`` to ship instead of the generated one,
    byte for byte (e.g. a real checkpoint's, whose ``size`` may be a plain int).
    """
    import torch

    from embedding_job.logs import quiet_transformers

    with quiet_transformers():
        from transformers import (
            BitImageProcessor,
            Dinov2Config,
            Dinov2Model,
            ViTConfig,
            ViTImageProcessor,
            ViTModel,
        )

    dims: dict[str, Any] = dict(size or TINY)
    torch.manual_seed(seed)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if kind == "vit":
        vit = ViTModel(ViTConfig(image_size=224, patch_size=16, **dims), add_pooling_layer=True)
        vit.save_pretrained(directory)
        ViTImageProcessor(size={"height": 224, "width": 224}).save_pretrained(directory)
    elif kind == "dinov2":
        config = Dinov2Config(**{"image_size": 224, "patch_size": 14, **dims})
        Dinov2Model(config).save_pretrained(directory)
        BitImageProcessor(
            size={"shortest_edge": 256},
            crop_size={"height": 224, "width": 224},
            resample=3,
            image_mean=[0.485, 0.456, 0.406],
            image_std=[0.229, 0.224, 0.225],
            do_convert_rgb=True,
        ).save_pretrained(directory)
    else:
        raise ValueError(f"unknown model kind {kind!r}: vit or dinov2")
    if preprocessor_config is not None:
        (directory / "preprocessor_config.json").write_bytes(Path(preprocessor_config).read_bytes())
    (directory / "RANDOM_INIT_DEMO_MODEL.txt").write_text(
        "This model has random weights: its embeddings carry no meaning.\n"
        "For demos and tests only.\n"
    )
    return directory


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
