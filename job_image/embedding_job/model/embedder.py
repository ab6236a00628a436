"""Turn image bytes into embeddings with one or more models, one bad row at a time.

Several models share one data path: each image is read and decoded once and resized for each
model (``DataPath.views``); each model then embeds its own batches on the same device.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from embedding_job.api import Device, DType, Pooling, PreprocessingSpec
from embedding_job.errors import RowError
from embedding_job.imaging.budget import megapixels
from embedding_job.imaging.datapath import (
    DEFAULT_DECODE_MEGAPIXELS,
    DEFAULT_DRAFT_FACTOR,
    DEFAULT_IO_THREADS,
    Ahead,
    DataPath,
    ImageData,
    available_cpus,
    default_decode_threads,
)
from embedding_job.imaging.decode import ORIGINAL
from embedding_job.imaging.transform import ImageTransform
from embedding_job.model.backbone import Backbone, load_model
from embedding_job.model.families import read_checkpoint

log = logging.getLogger(__name__)

_TORCH_DTYPES = {
    DType.FLOAT16: torch.float16,
    DType.BFLOAT16: torch.bfloat16,
    DType.FLOAT32: torch.float32,
}


@dataclass(frozen=True)
class EmbedderSettings:
    """Everything an embedding worker needs for one model; plain values, so it pickles to Ray
    actors. An embedder of several models takes one per model; they differ only in the model's
    own fields (model_dir, dtype, pooling, normalize, batch_size)."""

    model_dir: str
    dtype: DType = DType.FLOAT16
    #: cls or mean reproduce the original component; auto: the model family's own.
    pooling: Pooling = Pooling.CLS
    normalize: bool = True
    batch_size: int = 32
    device: Device = Device.AUTO
    rank: int = 0
    #: CPU threads decoding ahead of the model; None: up to 16 with a GPU, inline on CPU; 0: inline.
    decode_threads: int | None = None
    #: JPEGs decode at reduced size down to this multiple of the model's input size; None: full.
    jpeg_draft_factor: float | None = DEFAULT_DRAFT_FACTOR
    #: torch.compile the model (first batches are slow while it compiles).
    compile: bool = False
    #: Decode JPEGs on the GPU with torchvision (nvJPEG) when available; others stay on the CPU.
    gpu_decode: bool = False
    #: torch threads when the model runs on the CPU; 0: every CPU this process may run on;
    #: None: torch's default (see pipeline.cpu_threads for why a Ray worker needs a figure).
    cpu_threads: int | None = None
    #: Decoded image → RGB (EXIF, transparency, 16-bit); the default is the original's.
    preprocessing: PreprocessingSpec = ORIGINAL
    #: Images read at once (local files, URLs, base64) on the data path's threads.
    read_threads: int = DEFAULT_IO_THREADS
    #: Megapixels decoded at once across the decode threads; None: no bound.
    decode_megapixels: float | None = DEFAULT_DECODE_MEGAPIXELS


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


#: What every model of one embedder shares: the device, the data path (reading, decoding,
#: RGB conversion), the CPU threads.
SHARED_SETTINGS = (
    "device",
    "rank",
    "decode_threads",
    "jpeg_draft_factor",
    "compile",
    "gpu_decode",
    "cpu_threads",
    "preprocessing",
    "read_threads",
    "decode_megapixels",
)


@dataclass
class Model:
    """One model of an embedder: its preprocessing, precision, batch size and pooled forward."""

    settings: EmbedderSettings
    transform: ImageTransform
    dtype: torch.dtype
    backbone: Backbone

    @property
    def batch_size(self) -> int:
        return self.settings.batch_size

    @property
    def dim(self) -> int:
        return self.backbone.dim


def load(settings: EmbedderSettings, device: torch.device) -> Model:
    """One model on ``device``, its pooling resolved and checked on a blank image (before any
    torch.compile)."""
    model_dir = Path(settings.model_dir)
    checkpoint = read_checkpoint(model_dir)
    pooling = checkpoint.resolve_pooling(settings.pooling)
    dtype = select_dtype(settings.dtype, device)
    transform = ImageTransform.from_pretrained(model_dir)
    module = load_model(checkpoint, pooling, device, dtype)
    backbone = Backbone(module, checkpoint, pooling, settings.normalize)
    side = int(checkpoint.vision.get("image_size") or 224)
    height, width = transform.output_size or (side, side)
    blank = torch.zeros((1, height, width, 3), dtype=torch.uint8, device=device)
    backbone.check(transform.normalize(blank, dtype))
    if settings.compile:
        backbone.module = compile_model(module)
    return Model(settings, transform, dtype, backbone)


@dataclass
class Started:
    """A call's rows on their way (Embedder.start): how many, the ones to embed, every row's
    error so far, and their reads (and decodes) in order."""

    rows: int
    todo: list[int]
    row_errors: list[str | None]
    ahead: Ahead


class Embedder:
    """Bytes → embeddings by each model, isolating failures to the rows that cause them."""

    def __init__(self, settings: EmbedderSettings | Sequence[EmbedderSettings]):
        every = [settings] if isinstance(settings, EmbedderSettings) else list(settings)
        first = every[0]
        for other in every[1:]:
            differ = [n for n in SHARED_SETTINGS if getattr(other, n) != getattr(first, n)]
            if differ:
                raise ValueError(f"the models of one embedder must share {', '.join(differ)}")
        self.settings = first
        self.device = select_device(first.device, first.rank)
        if self.device.type == "cpu" and first.cpu_threads is not None:
            torch.set_num_threads(first.cpu_threads or available_cpus())
        self.models = [load(one, self.device) for one in every]
        threads = first.decode_threads
        if threads is None:
            threads = default_decode_threads(self.device)
        self.datapath = DataPath(
            self.models[0].transform,
            more=[m.transform for m in self.models[1:]],
            draft_factor=first.jpeg_draft_factor,
            threads=threads,
            options=first.preprocessing,
            io_threads=first.read_threads,
            budget_pixels=megapixels(first.decode_megapixels),
        )
        self.gpu_decoder = None
        if first.gpu_decode:
            from embedding_job.imaging.gpu_jpeg import GpuJpegDecoder

            self.gpu_decoder = GpuJpegDecoder.create(self.datapath, self.device)
        for model in self.models:
            log.info(
                "loaded %s (%s) on %s as %s (dim %d, pooling %s, batch %d, %d torch threads, "
                "%d decode threads%s)",
                model.settings.model_dir,
                model.backbone.checkpoint.family,
                self.device,
                str(model.dtype).removeprefix("torch."),
                model.dim,
                model.backbone.pooling.value,
                model.batch_size,
                torch.get_num_threads(),
                threads,
                ", GPU JPEG decode" if self.gpu_decoder is not None else "",
            )

    # The first (or only) model's, as a one-model embedder has always had them.
    @property
    def dim(self) -> int:
        return self.models[0].dim

    @property
    def dtype(self) -> torch.dtype:
        return self.models[0].dtype

    @property
    def model(self) -> torch.nn.Module:
        return self.models[0].backbone.module

    @property
    def model_seconds(self) -> tuple[float, ...]:
        """Each model's seconds in its forward passes so far (metrics: model vs decode time)."""
        return tuple(model.backbone.seconds for model in self.models)

    def close(self) -> None:
        """Stop the decode threads (they also end with the process)."""
        self.datapath.close()

    def embed_bytes(
        self, items: Sequence[ImageData | None], errors: Sequence[str | None] | None = None
    ) -> tuple[list[np.ndarray | None], list[str | None]]:
        """``embed_models`` of a one-model embedder: that model's vectors and the errors."""
        if len(self.models) != 1:
            raise ValueError(f"this embedder has {len(self.models)} models: use embed_models")
        vectors, row_errors = self.embed_models(items, errors)
        return vectors[0], row_errors

    def embed_models(
        self, items: Sequence[ImageData | None], errors: Sequence[str | None] | None = None
    ) -> tuple[list[list[np.ndarray | None]], list[str | None]]:
        """Embed each item (image bytes, or a source the data path reads on its threads: a
        local file, a remote URL, base64 text) with each model: one list of vectors per model
        and one error per row. A row that fails gets ``None`` from every model and a short
        error; the rest embed.

        ``errors`` carries failures found upstream (a cell that names no image), kept as they
        are. Images are read and decoded once, on the data path's threads while the models run
        on earlier batches; each model's batches are its ``batch_size`` images whatever the
        number of items.
        """
        return self.embed_started(self.start(items, errors))

    def start(
        self, items: Sequence[ImageData | None], errors: Sequence[str | None] | None = None
    ) -> Started:
        """``embed_models``' first step: the rows to embed, their first reads and decodes
        started on the data path's threads. A call that waits for its turn on a shared
        Embedder (run/shared_worker) starts them before it waits."""
        row_errors: list[str | None] = list(errors) if errors is not None else [None] * len(items)
        todo: list[int] = []
        for index, data in enumerate(items):
            if row_errors[index] is not None:
                continue
            if data is None:
                row_errors[index] = "missing image (null)"
                continue
            todo.append(index)
        sources = (items[i] or b"" for i in todo)
        window = 2 * self._largest_batch
        ahead = (
            self.datapath.load(sources, window=window)
            if self.gpu_decoder is not None
            else self.datapath.map_views(sources, window=window)
        )
        return Started(len(items), todo, row_errors, ahead)

    def embed_started(
        self, started: Started
    ) -> tuple[list[list[np.ndarray | None]], list[str | None]]:
        """``embed_models``' second step: the models' vectors and the rows' errors."""
        vectors: list[list[np.ndarray | None]] = [[None] * started.rows for _ in self.models]
        try:
            if self.gpu_decoder is not None:
                self._embed_on_gpu(started, vectors)
            else:
                self._embed_on_cpu_path(started, vectors)
        finally:
            started.ahead.close()
        return vectors, started.row_errors

    @property
    def _largest_batch(self) -> int:
        return max(model.batch_size for model in self.models)

    def _embed_on_cpu_path(self, started: Started, vectors: list[list[np.ndarray | None]]) -> None:
        row_errors = started.row_errors
        rows: list[list[int]] = [[] for _ in self.models]
        pixels: list[list[np.ndarray]] = [[] for _ in self.models]
        for index, result in zip(started.todo, started.ahead, strict=True):
            if isinstance(result, RowError):
                row_errors[index] = str(result)
                continue
            for number, (model, view) in enumerate(zip(self.models, result, strict=True)):
                rows[number].append(index)
                pixels[number].append(view)
                if len(pixels[number]) == model.batch_size:
                    self._embed_rows(number, rows[number], pixels[number], vectors)
                    rows[number], pixels[number] = [], []
        for number in range(len(self.models)):
            if pixels[number]:
                self._embed_rows(number, rows[number], pixels[number], vectors)

    def _embed_rows(
        self,
        number: int,
        rows: list[int],
        pixels: list[np.ndarray],
        vectors: list[list[np.ndarray | None]],
    ) -> None:
        model = self.models[number]
        embedded = model.backbone(
            self.datapath.to_device(pixels, self.device, model.dtype, model.transform)
        )
        for row, index in enumerate(rows):
            vectors[number][index] = embedded[row]

    def _embed_on_gpu(self, started: Started, vectors: list[list[np.ndarray | None]]) -> None:
        assert self.gpu_decoder is not None
        row_errors = started.row_errors
        step = self._largest_batch
        # Sources are read on the data path's threads up to two groups ahead of the GPU.
        rows: list[int] = []
        datas: list[bytes] = []
        for index, data in zip(started.todo, started.ahead, strict=True):
            if isinstance(data, RowError):
                row_errors[index] = str(data)
                continue
            rows.append(index)
            datas.append(data)
            if len(rows) == step:
                self._embed_group_on_gpu(rows, datas, vectors, row_errors)
                rows, datas = [], []
        if rows:
            self._embed_group_on_gpu(rows, datas, vectors, row_errors)

    def _embed_group_on_gpu(
        self,
        rows: list[int],
        datas: list[bytes],
        vectors: list[list[np.ndarray | None]],
        row_errors: list[str | None],
    ) -> None:
        assert self.gpu_decoder is not None
        batches, failures = self.gpu_decoder.decode(datas)
        for position, message in failures.items():
            row_errors[rows[position]] = message
        if batches is None:
            return
        good = [i for p, i in enumerate(rows) if p not in failures]
        for number, (model, batch) in enumerate(zip(self.models, batches, strict=True)):
            for start in range(0, len(good), model.batch_size):
                chunk = batch[start : start + model.batch_size]
                embedded = model.backbone(model.transform.normalize(chunk, model.dtype))
                for row, index in enumerate(good[start : start + model.batch_size]):
                    vectors[number][index] = embedded[row]


def compile_model(model: torch.nn.Module) -> torch.nn.Module:
    """torch.compile the model; shapes are static per batch size (a short last batch recompiles
    once)."""
    compiled: torch.nn.Module = torch.compile(model, dynamic=False)  # type: ignore[assignment]
    return compiled
