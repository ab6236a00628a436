"""Throughput benchmark: the original component's computation against this job's data path,
embedder and full pipeline, on a generated, reproducible image set.

``python -m embedding_job.bench`` (``make bench``) runs on a CPU in a few minutes with small
random-init models; ``--real-configs`` uses the real architectures' dimensions (meant for GPUs).
Every variant runs in a fresh subprocess, so peak memory and thread settings are its own.

Variants:

* ``baseline`` - the original component: PIL ``open().convert("RGB")``,
  ``AutoImageProcessor(use_fast=True)`` and ``AutoModel`` per batch of 32.
* ``datapath_baseline`` - bytes → model-ready tensor with the Hugging Face processor only.
* ``datapath`` - bytes → model-ready tensor with this job's data path, inline on one thread.
* ``datapath_mt`` - the same on a pool of decode threads (one per CPU).
* ``embedder`` - ``Embedder.embed_bytes`` in-process, called per Daft-sized batch (the rows
  the pipeline gives each call of its UDF: ``pipeline.udf_batch_size``).
* ``embedder_stream`` - ``Embedder.embed_bytes`` on the whole set in one call (decode overlaps
  the model).
* ``daft_native`` / ``daft_ray`` - ``embedding-job run`` in a subprocess on the image folder.
  ``images_per_s`` is the steady state: images per second between the end of the embedder's
  second batch and the end of its last one in the run on all N images (each call's start and
  end come from the embedder's trace hook, ``EMBEDDING_JOB_TRACE_FILE``), which leaves out
  start-up, model load, the first batch's warm-up and Daft's pipeline fill, and keeps
  everything Daft does per batch. Also reported: the same from the first batch, and
  (N - n) / (T(N) - T(n)) from that run and one on the first batch only (n images);
  ``end_to_end_images_per_s`` is N / T(N).

Per-core figures divide images/s by the CPU threads the variant uses; ``images_per_cpu_s`` is
images per CPU-second the process consumed (robust on a shared machine). ``--repeats`` rounds
run every variant in turn; each variant reports its best round (all rounds are in the JSON).
Peak memory: in-process variants report their process's peak RSS; pipeline variants the peak
of the RSS summed over the CLI's whole process tree (shared pages counted in every process);
``peak_pss_mb`` is the proportional share, summed over the tree, sampled every 0.25 s.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embedding_job.cli import telemetry_off
from embedding_job.imaging.datapath import available_cpus

#: H100 bf16 dense matmul, measured (shared/ANCHORS.md).
GPU_PEAK_TFLOPS = 790.0
#: Published GFLOP per 224 px image (2 per multiply-add).
KNOWN_GFLOPS = {
    "dinov2-large": 162.0,
    "dinov2-base": 46.3,
    "vit-base-patch16": 35.1,
    "vit-large-patch16": 123.1,
}
#: Architectures: (kind, hidden, layers, heads, mlp hidden).
REAL_CONFIGS = {
    "vit-base-patch16": ("vit", 768, 12, 12, 3072),
    "dinov2-base": ("dinov2", 768, 12, 12, 3072),
    "dinov2-large": ("dinov2", 1024, 24, 16, 4096),
}
CPU_CONFIGS = {
    "dinov2-small4": ("dinov2", 384, 4, 6, 1536),
    "vit-tiny": ("vit", 32, 2, 2, 128),
}
IN_PROCESS = (
    "baseline",
    "datapath_baseline",
    "datapath",
    "datapath_mt",
    "embedder",
    "embedder_stream",
)
PIPELINE = ("daft_native", "daft_ray")
ALL_VARIANTS = IN_PROCESS + PIPELINE
BATCH = 32  # the original component's batch size; --batch-size changes it

#: The size mix, per 10 images: (width, height, format). Web-photo sizes, landscape and
#: portrait, one in ten a PNG.
SIZE_MIX = (
    (500, 375, "JPEG"),
    (500, 375, "JPEG"),
    (375, 500, "JPEG"),
    (1024, 768, "JPEG"),
    (1024, 768, "JPEG"),
    (768, 1024, "JPEG"),
    (1920, 1080, "JPEG"),
    (1920, 1080, "JPEG"),
    (500, 375, "JPEG"),
    (800, 600, "PNG"),
)


# ---------------------------------------------------------------- image set and models


def _make_one(args: tuple[Path, int, int]) -> str:
    from embedding_job.demo import encode, sample_image

    directory, index, seed = args
    width, height, fmt = SIZE_MIX[index % len(SIZE_MIX)]
    image = sample_image(seed + index, (width, height))
    suffix = "jpg" if fmt == "JPEG" else "png"
    path = directory / f"img_{index:05d}_{width}x{height}.{suffix}"
    options: dict[str, Any] = {"quality": 90} if fmt == "JPEG" else {}
    path.write_bytes(encode(image, fmt, **options))
    return str(path)


def make_image_set(directory: Path, count: int, seed: int = 0, workers: int = 1) -> list[Path]:
    """``count`` images in SIZE_MIX proportions; identical bytes for the same count and seed."""
    directory.mkdir(parents=True, exist_ok=True)
    jobs = [(directory, index, seed) for index in range(count)]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            paths = list(pool.map(_make_one, jobs, chunksize=4))
    else:
        paths = [_make_one(job) for job in jobs]
    return [Path(p) for p in paths]


def make_model(models_root: Path, name: str, arch: tuple[str, int, int, int, int]) -> Path:
    from embedding_job.demo import make_random_model

    kind, hidden, layers, heads, mlp = arch
    dims = {
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "intermediate_size": mlp,
    }
    if kind == "dinov2":
        dims["mlp_ratio"] = mlp // hidden
    return make_random_model(models_root / "bench" / name, kind, dims)


def flops_per_image(model_dir: Path) -> float:
    """Forward FLOPs (2 per multiply-add) of a ViT/DINOv2 encoder at its 224 px input."""
    config = json.loads((Path(model_dir) / "config.json").read_text())
    hidden = int(config["hidden_size"])
    layers = int(config["num_hidden_layers"])
    patch = int(config["patch_size"])
    if config.get("model_type") == "dinov2":
        mlp = int(hidden * float(config.get("mlp_ratio", 4)))
    else:
        mlp = int(config["intermediate_size"])
    patches = (224 // patch) ** 2
    tokens = patches + 1
    per_layer = 2 * tokens * (4 * hidden * hidden + 2 * hidden * mlp) + 4 * tokens * tokens * hidden
    embed = 2 * patches * (3 * patch * patch) * hidden
    return float(layers * per_layer + embed)


# ---------------------------------------------------------------- memory sampling


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                stat = handle.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def _memory_kb(pid: int) -> tuple[int, int]:
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


class TreeMemory:
    """Peak summed RSS and PSS of a process and its descendants, sampled in a thread."""

    def __init__(self, pid: int, interval: float = 0.25):
        self.pid = pid
        self.interval = interval
        self.peak_rss_kb = 0
        self.peak_pss_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeMemory:
        if sys.platform.startswith("linux"):
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            tree = _children()
            todo, total_rss, total_pss = [self.pid], 0, 0
            while todo:
                pid = todo.pop()
                rss, pss = _memory_kb(pid)
                total_rss += rss
                total_pss += pss
                todo.extend(tree.get(pid, []))
            self.peak_rss_kb = max(self.peak_rss_kb, total_rss)
            self.peak_pss_kb = max(self.peak_pss_kb, total_pss)
            self._stop.wait(self.interval)


# ---------------------------------------------------------------- in-process variants


@dataclass
class WorkerSpec:
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


def _batches(items: Sequence[bytes], size: int) -> Iterator[Sequence[bytes]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(
    run_pass: Callable[[], int], warmup: Callable[[], object], min_seconds: float
) -> dict[str, float]:
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
    """One in-process variant, timed after a warm-up batch; returns its figures."""
    import numpy as np
    import torch
    from PIL import Image

    from embedding_job.api import Device, DType
    from embedding_job.imaging.datapath import DataPath
    from embedding_job.imaging.transform import ImageTransform
    from embedding_job.model.embedder import Embedder, EmbedderSettings, select_device, select_dtype

    batch_size = spec.batch_size
    datas = [Path(p).read_bytes() for p in spec.images]
    device = select_device(Device(spec.device), 0)
    dtype = select_dtype(DType(spec.dtype), device)
    model_dir = Path(spec.model_dir)
    variant = spec.variant
    threads = available_cpus()
    if variant in ("datapath_baseline", "datapath"):
        # Per-core figures: one thread, and no intra-op parallelism behind its back.
        torch.set_num_threads(1)
        threads = 1
    elif variant == "datapath_mt":
        torch.set_num_threads(1)

    if variant in ("baseline", "datapath_baseline"):
        from transformers import AutoImageProcessor, AutoModel
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        processor = AutoImageProcessor.from_pretrained(model_dir, use_fast=True)
        model = None
        if variant == "baseline":
            model = AutoModel.from_pretrained(model_dir).to(device, dtype).eval()

        def reference(batch: Sequence[bytes]) -> int:
            pil = [Image.open(io.BytesIO(data)).convert("RGB") for data in batch]
            pixel_values = processor(images=pil, return_tensors="pt")["pixel_values"]
            pixel_values = pixel_values.to(device, dtype)
            if model is not None:
                with torch.no_grad():
                    hidden = model(pixel_values=pixel_values).last_hidden_state
                pooled = torch.nn.functional.normalize(hidden[:, 0].float(), dim=-1)
                pooled.cpu().numpy()
            _sync(device)
            return len(batch)

        def run_pass() -> int:
            return sum(reference(batch) for batch in _batches(datas, batch_size))

        figures = _timed(run_pass, lambda: reference(datas[:batch_size]), spec.min_seconds)
    elif variant in ("datapath", "datapath_mt"):
        transform = ImageTransform.from_pretrained(model_dir)
        pool = threads if variant == "datapath_mt" else 0
        datapath = DataPath(transform, draft_factor=spec.draft_factor, threads=pool)

        def prepare(batch: Sequence[bytes]) -> int:
            pixels = [
                p for p in datapath.map(batch, window=2 * batch_size) if isinstance(p, np.ndarray)
            ]
            datapath.to_device(pixels, device, dtype)
            _sync(device)
            return len(batch)

        def run_pass() -> int:
            if variant == "datapath":
                return sum(prepare(batch) for batch in _batches(datas, batch_size))
            # Threads decode ahead across batch boundaries, as in Embedder.embed_bytes.
            pixels: list[np.ndarray] = []
            for result in datapath.map(datas, window=2 * batch_size):
                if isinstance(result, np.ndarray):
                    pixels.append(result)
                if len(pixels) == batch_size:
                    datapath.to_device(pixels, device, dtype)
                    pixels = []
            if pixels:
                datapath.to_device(pixels, device, dtype)
            _sync(device)
            return len(datas)

        figures = _timed(run_pass, lambda: prepare(datas[:batch_size]), spec.min_seconds)
        datapath.close()
    elif variant in ("embedder", "embedder_stream"):
        embedder = Embedder(
            EmbedderSettings(
                model_dir=str(model_dir),
                dtype=DType(spec.dtype),
                batch_size=batch_size,
                device=Device(spec.device),
                jpeg_draft_factor=spec.draft_factor,
            )
        )
        step = spec.call_batch_size if variant == "embedder" else len(datas)

        def run_pass() -> int:
            for batch in _batches(datas, step):
                embedder.embed_bytes(batch)
            return len(datas)

        figures = _timed(
            run_pass, lambda: embedder.embed_bytes(datas[:batch_size]), spec.min_seconds
        )
        threads = max(threads, embedder.datapath.threads)
        embedder.close()
    else:
        raise ValueError(f"unknown in-process variant {variant!r}")
    figures["threads"] = threads
    figures["peak_rss_mb_self"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return figures


# ---------------------------------------------------------------- pipeline variants


@dataclass(frozen=True)
class JobSetup:
    """What every ``embedding-job run`` of a pipeline variant shares."""

    models_root: Path
    name: str
    device: str
    dtype: str
    batch: int
    call_batch: int

    def config(self, images: Path, out: Path) -> str:
        return json.dumps(
            {
                "input": {"uri": str(images), "format": "images-glob"},
                "model": {"name": self.name, "path": str(self.models_root), "dtype": self.dtype},
                "inference": {
                    "batchSize": self.batch,
                    "callBatchSize": self.call_batch,
                    "device": self.device,
                },
                "output": {"uri": str(out), "mode": "overwrite"},
                "errors": {"maxFailedFraction": 0.0},
            }
        )


def run_cli_once(runner: str, images: Path, out: Path, setup: JobSetup) -> dict[str, Any]:
    """One ``embedding-job run``; wall time, memory and the embedder's per-batch trace."""
    from embedding_job.model.embedder import TRACE_ENV

    trace = out.with_name(out.name + ".trace")
    trace.unlink(missing_ok=True)
    env = {
        **os.environ,
        "DAFT_PROGRESS_BAR": "0",
        "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
        "DO_NOT_TRACK": "1",
        "DAFT_ANALYTICS_ENABLED": "0",
        "RAY_USAGE_STATS_ENABLED": "0",
        TRACE_ENV: str(trace),
    }
    command = [
        sys.executable,
        "-m",
        "embedding_job.cli",
        "--log-format",
        "json",
        "run",
        "--config-json",
        setup.config(images, out),
        "--runner",
        runner,
    ]
    started = time.time()
    start = time.perf_counter()
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True
    )
    with TreeMemory(proc.pid) as memory:
        stdout, stderr = proc.communicate()
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"embedding-job run --runner {runner} failed:\n{stderr[-3000:]}")
    summary = json.loads(stdout.strip().splitlines()[-1])
    calls = []  # (start, end, rows), seconds since the CLI started
    if trace.is_file():
        for line in trace.read_text().split("\n"):
            if line.strip():
                begin, end, rows = line.split()
                calls.append((float(begin) - started, float(end) - started, int(rows)))
    calls.sort(key=lambda call: call[1])
    return {
        "seconds": seconds,
        "rows": summary["rowsIn"],
        "failed": summary["rowsFailed"],
        "calls": calls,
        "peak_rss_mb": memory.peak_rss_kb / 1024,
        "peak_pss_mb": memory.peak_pss_kb / 1024,
    }


