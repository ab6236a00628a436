"""Images → model-ready pixels: read, decode, resize and crop on threads, ahead of the model.

The work per image (reading a file or a URL, Pillow's JPEG/PNG decoders, PyTorch's resize
kernels) releases the GIL, so a thread pool scales across cores and connections and runs while
the calling thread runs the model.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from embedding_job.api import DownloadSpec, InferenceSpec, PreprocessingSpec
from embedding_job.errors import RowError
from embedding_job.imaging.budget import PixelBudget, megapixels, return_freed_memory
from embedding_job.imaging.decode import DEFAULT_MAX_PIXELS, ORIGINAL, load_rgb, open_image
from embedding_job.imaging.transform import ImageTransform
from embedding_job.io.cells import ImageSource

#: An image as the data path takes it: its bytes, or a source it reads on its own threads.
ImageData = bytes | ImageSource

#: Sources read at once, and pixels decoded at once, unless the config says otherwise.
DEFAULT_IO_THREADS: int = DownloadSpec.model_fields["max_connections"].default
DEFAULT_DECODE_MEGAPIXELS: float | None = InferenceSpec.model_fields["decode_megapixels"].default
DEFAULT_BUDGET_PIXELS = megapixels(DEFAULT_DECODE_MEGAPIXELS)

#: JPEGs decode at reduced size (1/2, 1/4, 1/8) while both sides stay >= this x the model's
#: resize target; measured within the 1e-4 cosine parity bound (BENCHMARKS.md).
DEFAULT_DRAFT_FACTOR = 2.0


def available_cpus() -> int:
    """CPUs this process may use: those it may run on, and no more than its cgroup's CPU limit
    (a container's ``resources.limits.cpu``), rounded down, as Rust's ``available_parallelism``
    counts them for Daft's threads."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    limit = cgroup_cpu_limit()
    if limit is not None:
        return max(1, min(cpus or 1, int(limit)))
    return cpus or 1


def cgroup_cpu_limit(root: str = "/sys/fs/cgroup") -> float | None:
    """The CPU limit of this process's cgroup as a container sees it (cgroup v2's ``cpu.max``,
    or v1's CFS quota over its period); None without one."""
    base = Path(root)
    try:
        quota, period = (base / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = (base / "cpu" / "cpu.cfs_quota_us").read_text()
        period = (base / "cpu" / "cpu.cfs_period_us").read_text()
        return int(quota) / int(period) if int(quota) > 0 and int(period) > 0 else None
    except (OSError, ValueError):
        return None


def default_decode_threads(device: torch.device) -> int:
    """Decode threads when not configured: up to 16 to feed a GPU; none (inline) on CPU.

    On CPU the model's own threads already use every core: a decode thread beside them only
    competes with them (no gain measured, BENCHMARKS.md), so decoding runs inline there.
    """
    if device.type != "cuda":
        return 0
    return max(1, min(16, available_cpus() - 1))


def _read(data: ImageData) -> bytes:
    """The image's bytes; RowError for whatever stops a source from being read."""
    if isinstance(data, bytes):
        return data
    try:
        return data.read()
    except RowError:
        raise
    except Exception as exc:  # noqa: BLE001 - one source's failure is its row's error
        raise RowError(f"read failed: {type(exc).__name__}: {exc}") from None


def _bytes_or_error(data: ImageData | RowError) -> bytes | RowError:
    if isinstance(data, RowError):
        return data
    try:
        return _read(data)
    except RowError as exc:
        return exc


class DataPath:
    """Turns images into (H, W, 3) uint8 model inputs, one RowError per unusable image.

    An image is its bytes, or a source read on the data path's threads (a local file, a remote
    URL, base64 text): ``io_threads`` of them are read at once, ahead of the consumer.
    ``threads`` 0 decodes inline on the calling thread; ``threads`` >= 1 decodes on that many
    threads at once, up to ``window`` images ahead. ``budget_pixels`` bounds the pixels held
    decoded at once across those threads (imaging.budget). With ``more`` transforms (several
    models' preprocessing), each image is read and decoded once, at the size the most
    demanding of them needs, converted to RGB once (``options``) and resized for each
    (``views``).
    """

    def __init__(
        self,
        transform: ImageTransform,
        *,
        draft_factor: float | None = DEFAULT_DRAFT_FACTOR,
        threads: int = 0,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        more: Sequence[ImageTransform] = (),
        options: PreprocessingSpec = ORIGINAL,
        io_threads: int = DEFAULT_IO_THREADS,
        budget_pixels: int | None = DEFAULT_BUDGET_PIXELS,
    ):
        if threads < 0 or io_threads < 0:
            raise ValueError("threads and io_threads must be >= 0")
        self.transform = transform
        self.transforms = (transform, *more)
        sizes = [t.draft_size(draft_factor) if draft_factor else None for t in self.transforms]
        # A transform that does not resize needs the full image: no reduced decode at all.
        self.min_size = None if None in sizes else max(s for s in sizes if s is not None)
        self.threads = threads
        self.io_threads = io_threads
        self.max_pixels = max_pixels
        self.options = options
        self.budget = PixelBudget(budget_pixels)
        if threads and budget_pixels is not None:
            # Each decode thread has its own malloc arena, which would keep its largest image.
            return_freed_memory()
        # One pool: a task reads its image (I/O, up to the pool's size at once), then takes a
        # decode slot (CPU, ``threads`` at once).
        workers = max(threads, io_threads)
        self._pool = (
            ThreadPoolExecutor(workers, thread_name_prefix="embedding-decode") if workers else None
        )
        self._slots = threading.BoundedSemaphore(threads) if threads else None
        self._closed = False

    def views(self, data: ImageData) -> list[np.ndarray]:
        """One image, read and decoded once → resized, cropped (H, W, 3) uint8 pixels for each
        transform; RowError if unusable."""
        data = _read(data)
        try:
            image, full_size = open_image(data, min_size=self.min_size, max_pixels=self.max_pixels)
            # The header said what the image decodes to: wait for room before decoding it.
            with self.budget.hold(image.width * image.height):
                rgb, full_size = load_rgb(image, full_size, self.options)
                del image  # the decoded original, where the RGB conversion made a copy
                return [transform.to_uint8(rgb, full_size) for transform in self.transforms]
        except RowError:
            raise
        except Exception as exc:  # noqa: BLE001 - a decoder bug must not sink the batch
            raise RowError(f"decode failed: {type(exc).__name__}: {exc}") from None

    def pixels(self, data: ImageData) -> np.ndarray:
        """One image → the first transform's pixels (see ``views``); RowError if unusable."""
        return self.views(data)[0]

    def _views_or_error(self, data: ImageData | RowError) -> list[np.ndarray] | RowError:
        if isinstance(data, RowError):
            return data
        try:
            return self.views(data)
        except RowError as exc:
            return exc

    def _read_and_decode(self, data: ImageData) -> list[np.ndarray] | RowError:
        loaded = _bytes_or_error(data)
        assert self._slots is not None
        with self._slots:
            return self._views_or_error(loaded)

    def map(self, items: Iterable[ImageData], window: int = 64) -> Iterator[np.ndarray | RowError]:
        """The first transform's pixels, or the RowError, for each item in order, working up
        to ``window`` ahead."""
        for result in self.map_views(items, window):
            yield result if isinstance(result, RowError) else result[0]

    def map_views(self, items: Iterable[ImageData], window: int = 64) -> Ahead:
        """Each item's views (one per transform), or the RowError, in order, working up to
        ``window`` ahead from the moment this is called."""
        return Ahead(self, items, window, decode=True)

    def load(self, items: Iterable[ImageData], window: int = 64) -> Ahead:
        """Each item's bytes, or the RowError, in order; sources are read up to ``window``
        ahead on the data path's threads (for the GPU decoder, which takes bytes)."""
        return Ahead(self, items, window, decode=False)

    def _start(self, data: ImageData, decode: bool) -> Future[Any] | ImageData:
        if self._closed:
            raise RuntimeError("the data path is closed: its embedder's run has ended")
        if decode and self._slots is not None and self._pool is not None:
            return self._pool.submit(self._read_and_decode, data)
        if isinstance(data, bytes) or self._pool is None:
            return data  # nothing to do ahead: finished inline
        return self._pool.submit(_bytes_or_error, data)

    def _finish(self, started: Future[Any] | ImageData, decode: bool) -> Any:
        value = started.result() if isinstance(started, Future) else started
        if decode and self._slots is None:
            return self._views_or_error(value)
        return value if decode else _bytes_or_error(value)

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
        """Stop the threads; work not started is cancelled, and none can start after."""
        self._closed = True
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


#: The end of an Ahead's items (no item is None, but a sentinel says so without relying on it).
_END: Any = object()


class Ahead(Iterator[Any]):
    """A data path's results for ``items``, in order: the work on the first ``window`` (at
    least one per read thread) starts when this is made, and the next item's as each result is
    taken: at most ``window`` are under way. ``close`` (or losing the last reference) cancels
    what has not started."""

    def __init__(
        self, datapath: DataPath, items: Iterable[ImageData], window: int, *, decode: bool
    ):
        self._datapath = datapath
        self._items = iter(items)
        self._decode = decode
        self._limit = max(1, window, datapath.io_threads)
        self._pending: deque[Future[Any] | ImageData] = deque()
        self._fill()

    def _fill(self) -> None:
        while len(self._pending) < self._limit:
            data = next(self._items, _END)
            if data is _END:
                return
            self._pending.append(self._datapath._start(data, self._decode))

    def __next__(self) -> Any:
        if not self._pending:
            raise StopIteration
        result = self._datapath._finish(self._pending.popleft(), self._decode)
        self._fill()
        return result

    def close(self) -> None:
        """Cancel the work that has not started."""
        while self._pending:
            started = self._pending.pop()
            if isinstance(started, Future):
                started.cancel()

    def __del__(self) -> None:
        self.close()
