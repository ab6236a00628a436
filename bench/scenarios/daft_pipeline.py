"""``daft_native`` / ``daft_ray``: ``embedding-job run --runner native|ray`` in a subprocess on
the image folder.

``images_per_s`` is the steady state: images per second between the end of the embedder's
second call and the end of its last one in the run on all N images (each call's start and end
come from the trace that ``bench.embedder_trace`` adds to the run's processes). It leaves out
start-up, model load, the first batch's warm-up and Daft's pipeline fill, and keeps everything
Daft does per batch. Also reported: the same from the first call, and (N - n) / (T(N) - T(n))
from that run and one on the first batch only (n images); ``end_to_end_images_per_s`` is
N / T(N). Peak memory is summed over the CLI's whole process tree.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.embedder_trace import busy_fraction, hook_env, read_trace, trace_rate
from bench.scenario import Context
from bench.tree_memory import TreeMemory
from embedding_job.api import TELEMETRY_OFF
from embedding_job.imaging.datapath import available_cpus


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
        """The job's spec (JSON) for the images in ``images``, written to ``out``."""
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
    """One ``embedding-job run``; wall time, memory and the embedder's per-call trace."""
    trace = out.with_name(out.name + ".trace")
    trace.unlink(missing_ok=True)
    env = {
        **os.environ,
        "DAFT_PROGRESS_BAR": "0",
        "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
        **TELEMETRY_OFF,
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
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=hook_env(trace, env),
        text=True,
    )
    with TreeMemory(proc.pid) as memory:
        stdout, stderr = proc.communicate()
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"embedding-job run --runner {runner} failed:\n{stderr[-3000:]}")
    summary = json.loads(stdout.strip().splitlines()[-1])
    calls = read_trace(trace, since=started)  # seconds since the CLI started
    if summary["rowsIn"] and not calls:
        raise RuntimeError(
            f"embedding-job run --runner {runner} embedded {summary['rowsIn']} rows but left no "
            f"embedder trace in {trace}: the trace hook did not reach the embedder's process"
        )
    return {
        "seconds": seconds,
        "rows": summary["rowsIn"],
        "failed": summary["rowsFailed"],
        "calls": calls,
        "peak_rss_mb": memory.peak_rss_kb / 1024,
        "peak_pss_mb": memory.peak_pss_kb / 1024,
    }


def run_pipeline(
    runner: str,
    workdir: Path,
    paths: list[Path],
    setup: JobSetup,
    small_runs: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The CLI on one batch of images (once per runner), then on all of them."""
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
    calls = full["calls"]
    return {
        "images_per_s": trace_rate(calls),
        "steady_state_method": "embedder batch ends in the full run: 2nd to last",
        "steady_from_first_batch_images_per_s": trace_rate(calls, skip=1),
        "steady_by_difference_images_per_s": by_difference,
        "end_to_end_images_per_s": full["rows"] / full["seconds"],
        "end_to_end_s": full["seconds"],
        "first_batch_done_s": calls[0][1] if calls else math.nan,
        "after_last_batch_s": full["seconds"] - calls[-1][1] if calls else None,
        "embedder_busy_fraction": busy_fraction(calls),
        "one_batch_run_s": small["seconds"],
        "images": full["rows"],
        "failed": full["failed"],
        "threads": available_cpus(),
        "peak_rss_mb": full["peak_rss_mb"],
        "peak_pss_mb": full["peak_pss_mb"],
    }


@dataclass(frozen=True)
class PipelineScenario:
    """``embedding-job run`` on one of Daft's runners."""

    name: str
    runner: str
    data_only: bool = False

    def run(self, context: Context) -> dict[str, Any]:
        setup = JobSetup(
            context.models_root,
            f"bench/{context.model_name}",
            context.device,
            context.dtype,
            context.batch_size,
            context.call_batch_size,
        )
        return run_pipeline(self.runner, context.workdir, context.paths, setup, context.small_runs)


NATIVE = PipelineScenario("daft_native", "native")
RAY = PipelineScenario("daft_ray", "ray")