def _trace_rate(calls: list[tuple[float, float, int]], skip: int = 2) -> float:
    """Rows per second from the end of embedder call ``skip`` to the end of the last call.

    The first call also warms the model up, and Daft's pipeline may still be filling before the
    second. Measured on a CPU: 5-10 ms between calls; before commit 1133827 also one 0.5-0.7 s
    wait before the second call, and 30-40 ms between calls while Daft moved the images' bytes.
    """
    skip = max(1, min(skip, len(calls) - 1))
    if len(calls) < 2 or calls[-1][1] <= calls[skip - 1][1]:
        return math.nan
    return sum(rows for _, _, rows in calls[skip:]) / (calls[-1][1] - calls[skip - 1][1])


def _busy_fraction(calls: list[tuple[float, float, int]], skip: int = 2) -> float:
    """Share of the steady-state window the embedder spent inside its calls (not waiting)."""
    skip = max(1, min(skip, len(calls) - 1))
    if len(calls) < 2 or calls[-1][1] <= calls[skip - 1][1]:
        return math.nan
    busy = sum(end - begin for begin, end, _ in calls[skip:])
    return busy / (calls[-1][1] - calls[skip - 1][1])


def run_pipeline(
    variant: str,
    workdir: Path,
    paths: list[Path],
    setup: JobSetup,
    small_runs: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The CLI on one batch of images (once per runner), then on all of them."""
    runner = variant.removeprefix("daft_")
    small_dir = workdir / "images-small"
    if not small_dir.is_dir():
        small_dir.mkdir()
        for path in paths[: setup.batch]:
            os.link(path, small_dir / path.name)
    images_dir = paths[0].parent
    small_runs = {} if small_runs is None else small_runs
    if runner not in small_runs:
        small_runs[runner] = run_cli_once(runner, small_dir, workdir / f"out-{runner}-small", setup)
    small = small_runs[runner]
    full = run_cli_once(runner, images_dir, workdir / f"out-{runner}", setup)
    extra_seconds = full["seconds"] - small["seconds"]
    by_difference = (full["rows"] - small["rows"]) / extra_seconds if extra_seconds > 0 else None
    steady = _trace_rate(full["calls"])
    from_first = _trace_rate(full["calls"], skip=1)
    first_batch = full["calls"][0][1] if full["calls"] else math.nan
    return {
        "images_per_s": steady,
        "steady_state_method": "embedder batch ends in the full run: 2nd to last",
        "steady_from_first_batch_images_per_s": from_first,
        "steady_by_difference_images_per_s": by_difference,
        "end_to_end_images_per_s": full["rows"] / full["seconds"],
        "end_to_end_s": full["seconds"],
        "first_batch_done_s": first_batch,
        "after_last_batch_s": full["seconds"] - full["calls"][-1][1] if full["calls"] else None,
        "embedder_busy_fraction": _busy_fraction(full["calls"]),
        "one_batch_run_s": small["seconds"],
        "images": full["rows"],
        "failed": full["failed"],
        "threads": available_cpus(),
        "peak_rss_mb": full["peak_rss_mb"],
        "peak_pss_mb": full["peak_pss_mb"],
    }


# ---------------------------------------------------------------- driver


def run_in_process_variant(spec: WorkerSpec) -> dict[str, Any]:
    spec_path = Path(spec.result).with_suffix(".spec.json")
    spec_path.write_text(json.dumps(spec.__dict__))
    env = {**os.environ, "TRANSFORMERS_VERBOSITY": "error"}
    command = [sys.executable, "-m", "embedding_job.bench", "--worker", str(spec_path)]
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


def _device_name(device: str) -> tuple[str, str]:
    import torch

    if device != "cpu" and torch.cuda.is_available():
        return "cuda", torch.cuda.get_device_name(0)
    return "cpu", _cpu_model()


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _better(figures: dict[str, Any], previous: dict[str, Any]) -> bool:
    new, old = figures.get("images_per_s"), previous.get("images_per_s")
    if new is None or (isinstance(new, float) and math.isnan(new)):
        return False
    return old is None or (isinstance(old, float) and math.isnan(old)) or new > old


def add_ratios(variants: dict[str, dict[str, Any]], flops: float, on_gpu: bool) -> None:
    base = variants.get("baseline", {}).get("images_per_s")
    base_core = variants.get("baseline", {}).get("images_per_s_per_core")
    for figures in variants.values():
        ips = figures.get("images_per_s")
        if ips is None:
            continue
        threads = figures.get("threads") or 1
        figures["images_per_s_per_core"] = ips / threads
    base_core = variants.get("baseline", {}).get("images_per_s_per_core")
    for figures in variants.values():
        ips = figures.get("images_per_s")
        if ips is None:
            continue
        if base:
            figures["x_baseline"] = ips / base
        if base_core:
            figures["x_baseline_per_core"] = figures["images_per_s_per_core"] / base_core
        if on_gpu and not figures.get("data_only"):
            figures["tflops"] = ips * flops / 1e12
            figures["fraction_of_peak"] = figures["tflops"] / GPU_PEAK_TFLOPS


def acceptance(variants: dict[str, dict[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    dp, dpb = variants.get("datapath"), variants.get("datapath_baseline")
    if dp and dpb:
        per_core = dp["images_per_s_per_core"] / dpb["images_per_s_per_core"]
        per_cpu_s = dp["images_per_cpu_s"] / dpb["images_per_cpu_s"]
        result["datapath_vs_datapath_baseline_per_core"] = per_core
        result["datapath_vs_datapath_baseline_per_cpu_second"] = per_cpu_s
        result["datapath_2x_per_core"] = per_core >= 2.0
    native, embedder = variants.get("daft_native"), variants.get("embedder")
    if native and embedder:
        ratio = native["images_per_s"] / embedder["images_per_s"]
        result["daft_native_steady_vs_embedder"] = ratio
        result["daft_native_90pct_of_embedder"] = ratio >= 0.9
    return result


def format_table(variants: dict[str, dict[str, Any]], on_gpu: bool) -> str:
    headers = [
        "variant",
        "img/s",
        "x base",
        "threads",
        "img/s/core",
        "x base/core",
        "img/cpu-s",
        "e2e img/s",
        "peak RSS MB",
        "peak PSS MB",
    ]
    if on_gpu:
        headers += ["TFLOP/s", "of 790"]
    rows = [headers]

    def num(value: Any, fmt: str = "{:.1f}") -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "-"
        return fmt.format(value)

    for name, f in variants.items():
        row = [
            name,
            num(f.get("images_per_s")),
            num(f.get("x_baseline"), "{:.2f}"),
            str(f.get("threads", "-")),
            num(f.get("images_per_s_per_core")),
            num(f.get("x_baseline_per_core"), "{:.2f}"),
            num(f.get("images_per_cpu_s")),
            num(f.get("end_to_end_images_per_s")),
            num(f.get("peak_rss_mb"), "{:.0f}"),
            num(f.get("peak_pss_mb"), "{:.0f}"),
        ]
        if on_gpu:
            row += [num(f.get("tflops"), "{:.1f}"), num(f.get("fraction_of_peak"), "{:.1%}")]
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(headers))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m embedding_job.bench", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--images", type=int, default=None, help="image set size (CPU 256, GPU 2048)"
    )
    parser.add_argument("--variants", default=",".join(ALL_VARIANTS), help="comma-separated")
    parser.add_argument(
        "--real-configs",
        action="store_true",
        help="real architectures' dimensions: " + ", ".join(REAL_CONFIGS),
    )
    parser.add_argument(
        "--models",
        default=None,
        help="comma-separated model configs (default dinov2-small4 on CPU; all "
        "real configs with --real-configs)",
    )
    parser.add_argument("--batch-size", type=int, default=BATCH, help="images per model batch")
    parser.add_argument(
        "--call-batch-size",
        type=int,
        default=None,
        help=(
            "rows per call of the embedding UDF (inference.callBatchSize); default: the "
            "pipeline's on a GPU, one model batch on a CPU (decode is inline there, so the call "
            "size does not change throughput, and the steady-state window keeps enough calls)"
        ),
    )
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--dtype", default=None, help="float32 on CPU, float16 on CUDA by default")
    parser.add_argument(
        "--draft-factor",
        type=float,
        default=2.0,
        help="JPEG reduced-size decode factor for our path; 0 disables",
    )
    parser.add_argument(
        "--min-seconds",
        type=float,
        default=None,
        help="repeat each in-process variant for at least this long (CPU 3, GPU 10)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=2,
        help="rounds over all variants; each keeps its best (less noise on a shared machine)",
    )
    parser.add_argument("--out", default=os.environ.get("BENCH_OUT", "bench-results.json"))
    parser.add_argument(
        "--workdir", default=None, help="keep images and models here (default: temp)"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser


def _pipeline_call_batch(batch: int) -> int:
    from embedding_job.api import InferenceSpec
    from embedding_job.run.pipeline import udf_batch_size

    return udf_batch_size(InferenceSpec(batch_size=batch))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.worker:
        spec = WorkerSpec(**json.loads(Path(args.worker).read_text()))
        Path(spec.result).write_text(json.dumps(run_worker(spec)))
        return 0
    telemetry_off()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    device, device_name = _device_name(args.device)
    on_gpu = device == "cuda"
    dtype = args.dtype or ("float16" if on_gpu else "float32")
    count = args.images or (2048 if on_gpu else 256)
    call_batch = args.call_batch_size or (
        _pipeline_call_batch(args.batch_size) if on_gpu else args.batch_size
    )
    min_seconds = args.min_seconds if args.min_seconds is not None else (10.0 if on_gpu else 3.0)
    configs = REAL_CONFIGS if args.real_configs else CPU_CONFIGS
    model_names = (
        args.models.split(",")
        if args.models
        else (list(REAL_CONFIGS) if args.real_configs else ["dinov2-small4"])
    )
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in ALL_VARIANTS] + [
        m for m in model_names if m not in {**REAL_CONFIGS, **CPU_CONFIGS}
    ]
    if unknown:
        print(f"unknown variant or model: {', '.join(unknown)}", file=sys.stderr)
        return 2
    temp = args.workdir is None
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="embedding-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    draft = args.draft_factor or None
    try:
        clock = time.perf_counter()
        images_dir = workdir / "images"
        paths = sorted(images_dir.glob("img_*")) if images_dir.is_dir() else []
        if len(paths) != count:
            shutil.rmtree(images_dir, ignore_errors=True)
            shutil.rmtree(workdir / "images-small", ignore_errors=True)
            paths = make_image_set(images_dir, count, workers=available_cpus())
        total_mb = sum(p.stat().st_size for p in paths) / 1e6
        print(
            f"bench: {count} images ({total_mb:.0f} MB) in {time.perf_counter() - clock:.0f}s; "
            f"device {device} ({device_name}), dtype {dtype}, {available_cpus()} CPU threads",
            flush=True,
        )
        models_root = workdir / "models"
        report: dict[str, Any] = {
            "device": device,
            "device_name": device_name,
            "cpu": _cpu_model(),
            "cpu_threads": available_cpus(),
            "commit": _git_commit(),
            "dtype": dtype,
            "images": count,
            "image_mix": [f"{w}x{h} {fmt}" for w, h, fmt in SIZE_MIX],
            "draft_factor": draft,
            "batch_size": args.batch_size,
            "call_batch_size": call_batch,
            "by_model": {},
        }
        for model_name in model_names:
            model_dir = models_root / "bench" / model_name
            if not (model_dir / "config.json").is_file():
                make_model(
                    models_root, model_name, configs.get(model_name) or CPU_CONFIGS[model_name]
                )
            flops = KNOWN_GFLOPS.get(model_name, 0.0) * 1e9 or flops_per_image(model_dir)
            results: dict[str, dict[str, Any]] = {}
            small_runs: dict[str, dict[str, Any]] = {}
            # Rounds, each over every variant: load from whatever else shares the machine then
            # hits all variants alike, and each variant keeps its best round.
            for round_index in range(args.repeats):
                for variant in variants:
                    started = time.perf_counter()
                    if variant in PIPELINE:
                        setup = JobSetup(
                            models_root,
                            f"bench/{model_name}",
                            device,
                            dtype,
                            args.batch_size,
                            call_batch,
                        )
                        figures = run_pipeline(variant, workdir, paths, setup, small_runs)
                    else:
                        figures = run_in_process_variant(
                            WorkerSpec(
                                variant=variant,
                                model_dir=str(model_dir),
                                images=[str(p) for p in paths],
                                device=device,
                                dtype=dtype,
                                min_seconds=min_seconds,
                                draft_factor=draft,
                                result=str(workdir / f"result-{variant}.json"),
                                batch_size=args.batch_size,
                                call_batch_size=call_batch,
                            )
                        )
                    figures["data_only"] = variant.startswith("datapath")
                    previous = results.get(variant)
                    rounds = [
                        *(previous or {}).get("rounds_images_per_s", []),
                        figures["images_per_s"],
                    ]
                    if previous is None or _better(figures, previous):
                        results[variant] = figures
                    results[variant]["rounds_images_per_s"] = rounds
                    took = time.perf_counter() - started
                    print(
                        f"  {model_name} {variant} (round {round_index + 1}/{args.repeats}): "
                        f"{figures['images_per_s']:.1f} img/s ({took:.0f}s)",
                        flush=True,
                    )
            add_ratios(results, flops, on_gpu)
            report["by_model"][model_name] = {
                "gflops_per_image": flops / 1e9,
                "variants": results,
                "acceptance": acceptance(results),
            }
            print(
                f"\n{model_name} ({flops / 1e9:.1f} GFLOP/image), {count} images, "
                f"{device_name}:\n{format_table(results, on_gpu)}"
            )
            for key, value in acceptance(results).items():
                print(f"  {key}: {value:.2f}" if isinstance(value, float) else f"  {key}: {value}")
        first = report["by_model"][model_names[0]]
        report["model"] = model_names[0]
        report["variants"] = first["variants"]
        report["acceptance"] = first["acceptance"]
        report["total_seconds"] = time.perf_counter() - clock
        Path(args.out).write_text(json.dumps(report, indent=2, sort_keys=True, default=str))
        print(f"\nwrote {args.out} in {report['total_seconds']:.0f}s total")
    finally:
        if temp:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
