"""``python -m bench``: the flags, and the driver that runs every scenario in rounds and writes
the report (printed tables, JSON to ``--out``)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import bench
from bench.image_set import SIZE_MIX
from bench.in_process import BATCH, worker_main
from bench.machine import cpu_model, device_name, git_commit
from bench.model_configs import CPU_CONFIGS, REAL_CONFIGS
from bench.scenarios import SCENARIOS
from bench.suites import (
    Settings,
    image_set,
    run_ceiling_suite,
    run_model_suite,
    run_startup_suite,
)
from embedding_job.cli import telemetry_off
from embedding_job.imaging.datapath import available_cpus


def build_parser() -> argparse.ArgumentParser:
    """The bench's command line."""
    description = (bench.__doc__ or "").splitlines()[0]
    parser = argparse.ArgumentParser(prog="python -m bench", description=description)
    parser.add_argument(
        "--images", type=int, default=None, help="image set size (CPU 256, GPU 2048)"
    )
    parser.add_argument(
        "--ceiling-images",
        type=int,
        default=None,
        help="image set size of the pipeline ceiling (CPU 512, GPU 2048)",
    )
    parser.add_argument("--variants", default=",".join(SCENARIOS), help="comma-separated")
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

    return udf_batch_size(InferenceSpec(batch_size=batch), on_gpu=True)


def main(argv: list[str] | None = None) -> int:
    """Run the bench; 2 for an unknown variant or model."""
    args = build_parser().parse_args(argv)
    if args.worker:
        return worker_main(args.worker)
    telemetry_off()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    model_names = (
        args.models.split(",")
        if args.models
        else (list(REAL_CONFIGS) if args.real_configs else ["dinov2-small4"])
    )
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in SCENARIOS] + [
        m for m in model_names if m not in {**REAL_CONFIGS, **CPU_CONFIGS}
    ]
    if unknown:
        print(f"unknown variant or model: {', '.join(unknown)}", file=sys.stderr)
        return 2
    by_suite = {
        suite: [v for v in SCENARIOS if v in variants and SCENARIOS[v].suite == suite]
        for suite in ("model", "ceiling", "startup")
    }
    device, name_of_device = device_name(args.device)
    on_gpu = device == "cuda"
    count = args.images or (2048 if on_gpu else 256)
    temp = args.workdir is None
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="embedding-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    settings = Settings(
        workdir=workdir,
        device=device,
        dtype=args.dtype or ("float16" if on_gpu else "float32"),
        min_seconds=args.min_seconds if args.min_seconds is not None else (10.0 if on_gpu else 3.0),
        draft_factor=args.draft_factor or None,
        batch_size=args.batch_size,
        call_batch_size=args.call_batch_size
        or (_pipeline_call_batch(args.batch_size) if on_gpu else args.batch_size),
        repeats=args.repeats,
    )
    report: dict[str, Any] = {
        "device": device,
        "device_name": name_of_device,
        "cpu": cpu_model(),
        "cpu_threads": available_cpus(),
        "commit": git_commit(),
        "dtype": settings.dtype,
        "images": count,
        "image_mix": [f"{w}x{h} {fmt}" for w, h, fmt in SIZE_MIX],
        "draft_factor": settings.draft_factor,
        "batch_size": settings.batch_size,
        "call_batch_size": settings.call_batch_size,
        "by_model": {},
    }
    clock = time.perf_counter()
    print(
        f"bench: device {device} ({name_of_device}), dtype {settings.dtype}, "
        f"{available_cpus()} CPU threads",
        flush=True,
    )
    try:
        if by_suite["model"]:
            paths = image_set(workdir, count)
            total_mb = sum(p.stat().st_size for p in paths) / 1e6
            print(f"bench: {count} images ({total_mb:.0f} MB)", flush=True)
            for model_name in model_names:
                report["by_model"][model_name] = run_model_suite(
                    settings, by_suite["model"], model_name, paths
                )
            first = report["by_model"][model_names[0]]
            report["model"] = model_names[0]
            report["variants"] = first["variants"]
            report["acceptance"] = first["acceptance"]
            report["peer_ratios"] = first["peer_ratios"]
        if by_suite["ceiling"]:
            ceiling_count = args.ceiling_images or (2048 if on_gpu else 512)
            report["pipeline_ceiling"] = run_ceiling_suite(
                settings, by_suite["ceiling"], ceiling_count
            )
        if by_suite["startup"]:
            report["startup"] = run_startup_suite(settings)
        report["total_seconds"] = time.perf_counter() - clock
        Path(args.out).write_text(json.dumps(report, indent=2, sort_keys=True, default=str))
        print(f"\nwrote {args.out} in {report['total_seconds']:.0f}s total")
    finally:
        if temp:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0
