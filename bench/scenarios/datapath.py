"""``datapath``: bytes → model-ready tensor with this job's data path, inline on one thread;
``datapath_mt``: the same on a pool of decode threads, one per CPU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.in_process import InProcessScenario, Worker, batches, sync, timed
from embedding_job.imaging.datapath import available_cpus


def _measure(worker: Worker, threaded: bool) -> dict[str, Any]:
    import numpy as np
    import torch

    from embedding_job.imaging.datapath import DataPath
    from embedding_job.imaging.transform import ImageTransform

    # Per-core figures: no intra-op parallelism behind the data path's back.
    torch.set_num_threads(1)
    threads = available_cpus() if threaded else 1
    spec, datas, device, dtype = worker.spec, worker.datas, worker.device, worker.dtype
    size = spec.batch_size
    transform = ImageTransform.from_pretrained(Path(spec.model_dir))
    pool = threads if threaded else 0  # 0: decode inline, on the calling thread
    datapath = DataPath(transform, draft_factor=spec.draft_factor, threads=pool)

    def prepare(batch: Any) -> int:
        pixels = [p for p in datapath.map(batch, window=2 * size) if isinstance(p, np.ndarray)]
        datapath.to_device(pixels, device, dtype)
        sync(device)
        return len(batch)

    def inline_pass() -> int:
        return sum(prepare(batch) for batch in batches(datas, size))

    def threaded_pass() -> int:
        # Threads decode ahead across batch boundaries, as in Embedder.embed_bytes.
        pixels: list[np.ndarray] = []
        for result in datapath.map(datas, window=2 * size):
            if isinstance(result, np.ndarray):
                pixels.append(result)
            if len(pixels) == size:
                datapath.to_device(pixels, device, dtype)
                pixels = []
        if pixels:
            datapath.to_device(pixels, device, dtype)
        sync(device)
        return len(datas)

    run_pass = threaded_pass if threaded else inline_pass
    figures: dict[str, Any] = timed(run_pass, lambda: prepare(datas[:size]), spec.min_seconds)
    datapath.close()
    figures["threads"] = threads
    return figures


def measure_inline(worker: Worker) -> dict[str, Any]:
    """The job's data path on one thread."""
    return _measure(worker, threaded=False)


def measure_threaded(worker: Worker) -> dict[str, Any]:
    """The job's data path on one decode thread per CPU."""
    return _measure(worker, threaded=True)


INLINE = InProcessScenario("datapath", measure_inline, data_only=True)
THREADED = InProcessScenario("datapath_mt", measure_threaded, data_only=True)
