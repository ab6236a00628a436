"""Load a ViT-family model and turn image bytes into embeddings, one bad row at a time."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import AutoConfig, AutoModel
from transformers.utils import logging as hf_logging

from embedding_job.api import Device, DType, Pooling
from embedding_job.errors import RowError
from embedding_job.imaging.datapath import (
    DEFAULT_DRAFT_FACTOR,
    DataPath,
    ImageData,
    available_cpus,
    default_decode_threads,
)
from embedding_job.imaging.transform import ImageTransform
from embedding_job.logs import quiet_transformers
from embedding_job.model.files import embedding_dim

log = logging.getLogger(__name__)

_TORCH_DTYPES = {
    DType.FLOAT16: torch.float16,
    DType.BFLOAT16: torch.bfloat16,
    DType.FLOAT32: torch.float32,
}


@dataclass(frozen=True)
class EmbedderSettings:
    """Everything an embedding worker needs; plain values, so it pickles to Ray actors."""

    model_dir: str
    dtype: DType = DType.FLOAT16
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


def load_model(model_dir: Path, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """The model with weights stored in ``dtype`` (not autocast), SDPA attention, eval mode."""
    config = AutoConfig.from_pretrained(model_dir)
    kwargs: dict[str, object] = {"dtype": dtype, "attn_implementation": "sdpa"}
    if config.model_type == "vit":
        # ViT's pooler is tanh(dense(CLS)), not the CLS token: the embedding needs neither.
        kwargs["add_pooling_layer"] = False
    hf_logging.disable_progress_bar()
    # transformers prints a load report on every load (for ViT: the pooler weights we leave
    # out). Only weights the checkpoint lacks matter: those would be random.
    with quiet_transformers():
        model, info = AutoModel.from_pretrained(model_dir, output_loading_info=True, **kwargs)
    missing = list(info.get("missing_keys") or [])
    if missing:
        log.warning(
            "%s has no weights for %d parameters (%s): they are randomly initialised",
            model_dir,
            len(missing),
            ", ".join(sorted(missing)[:5]),
        )
    if device.type == "cuda" and dtype == torch.float32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    model = model.to(device).eval()
    return model


class Embedder:
    """Bytes → L2-normalised embeddings, isolating failures to the rows that cause them."""

    def __init__(self, settings: EmbedderSettings):
        self.settings = settings
        #: Seconds spent in the model's forward passes so far (metrics: model vs decode time).
        self.model_seconds = 0.0
        self.device = select_device(settings.device, settings.rank)
        self.dtype = select_dtype(settings.dtype, self.device)
        if self.device.type == "cpu" and settings.cpu_threads is not None:
            torch.set_num_threads(settings.cpu_threads or available_cpus())
        model_dir = Path(settings.model_dir)
        self.transform = ImageTransform.from_pretrained(model_dir)
        self.model = load_model(model_dir, self.device, self.dtype)
        if settings.compile:
            self.model = compile_model(self.model)
        self.dim = embedding_dim(model_dir)
        threads = settings.decode_threads
        if threads is None:
            threads = default_decode_threads(self.device)
        self.datapath = DataPath(
            self.transform, draft_factor=settings.jpeg_draft_factor, threads=threads
        )
        self.gpu_decoder = None
        if settings.gpu_decode:
            from embedding_job.imaging.gpu_jpeg import GpuJpegDecoder

            self.gpu_decoder = GpuJpegDecoder.create(self.datapath, self.device)
        log.info(
            "loaded %s on %s as %s (dim %d, pooling %s, %d torch threads, %d decode threads%s)",
            model_dir,
            self.device,
            str(self.dtype).removeprefix("torch."),
            self.dim,
            settings.pooling.value,
            torch.get_num_threads(),
            threads,
            ", GPU JPEG decode" if self.gpu_decoder is not None else "",
        )

    def close(self) -> None:
        """Stop the decode threads (they also end with the process)."""
        self.datapath.close()

    @torch.inference_mode()
    def embed_pixels(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Embed same-sized uint8 images; returns (N, dim) float32."""
        out = np.empty((len(images), self.dim), dtype=np.float32)
        step = self.settings.batch_size
        for start in range(0, len(images), step):
            chunk = images[start : start + step]
            out[start : start + len(chunk)] = self._forward(
                self.datapath.to_device(chunk, self.device, self.dtype)
            )
        return out

    @torch.inference_mode()
    def _forward(self, pixel_values: torch.Tensor) -> np.ndarray:
        started = time.perf_counter()
        hidden = self.model(pixel_values=pixel_values).last_hidden_state
        pooled = hidden[:, 0] if self.settings.pooling is Pooling.CLS else hidden.mean(dim=1)
        pooled = pooled.float()
        if self.settings.normalize:
            pooled = torch.nn.functional.normalize(pooled, p=2.0, dim=-1)
        result: np.ndarray = pooled.cpu().numpy()  # waits for the device: the time is real
        self.model_seconds += time.perf_counter() - started
        return result

    def embed_bytes(
        self, items: Sequence[ImageData | None], errors: Sequence[str | None] | None = None
    ) -> tuple[list[np.ndarray | None], list[str | None]]:
        """Embed each item (image bytes, or a LocalFile, read where it is decoded); a row that
        fails gets ``None`` and a short error, the rest embed.

        ``errors`` carries failures found upstream (e.g. a download), kept as they are. Images
        are decoded on the data path's threads while the model runs on earlier batches; model
        batches are ``batch_size`` images whatever the number of items.
        """
        vectors: list[np.ndarray | None] = [None] * len(items)
        row_errors: list[str | None] = list(errors) if errors is not None else [None] * len(items)
        todo: list[int] = []
        for index, data in enumerate(items):
            if row_errors[index] is not None:
                continue
            if data is None:
                row_errors[index] = "missing image (null)"
                continue
            todo.append(index)
        if todo and self.gpu_decoder is not None:
            self._embed_on_gpu(items, todo, vectors, row_errors)
        elif todo:
            self._embed_on_cpu_path(items, todo, vectors, row_errors)
        return vectors, row_errors

    def _embed_on_cpu_path(
        self,
        items: Sequence[ImageData | None],
        todo: list[int],
        vectors: list[np.ndarray | None],
        row_errors: list[str | None],
    ) -> None:
        step = self.settings.batch_size
        rows: list[int] = []
        pixels: list[np.ndarray] = []
        decoded = self.datapath.map((items[i] or b"" for i in todo), window=2 * step)
        for index, result in zip(todo, decoded, strict=True):
            if isinstance(result, RowError):
                row_errors[index] = str(result)
                continue
            rows.append(index)
            pixels.append(result)
            if len(pixels) == step:
                self._embed_rows(rows, pixels, vectors)
                rows, pixels = [], []
        if pixels:
            self._embed_rows(rows, pixels, vectors)

    def _embed_rows(
        self, rows: list[int], pixels: list[np.ndarray], vectors: list[np.ndarray | None]
    ) -> None:
        embedded = self.embed_pixels(pixels)
        for row, index in enumerate(rows):
            vectors[index] = embedded[row]

    def _embed_on_gpu(
        self,
        items: Sequence[ImageData | None],
        todo: list[int],
        vectors: list[np.ndarray | None],
        row_errors: list[str | None],
    ) -> None:
        assert self.gpu_decoder is not None
        step = self.settings.batch_size
        # Local files are read on the decode threads up to two groups ahead of the GPU.
        loaded = self.datapath.load((items[i] or b"" for i in todo), window=2 * step)
        rows: list[int] = []
        datas: list[bytes] = []
        for index, data in zip(todo, loaded, strict=True):
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
        vectors: list[np.ndarray | None],
        row_errors: list[str | None],
    ) -> None:
        assert self.gpu_decoder is not None
        batch, failures = self.gpu_decoder.decode(datas)
        for position, message in failures.items():
            row_errors[rows[position]] = message
        if batch is None:
            return
        good = [i for p, i in enumerate(rows) if p not in failures]
        embedded = self._forward(self.transform.normalize(batch, self.dtype))
        for row, index in enumerate(good):
            vectors[index] = embedded[row]


def compile_model(model: torch.nn.Module) -> torch.nn.Module:
    """torch.compile the model; shapes are static per batch size (a short last batch recompiles
    once)."""
    compiled: torch.nn.Module = torch.compile(model, dynamic=False)  # type: ignore[assignment]
    return compiled
