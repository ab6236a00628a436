"""``two_models``: one embedder of two models (the bench's model and a CLIP companion) against
two one-model embedders of the same models on the same images.

The figure that matters is the data path's CPU per image pair: the two-model embedder decodes
each image once and resizes it for each model; two one-model embedders decode it twice. It is
measured from outside the library: ``DataPath.views`` (the one call that decodes and resizes,
on the decode threads or inline) is wrapped to add up each call's thread CPU time and count
its decodes. Goal: ``decode_cpu_ratio`` (one-model pairs / two-model) >= 1.6.

``images_per_s`` is pairs of vectors per second of the two-model embedder,
``singles_images_per_s`` the same with the two one-model embedders in turn; both call the
embedder per Daft-sized batch, as ``embedder`` does.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.in_process import InProcessScenario, Worker, batches, run_in_subprocess, timed
from bench.model_configs import COMPANION, REAL_CONFIGS, flops_per_image, make_model
from bench.scenario import Context
from embedding_job.imaging.datapath import available_cpus


@dataclass
class DecodeMeter:
    """Thread CPU seconds and decodes inside ``DataPath.views``, summed over threads."""

    cpu_seconds: float = 0.0
    decodes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            self.cpu_seconds, self.decodes = 0.0, 0

    def add(self, seconds: float) -> None:
        with self.lock:
            self.cpu_seconds += seconds
            self.decodes += 1


@contextmanager
def metered_views(meter: DecodeMeter) -> Iterator[None]:
    """``DataPath.views`` measured by ``meter`` while the block runs."""
    from embedding_job.imaging.datapath import DataPath

    real = DataPath.views

    def views(self: DataPath, data: Any) -> Any:
        start = time.thread_time()
        try:
            return real(self, data)
        finally:
            meter.add(time.thread_time() - start)

    DataPath.views = views  # type: ignore[method-assign]
    try:
        yield
    finally:
        DataPath.views = real  # type: ignore[method-assign]


def measure(worker: Worker) -> dict[str, Any]:
    """Both ways over the images, each timed for ``min_seconds``; decode CPU per image pair."""
    from embedding_job.api import Device, DType, Pooling
    from embedding_job.model.embedder import Embedder, EmbedderSettings

    spec, datas = worker.spec, worker.datas
    if spec.companion_model_dir is None:
        raise ValueError("two_models needs companion_model_dir")
    first = EmbedderSettings(
        model_dir=spec.model_dir,
        dtype=DType(spec.dtype),
        batch_size=spec.batch_size,
        device=Device(spec.device),
        jpeg_draft_factor=spec.draft_factor,
    )
    companion = EmbedderSettings(
        **{**asdict(first), "model_dir": spec.companion_model_dir, "pooling": Pooling.AUTO}
    )
    both = Embedder([first, companion])
    singles = [Embedder(first), Embedder(companion)]
    step = spec.call_batch_size

    def two_pass() -> int:
        for batch in batches(datas, step):
            both.embed_models(batch)
        return len(datas)

    def singles_pass() -> int:
        for batch in batches(datas, step):
            for single in singles:
                single.embed_bytes(batch)
        return len(datas)

    meter = DecodeMeter()
    warm = datas[: spec.batch_size]
    measured: dict[str, tuple[dict[str, Any], float, float]] = {}
    with metered_views(meter):
        for name, run_pass, warmup in [
            ("two", two_pass, lambda: both.embed_models(warm)),
            ("singles", singles_pass, lambda: [s.embed_bytes(warm) for s in singles]),
        ]:
            result = timed(run_pass, _then_reset(warmup, meter), spec.min_seconds)
            pairs = result["images"]
            measured[name] = (result, meter.decodes / pairs, 1e3 * meter.cpu_seconds / pairs)
    (two, two_decodes, two_cpu), (singles_result, singles_decodes, singles_cpu) = (
        measured["two"],
        measured["singles"],
    )
    figures: dict[str, Any] = dict(two)
    figures.update(
        singles_images_per_s=singles_result["images_per_s"],
        two_decodes_per_pair=two_decodes,
        singles_decodes_per_pair=singles_decodes,
        two_decode_cpu_ms_per_pair=two_cpu,
        singles_decode_cpu_ms_per_pair=singles_cpu,
        decode_cpu_ratio=singles_cpu / two_cpu if two_cpu > 0 else float("nan"),
    )
    figures["flops_per_image"] = flops_per_image(Path(spec.model_dir)) + flops_per_image(
        Path(spec.companion_model_dir)
    )
    figures["threads"] = max(available_cpus(), both.datapath.threads)
    for embedder in [both, *singles]:
        embedder.close()
    return figures


def _then_reset(warmup: Callable[[], object], meter: DecodeMeter) -> Callable[[], object]:
    """``warmup``, then the meter starts from zero (the warm-up is not measured)."""

    def run() -> object:
        result = warmup()
        meter.reset()
        return result

    return run


@dataclass(frozen=True)
class TwoModelsScenario(InProcessScenario):
    """An in-process scenario whose worker also gets a CLIP companion model (made once per
    bench run, under the models root)."""

    def run(self, context: Context) -> dict[str, Any]:
        name, arch = COMPANION["real" if context.model_name in REAL_CONFIGS else "cpu"]
        companion = context.models_root / "bench" / name
        if not (companion / "config.json").is_file():
            make_model(context.models_root, name, arch)
        spec = dataclasses.replace(self.worker_spec(context), companion_model_dir=str(companion))
        return run_in_subprocess(spec)


SCENARIO = TwoModelsScenario("two_models", measure)
