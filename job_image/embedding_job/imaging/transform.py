"""The model's image preprocessing, read from its ``preprocessor_config.json``.

Resize and crop run per image on uint8 pixels: bilinear and bicubic resizes use PyTorch's
antialiased uint8 kernels (a port of Pillow's resampling, within one grey level of it and 4-7x
faster on CPU), other filters use Pillow itself. Rescale and normalise run once per batch as
tensor ops on the model's device, so images travel to the device as uint8.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from PIL import Image

from embedding_job.logs import quiet_transformers

_BILINEAR = 2
_BICUBIC = 3
#: Pillow resample filters that torch.nn.functional.interpolate reproduces (antialias=True).
TORCH_MODES = {_BILINEAR: "bilinear", _BICUBIC: "bicubic"}

#: (H, W, C) pixels: numpy on the CPU path, a tensor on the GPU path; cropped alike.
Pixels = TypeVar("Pixels", np.ndarray, torch.Tensor)


@dataclass(frozen=True)
class ImageTransform:
    """Resize/crop/normalise parameters of a ViT-family image processor."""

    resize_to: tuple[int, int] | None = None  # fixed (height, width)
    shortest_edge: int | None = None
    resample: int = _BILINEAR
    crop: tuple[int, int] | None = None  # (height, width)
    rescale: float | None = 1 / 255
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    #: "torch": PyTorch's uint8 kernels for bilinear/bicubic (Pillow for other filters);
    #: "pil": always Pillow (the reference the fast path is checked against).
    resize_backend: str = "torch"

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> ImageTransform:
        """Build from an image processor's settings with ``size`` / ``crop_size`` as dicts.

        A plain-int ``size`` means a square for some processors (ViT) and a shortest edge for
        others, so it is refused here: :meth:`from_pretrained` lets transformers' own processor
        class decide.
        """
        size = cfg.get("size") or {}
        if not isinstance(size, dict):
            raise ValueError(f"image processor size {size!r} is not normalised to a dict")
        resize_to = shortest = None
        if cfg.get("do_resize", True):
            if size.get("height") and size.get("width"):
                resize_to = (int(size["height"]), int(size["width"]))
            elif size.get("shortest_edge") and not size.get("longest_edge"):
                shortest = int(size["shortest_edge"])
            else:
                raise ValueError(f"unsupported image processor size {size!r}")
        crop = None
        if cfg.get("do_center_crop"):
            crop_size = cfg.get("crop_size") or {}
            if not isinstance(crop_size, dict):
                raise ValueError(f"image processor crop_size {crop_size!r} is not a dict")
            crop = (int(crop_size["height"]), int(crop_size["width"]))
        mean = std = None
        if cfg.get("do_normalize", True):
            mean = _triple(cfg.get("image_mean", 0.5))
            std = _triple(cfg.get("image_std", 0.5))
        rescale = float(cfg.get("rescale_factor", 1 / 255)) if cfg.get("do_rescale", True) else None
        return cls(
            resize_to=resize_to,
            shortest_edge=shortest,
            resample=int(cfg.get("resample", _BILINEAR)),
            crop=crop,
            rescale=rescale,
            mean=mean,
            std=std,
        )

    @classmethod
    def from_pretrained(cls, model_dir: Path) -> ImageTransform:
        """The model's preprocessing as transformers' own image processor class reads it from
        ``preprocessor_config.json`` (the class normalises ``size``, fills in its defaults).

        A processor class that exists only for torchvision (DINOv3's), where torchvision is not
        installed, is read from the file as saved (its ``size`` must then be a dict).
        """
        with quiet_transformers():
            from transformers import AutoImageProcessor

            try:
                processor = AutoImageProcessor.from_pretrained(str(model_dir))
            except ImportError:
                saved = json.loads((Path(model_dir) / "preprocessor_config.json").read_text())
                return cls.from_config(saved)
        settings = {name: getattr(processor, name, None) for name in _PROCESSOR_SETTINGS}
        for name in ("size", "crop_size"):
            settings[name] = _size_dict(settings[name])
        return cls.from_config({k: v for k, v in settings.items() if v is not None})

    @property
    def output_size(self) -> tuple[int, int] | None:
        """(height, width) of every output image, when fixed by the config."""
        return self.crop or self.resize_to

    def draft_size(self, factor: float) -> int | None:
        """Smallest side a reduced-size decode may produce: ``factor`` x the resize target.

        None when the transform does not resize (a reduced decode would change the output).
        """
        if self.resize_to is not None:
            return math.ceil(factor * max(self.resize_to))
        if self.shortest_edge is not None:
            return math.ceil(factor * self.shortest_edge)
        return None

    def target_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) after the resize step, for an image of this full-resolution size."""
        if self.resize_to is not None:
            return self.resize_to
        if self.shortest_edge is not None:
            return _shortest_edge_size(height, width, self.shortest_edge)
        return (height, width)

    def to_uint8(self, image: Image.Image, full_size: tuple[int, int] | None = None) -> np.ndarray:
        """Resize and crop one RGB image; returns an (H, W, 3) uint8 array.

        ``full_size`` is the (width, height) of the image at full resolution when ``image`` was
        decoded at reduced size: the resize target is computed from it, as for a full decode.
        """
        width, height = full_size or image.size
        target = self.target_size(height, width)
        if target == (image.height, image.width):
            array = np.asarray(image, dtype=np.uint8)
        elif self.resize_backend == "torch" and self.resample in TORCH_MODES:
            array = _torch_resize(image, target, TORCH_MODES[self.resample])
        else:
            array = np.asarray(
                image.resize((target[1], target[0]), resample=self.resample), dtype=np.uint8
            )
        if self.crop is not None:
            array = center_crop(array, self.crop)
        return array

    def normalize(self, batch: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """(N, H, W, 3) uint8 → (N, 3, H, W) normalised pixel values in ``dtype``.

        Computed in float32 and cast once at the end, like the reference processor.
        """
        pixels = batch.permute(0, 3, 1, 2).to(torch.float32)
        if self.rescale is not None:
            pixels = pixels * self.rescale
        if self.mean is not None and self.std is not None:
            mean = torch.tensor(self.mean, device=pixels.device).view(1, 3, 1, 1)
            std = torch.tensor(self.std, device=pixels.device).view(1, 3, 1, 1)
            pixels = (pixels - mean) / std
        return pixels.to(dtype)


def _torch_resize(image: Image.Image, size: tuple[int, int], mode: str) -> np.ndarray:
    pixels = _rgbx_pixels(image)
    if pixels is None:
        # A writable copy that torch can wrap; np.array(image) takes ~3x longer.
        raw = bytearray(image.tobytes())
        pixels = torch.frombuffer(raw, dtype=torch.uint8).view(image.height, image.width, 3)
    # (H, W, C) viewed as (1, C, H, W) is channels-last: the layout of the fast uint8 kernels
    # (which take RGBX's 4 channels too; X is dropped after).
    batch = pixels.permute(2, 0, 1).unsqueeze(0)
    resized = torch.nn.functional.interpolate(
        batch, size=size, mode=mode, antialias=True, align_corners=False
    )
    return np.ascontiguousarray(resized[0, :3].permute(1, 2, 0).numpy())


def _rgbx_pixels(image: Image.Image) -> torch.Tensor | None:
    """An RGB image's own pixel memory as an (H, W, 4) tensor, without a copy: Pillow keeps RGB
    as RGBX rows and exports them to Arrow, which torch takes by DLPack (the tensor keeps that
    memory alive). ``tobytes`` instead copies the decoded image twice holding the GIL (3.4 ms
    of 4.2 for a 1000x750 photo to 224x224, measured), which the other decode threads wait
    for. None where Pillow cannot export it: other modes, rows in separate blocks (images of
    more than about 16 MB)."""
    if image.mode != "RGB":
        return None
    import pyarrow as pa

    try:
        values = pa.array(image).flatten()
    except (ValueError, pa.ArrowException):
        return None
    if len(values) != image.width * image.height * 4:
        return None
    return torch.from_dlpack(values).view(image.height, image.width, 4)


#: The image processor attributes that decide its output (what from_config reads).
_PROCESSOR_SETTINGS = (
    "do_resize",
    "size",
    "resample",
    "do_center_crop",
    "crop_size",
    "do_rescale",
    "rescale_factor",
    "do_normalize",
    "image_mean",
    "image_std",
)


def _size_dict(size: Any) -> dict[str, int] | None:
    """transformers' SizeDict (or a plain dict) as a dict of its set fields."""
    if size is None:
        return None
    fields = size.items() if isinstance(size, dict) else vars(size).items()
    return {key: int(value) for key, value in fields if value is not None}


def _triple(value: Any) -> tuple[float, float, float]:
    if isinstance(value, (int, float)):
        return (float(value),) * 3
    values = tuple(float(v) for v in value)
    if len(values) != 3:
        raise ValueError(f"expected 3 channel values, got {value!r}")
    return (values[0], values[1], values[2])


def _shortest_edge_size(height: int, width: int, edge: int) -> tuple[int, int]:
    # Same rounding as transformers' get_resize_output_image_size(default_to_square=False).
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(edge * long / short)
    return (new_long, edge) if width <= height else (edge, new_long)


def center_crop(pixels: Pixels, size: tuple[int, int]) -> Pixels:
    """The centred (height, width) window of (H, W, C) pixels, zero-padded (centred) first
    where the image is smaller: what the reference processor does."""
    crop_h, crop_w = size
    height, width = int(pixels.shape[0]), int(pixels.shape[1])
    if height < crop_h or width < crop_w:
        new_h, new_w = max(height, crop_h), max(width, crop_w)
        shape = (new_h, new_w, int(pixels.shape[2]))
        padded = (
            pixels.new_zeros(shape)
            if isinstance(pixels, torch.Tensor)
            else np.zeros(shape, dtype=pixels.dtype)
        )
        top, left = -(-(new_h - height) // 2), -(-(new_w - width) // 2)
        padded[top : top + height, left : left + width] = pixels
        pixels, height, width = padded, new_h, new_w
    top = (height - crop_h) // 2
    left = (width - crop_w) // 2
    return pixels[top : top + crop_h, left : left + crop_w]
