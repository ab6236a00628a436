"""Bytes → model-ready pixels: decode, resize and crop on CPU threads, ahead of the model.

The work per image (Pillow's JPEG/PNG decoders, PyTorch's resize kernels) releases the GIL, so a
small thread pool scales across cores and runs while the calling thread runs the model.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import numpy as np
import torch

from embedding_job.errors import RowError
from embedding_job.imaging.decode import DEFAULT_MAX_PIXELS, decode_scaled
from embedding_job.imaging.transform import ImageTransform
from embedding_job.io.cells import LocalFile

_T = TypeVar("_T")

#: An image as the data path takes it: its bytes, or a local file to read on a decode thread.
ImageData = bytes | LocalFile

#: JPEGs decode at reduced size (1/2, 1/4, 1/8) while both sides stay >= this x the model's
#: resize target; measured within the 1e-4 cosine parity bound (BENCHMARKS.md).
DEFAULT_DRAFT_FACTOR = 2.0


def available_cpus() -> int:
    """CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_decode_threads(device: torch.device) -> int:
    """Decode threads when not configured: up to 16 to feed a GPU; none (inline) on CPU.

    On CPU the model's own threads already use every core: a decode thread beside them only
    competes with them (no gain measured, BENCHMARKS.md), so decoding runs inline there.
    """
    if device.type != "cuda":
        return 0
    return max(1, min(16, available_cpus() - 1))


def _bytes_or_error(data: ImageData) -> bytes | RowError:
    try:
        return data.read() if isinstance(data, LocalFile) else data
    except RowError as exc:
        return exc


class DataPath:
    """Turns image bytes into (H, W, 3) uint8 model inputs, one RowError per unusable image.

    ``threads`` 0 decodes inline on the calling thread; ``threads`` >= 1 uses a pool of that
    many threads and decodes up to ``window`` images ahead of the consumer. With ``more``
    transforms (several models' preprocessing), each image is decoded once, at the size the
    most demanding of them needs, and resized for each (``views``).
    """

    def __init__(
        self,
        transform: ImageTransform,
        *,
        draft_factor: float | None = DEFAULT_DRAFT_FACTOR,
        threads: int = 0,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        more: Sequence[ImageTransform] = (),
    ):
        if threads < 0:
            raise ValueError("threads must be >= 0")
        self.transform = transform
        self.transforms = (transform, *more)
        sizes = [t.draft_size(draft_factor) if draft_factor else None for t in self.transforms]
        # A transform that does not resize needs the full image: no reduced decode at all.
        self.min_size = None if None in sizes else max(s for s in sizes if s is not None)
        self.threads = threads
        self.max_pixels = max_pixels
        self._pool = (
            ThreadPoolExecutor(threads, thread_name_prefix="embedding-decode") if threads else None
        )

    def views(self, data: ImageData) -> list[np.ndarray]:
        """One image (bytes or a local file), decoded once → resized, cropped (H, W, 3) uint8
        pixels for each transform; RowError if unusable."""
        if isinstance(data, LocalFile):
            data = data.read()
        try:
            image, full_size = decode_scaled(
                data, min_size=self.min_size, max_pixels=self.max_pixels
            )
            return [transform.to_uint8(image, full_size) for transform in self.transforms]
        except RowError:
            raise
        except Exception as exc:  # noqa: BLE001 - a decoder bug must not sink the batch
            raise RowError(f"decode failed: {type(exc).__name__}: {exc}") from None

    def pixels(self, data: ImageData) -> np.ndarray:
        """One image → the first transform's pixels (see ``views``); RowError if unusable."""
        return self.views(data)[0]

    def _views_or_error(self, data: ImageData) -> list[np.ndarray] | RowError:
        try:
            return self.views(data)
        except RowError as exc:
            return exc

    def map(self, items: Iterable[ImageData], window: int = 64) -> Iterator[np.ndarray | RowError]:
        """The first transform's pixels, or the RowError, for each item in order, decoding up
        to ``window`` ahead."""
        for result in self.map_views(items, window):
            yield result if isinstance(result, RowError) else result[0]

    def map_views(
        self, items: Iterable[ImageData], window: int = 64
    ) -> Iterator[list[np.ndarray] | RowError]:
        """Each item's views (one per transform), or the RowError, in order, decoding up to
        ``window`` ahead."""
        return self._ahead(self._views_or_error, items, window)

    def load(self, items: Iterable[ImageData], window: int = 64) -> Iterator[bytes | RowError]:
        """Each item's bytes, or the RowError, in order; local files are read up to ``window``
        ahead on the decode threads (for the GPU decoder, which takes bytes)."""
        return self._ahead(_bytes_or_error, items, window)

    def _ahead(
        self, work: Callable[[ImageData], _T], items: Iterable[ImageData], window: int
    ) -> Iterator[_T]:
        if self._pool is None:
            for data in items:
                yield work(data)
            return
        pending: deque[Future[_T]] = deque()
        try:
            for data in items:
                pending.append(self._pool.submit(work, data))
                if len(pending) >= max(1, window):
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()

    def to_device(
        self,
        images: Sequence[np.ndarray],
        device: torch.device,
        dtype: torch.dtype,
        transform: ImageTransform | None = None,
    ) -> torch.Tensor:
        """Same-sized uint8 images → (N, 3, H, W) normalised ``dtype`` pixels on ``device``,
        by ``transform`` (default: the first).

        Pixels cross to a GPU as uint8 from pinned memory (an asynchronous copy); rescale and
        normalise then run there.
        """
        first = images[0]
        if device.type == "cuda":
            batch = torch.empty((len(images), *first.shape), dtype=torch.uint8, pin_memory=True)
            np.stack(images, out=batch.numpy())
            batch = batch.to(device, non_blocking=True)
        else:
            batch = torch.from_numpy(np.stack(images))
        return (transform or self.transform).normalize(batch, dtype)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
