"""One variant of the GPU run (``bench.gpu_run``), measured in its own process:
``python -m bench.gpu_variant SPEC.json`` writes its figures to the spec's ``result`` file.

The job's own ``Embedder`` (its loading, data path and batching) embeds the image set:

* ``images_per_s`` - whole passes of ``embed_bytes`` over every image in one call (the decode
  threads, or nvJPEG with ``gpu_decode``, run ahead of the model), after a warm-up call that
  also compiles the model when ``compile`` is set;
* ``model_busy_fraction`` - the share of those passes' wall time inside the model's forward
  calls (CUDA events around each call; on a CPU, the wall clock); ``gpu_utilization`` - NVML's
  mean utilisation over the same time, where NVML answers;
* ``model_only_images_per_s`` - the model's batches on already decoded images (host-to-device
  copy, normalisation, forward and pooling, vectors back): what this code gets from the card
  with decoding out of the way.

TFLOP/s and the fraction of the reference ceiling are computed by ``gpu_run``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.sampling import Sampler


@dataclass(frozen=True)
class VariantSpec:
    """What the parent tells a variant's process (JSON in a file)."""

    model_dir: str
    dtype: str
    compile: bool
    gpu_decode: bool
    device: str
    images: list[str]
    batch_size: int
    seconds: float
    model_only_seconds: float
    result: str
    decode_threads: int | None = None

    def write(self, path: Path) -> Path:
        path.write_text(json.dumps(asdict(self)))
        return path


class ForwardTimer:
    """Stands in for the embedder's model (its backbone's module): calls it, and times each
    call on the device (CUDA events) or, on a CPU, by the wall clock."""

    def __init__(self, model: Any, cuda: bool):
        self.model = model
        self.cuda = cuda
        self.spans: list[Any] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        import torch

        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            out = self.model(*args, **kwargs)
            end.record()
            self.spans.append((start, end))
            return out
        began = time.perf_counter()
        out = self.model(*args, **kwargs)
        self.spans.append(time.perf_counter() - began)
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def busy_seconds(self) -> float:
        """Seconds inside the calls so far (after the device has finished them)."""
        if self.cuda:
            return sum(start.elapsed_time(end) for start, end in self.spans) / 1000
        return float(sum(self.spans))


class Utilization(Sampler):
    """NVML's GPU utilisation, sampled every 0.1 s while the block runs (on a GPU)."""

    def __init__(self, device: Any):
        super().__init__(0.1, enabled=device.type == "cuda")
        self.device = device
        self.samples: list[float] = []

    def sample(self) -> bool:
        import torch

        try:
            self.samples.append(float(torch.cuda.utilization(self.device)) / 100)
        except Exception:  # noqa: BLE001 - no NVML here: no figure, not a failed run
            return False
        return True

    @property
    def mean(self) -> float | None:
        return sum(self.samples) / len(self.samples) if self.samples else None


def _timed_passes(
    run_pass: Callable[[], int], seconds: float, sync: Callable[[], None]
) -> tuple[int, float]:
    """Whole passes until ``seconds`` have gone by (at least one); (images, wall seconds)."""
    images = 0
    started = time.perf_counter()
    while True:
        images += run_pass()
        sync()
        wall = time.perf_counter() - started
        if wall >= seconds:
            return images, wall


def measure(spec: VariantSpec) -> dict[str, Any]:
    """The variant's figures."""
    import torch

    from embedding_job.api import Device, DType
    from embedding_job.model.embedder import Embedder, EmbedderSettings

    datas = [Path(p).read_bytes() for p in spec.images]
    began = time.perf_counter()
    embedder = Embedder(
        EmbedderSettings(
            model_dir=spec.model_dir,
            dtype=DType(spec.dtype),
            batch_size=spec.batch_size,
            device=Device(spec.device),
            compile=spec.compile,
            gpu_decode=spec.gpu_decode,
            decode_threads=spec.decode_threads,
        )
    )
    load_s = time.perf_counter() - began
    cuda = embedder.device.type == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(embedder.device)

    model = embedder.models[0]
    timer = ForwardTimer(model.backbone.module, cuda)
    model.backbone.module = timer  # type: ignore[assignment]  # times each forward from outside
    began = time.perf_counter()
    embedder.embed_bytes(datas[: 2 * spec.batch_size])  # warm-up (and compilation)
    sync()
    warmup_s = time.perf_counter() - began

    def embed_all() -> int:
        vectors, errors = embedder.embed_bytes(datas)
        failed = [e for e in errors if e is not None]
        if failed:
            raise RuntimeError(f"{len(failed)} images failed, first: {failed[0]}")
        return len(vectors)

    timer.spans.clear()
    with Utilization(embedder.device) as utilization:
        images, wall = _timed_passes(embed_all, spec.seconds, sync)
    busy = timer.busy_seconds()
    decoded = [
        p for p in embedder.datapath.map(datas[: spec.batch_size]) if not isinstance(p, Exception)
    ]

    def model_only() -> int:
        for start in range(0, len(decoded), spec.batch_size):
            chunk = decoded[start : start + spec.batch_size]
            pixels = embedder.datapath.to_device(chunk, embedder.device, model.dtype)
            model.backbone(pixels)
        return len(decoded)

    model_images, model_wall = _timed_passes(model_only, spec.model_only_seconds, sync)
    embedder.close()
    return {
        "effective_dtype": str(embedder.dtype).removeprefix("torch."),
        "gpu_decode_active": embedder.gpu_decoder is not None,
        "decode_threads": embedder.datapath.threads,
        "load_s": load_s,
        "warmup_s": warmup_s,
        "images": images,
        "seconds": wall,
        "images_per_s": images / wall,
        "model_busy_fraction": busy / wall,
        "gpu_utilization": utilization.mean,
        "model_only_images_per_s": model_images / model_wall,
        "peak_gpu_memory_gb": torch.cuda.max_memory_allocated(embedder.device) / 1e9
        if cuda
        else None,
    }


def main(argv: list[str]) -> int:
    """Measure the variant in the spec file ``argv[0]``; its figures go to its ``result``."""
    spec = VariantSpec(**json.loads(Path(argv[0]).read_text()))
    Path(spec.result).write_text(json.dumps(measure(spec)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
