"""Scenarios that time library code inside one fresh worker process each.

The driver writes a ``WorkerSpec`` to a file and starts ``python -m bench --worker <file>``, so
that each scenario's peak memory and thread settings are its own. In the worker the scenario's
``measure`` function gets a ``Worker`` (the images' bytes, torch device and dtype) and times its
passes with ``timed``.
"""

from __future__ import annotations

import json
import math
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.scenario import Context
from bench.tree_memory import TreeMemory

BATCH = 32  # the original component's batch size; --batch-size changes it
#: The repository root: the worker imports ``bench`` from here, whatever the caller's cwd.
REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class WorkerSpec:
    """What the driver tells a worker process (JSON in a file)."""

    variant: str
    model_dir: str
    images: list[str]
    device: str
    dtype: str
    min_seconds: float
    draft_factor: float | None
    result: str
    batch_size: int = BATCH
    call_batch_size: int = BATCH
    #: A second model, for the scenarios of several models (two_models).
    companion_model_dir: str | None = None


@dataclass
class Worker:
    """A worker's inputs, loaded: the images' bytes, the torch device and dtype."""

    spec: WorkerSpec
    datas: list[bytes]
    device: Any  # torch.device
    dtype: Any  # torch.dtype


#: A scenario's measurement in its worker: figures with "threads", the CPU threads it used.
Measure = Callable[[Worker], dict[str, Any]]


@dataclass(frozen=True)
class InProcessScenario:
    """A scenario whose ``measure`` runs in its own worker process."""

    name: str
    measure: Measure
    data_only: bool = False
    suite: str = "model"

    def run(self, context: Context) -> dict[str, Any]:
        return run_in_subprocess(self.worker_spec(context))

    def worker_spec(self, context: Context) -> WorkerSpec:
        """What this scenario's worker process is told."""
        return WorkerSpec(
            variant=self.name,
            model_dir=str(context.model_dir),
            images=[str(p) for p in context.paths],
            device=context.device,
            dtype=context.dtype,
            min_seconds=context.min_seconds,
            draft_factor=context.draft_factor,
            result=str(context.workdir / f"result-{self.name}.json"),
            batch_size=context.batch_size,
            call_batch_size=context.call_batch_size,
        )


def batches(items: Sequence[bytes], size: int) -> Iterator[Sequence[bytes]]:
    """``items`` in consecutive slices of ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def sync(device: Any) -> None:
    """Wait for the device's queued work, so that timings include it."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(
    run_pass: Callable[[], int], warmup: Callable[[], object], min_seconds: float
) -> dict[str, float]:
    """``warmup`` once, then whole passes over the images until ``min_seconds`` have passed."""
    warmup()
    images = 0
    passes = 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    while True:
        images += run_pass()
        passes += 1
        wall = time.perf_counter() - wall0
        if wall >= min_seconds:
            break
    cpu = time.process_time() - cpu0
    return {
        "images": images,
        "passes": passes,
        "seconds": wall,
        "images_per_s": images / wall,
        "cpu_seconds": cpu,
        "images_per_cpu_s": images / cpu if cpu > 0 else math.nan,
    }


def run_worker(spec: WorkerSpec) -> dict[str, Any]:
    """One in-process scenario, timed after a warm-up batch; returns its figures."""
    from bench.scenarios import SCENARIOS
    from embedding_job.api import Device, DType
    from embedding_job.model.embedder import select_device, select_dtype

    scenario = SCENARIOS.get(spec.variant)
    if not isinstance(scenario, InProcessScenario):
        raise ValueError(f"unknown in-process variant {spec.variant!r}")
    device = select_device(Device(spec.device), 0)
    worker = Worker(
        spec=spec,
        datas=[Path(p).read_bytes() for p in spec.images],
        device=device,
        dtype=select_dtype(DType(spec.dtype), device),
    )
    figures = scenario.measure(worker)
    figures["peak_rss_mb_self"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return figures


def worker_main(spec_file: str) -> int:
    """The worker process: run the spec in ``spec_file``, write the figures where it says."""
    spec = WorkerSpec(**json.loads(Path(spec_file).read_text()))
    Path(spec.result).write_text(json.dumps(run_worker(spec)))
    return 0


def run_in_subprocess(spec: WorkerSpec) -> dict[str, Any]:
    """``run_worker(spec)`` in a fresh process; its figures, with the tree's peak PSS."""
    spec_path = Path(spec.result).with_suffix(".spec.json")
    spec_path.write_text(json.dumps(asdict(spec)))
    pythonpath = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "TRANSFORMERS_VERBOSITY": "error", "PYTHONPATH": pythonpath}
    command = [sys.executable, "-m", "bench", "--worker", str(spec_path)]
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True
    )
    with TreeMemory(proc.pid) as memory:
        _, stderr = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"bench worker {spec.variant} failed:\n{stderr[-3000:]}")
    figures: dict[str, Any] = json.loads(Path(spec.result).read_text())
    figures["peak_rss_mb"] = figures.pop("peak_rss_mb_self")
    figures["peak_pss_mb"] = memory.peak_pss_kb / 1024
    return figures
