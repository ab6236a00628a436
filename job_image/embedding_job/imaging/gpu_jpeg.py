"""Optional JPEG decoding on the GPU (torchvision's nvJPEG ``decode_jpeg``), CPU for the rest.

Off unless ``EmbedderSettings.gpu_decode`` is set, and only active where torchvision is
importable and the model runs on CUDA; otherwise the CPU data path is used and a warning says
why. JPEGs the GPU cannot take (CMYK, or a batch nvJPEG rejects) fall back to the CPU path, which
also produces the per-row errors. Resizing on the GPU uses PyTorch's antialiased float kernels in
Pillow's two passes, within a couple of grey levels of Pillow.

Caveat: the job's test machines have no GPU and no torchvision; this path is exercised there
only through a stand-in decoder (tests/unit/test_datapath.py), not with nvJPEG itself.
"""

from __future__ import annotations

import io
import logging
import warnings
from types import ModuleType
from typing import Any

import numpy as np
import torch
from PIL import Image

from embedding_job.errors import RowError
from embedding_job.imaging.datapath import DataPath
from embedding_job.imaging.transform import TORCH_MODES, ImageTransform, center_crop

log = logging.getLogger(__name__)

_GPU_MODES = ("RGB", "L")  # YCbCr and greyscale JPEGs; CMYK/YCCK go to the CPU


class GpuJpegDecoder:
    """Decodes a batch of image bytes to (N, H, W, 3) uint8 model inputs on ``device``, one
    batch per transform of the data path (each model's preprocessing, one decode)."""

    def __init__(self, datapath: DataPath, device: torch.device, tv_io: Any):
        self.datapath = datapath
        self.device = device
        self.tv_io = tv_io

    @classmethod
    def create(cls, datapath: DataPath, device: torch.device) -> GpuJpegDecoder | None:
        """A decoder, or None (with a warning) where GPU decoding is not possible."""
        if device.type != "cuda":
            log.warning("gpu_decode requested but the model runs on %s: decoding on CPU", device)
            return None
        if any(t.resample not in TORCH_MODES for t in datapath.transforms):
            log.warning("gpu_decode: resample filter not supported on the GPU: decoding on CPU")
            return None
        try:
            import torchvision.io as tv_io
        except ImportError:
            log.warning("gpu_decode requested but torchvision is not installed: decoding on CPU")
            return None
        return cls(datapath, device, tv_io)

    def _gpu_candidate(self, data: bytes) -> bool:
        if not data.startswith(b"\xff\xd8"):
            return False
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                header = Image.open(io.BytesIO(data))  # reads the header only
        except Exception:  # noqa: BLE001 - the CPU path will name the problem
            return False
        width, height = header.size
        return header.mode in _GPU_MODES and width * height <= self.datapath.max_pixels

    def decode(self, items: list[bytes]) -> tuple[list[torch.Tensor] | None, dict[int, str]]:
        """(pixels of the good rows in order, one batch per transform, or None if none;
        {position: error})."""
        failures: dict[int, str] = {}
        out: dict[int, list[torch.Tensor]] = {}
        gpu = [p for p, data in enumerate(items) if self._gpu_candidate(data)]
        if gpu:
            try:
                out.update(self._decode_on_gpu([items[p] for p in gpu], gpu))
            except Exception as exc:  # noqa: BLE001 - fall back to the CPU for this batch
                log.warning("GPU JPEG decode failed (%s): decoding this batch on CPU", exc)
        for position, data in enumerate(items):
            if position in out:
                continue
            try:
                views = self.datapath.views(data)
            except RowError as exc:
                failures[position] = str(exc)
                continue
            out[position] = [
                torch.from_numpy(np.ascontiguousarray(view)).to(self.device) for view in views
            ]
        if not out:
            return None, failures
        good = sorted(out)
        batches = [
            torch.stack([out[p][index] for p in good])
            for index in range(len(self.datapath.transforms))
        ]
        return batches, failures

    def _decode_on_gpu(
        self, datas: list[bytes], positions: list[int]
    ) -> dict[int, list[torch.Tensor]]:
        tv_io: ModuleType = self.tv_io
        encoded = [torch.frombuffer(bytearray(data), dtype=torch.uint8) for data in datas]
        images = tv_io.decode_jpeg(
            encoded,
            mode=tv_io.ImageReadMode.RGB,
            device=self.device,
            apply_exif_orientation=self.datapath.options.exif_orientation,
        )
        return {
            p: [_resize_crop(image, transform) for transform in self.datapath.transforms]
            for p, image in zip(positions, images, strict=True)
        }


def _resize_crop(image: torch.Tensor, transform: ImageTransform) -> torch.Tensor:
    """(3, H, W) uint8 on the device → (h, w, 3) uint8, resized and cropped as on the CPU."""
    height, width = int(image.shape[1]), int(image.shape[2])
    target = transform.target_size(height, width)
    mode = TORCH_MODES[transform.resample]
    pixels = image.unsqueeze(0)
    # Like Pillow: horizontal pass, rounded to uint8, then vertical pass (one pass at once
    # would skip that intermediate clipping and differ by several grey levels near edges).
    for size in ((height, target[1]), target):
        if size != tuple(pixels.shape[2:]):
            resized = torch.nn.functional.interpolate(
                pixels.float(), size=size, mode=mode, antialias=True, align_corners=False
            )
            pixels = resized.round_().clamp_(0, 255).to(torch.uint8)
    hwc = pixels[0].permute(1, 2, 0)
    if transform.crop is not None:
        hwc = center_crop(hwc, transform.crop)
    return hwc.contiguous()
