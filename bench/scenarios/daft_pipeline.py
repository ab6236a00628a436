"""``daft_native`` / ``daft_ray``: ``embedding-job run --runner native|ray`` in a subprocess on
the image folder.

``images_per_s`` is the steady state: images per second between the end of the embedder's
second call and the end of its last one in the run on all N images (each call's start and end
come from the trace that ``bench.call_trace`` adds to the run's processes). It leaves out
start-up, model load, the first batch's warm-up and Daft's pipeline fill, and keeps everything
Daft does per batch. Also reported: the same from the first call, (N - n) / (T(N) - T(n)) from
that run and one on the first batch only (n images), the same steady state counted from the
model's batch ends (``model_steady_images_per_s``, what the peers are compared on),
``end_to_end_images_per_s`` (N / T(N)) and where the start-up went (``startup``). Peak memory is
summed over the CLI's whole process tree.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.call_trace import busy_fraction, calls, trace_rate
from bench.scenario import Context
from bench.traced_run import (
    TracedRun,
    bench_env,
    run_traced,
    startup_figures,
    steady_cores,
    steady_figures,
)
from embedding_job.imaging.datapath import available_cpus


@dataclass(frozen=True)
class JobSetup:
    """What every ``embedding-job run`` of a pipeline variant shares."""

    models_root: Path
    name: str
    device: str
    dtype: str
    batch: int
    #: inference.callBatchSize (None: the job's default).
    call_batch: int | None
    #: inference.decodeThreads (None: the job's default).
    decode_threads: int | None = None
    #: Environment the run needs besides the bench's (an object store's endpoint and keys).
    env: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, context: Context, **changes: Any) -> JobSetup:
        """The runs of ``context``: its model, device, dtype, batches and decode threads."""
        setup = cls(
            context.models_root,
            f"bench/{context.model_name}",
            context.device,
            context.dtype,
            context.batch_size,
            context.call_batch_size,
            decode_threads=context.decode_threads,
        )
        return replace(setup, **changes)

    def config(self, source: Mapping[str, Any], out: Path) -> str:
        """The job's spec (JSON) reading ``source`` (the spec's ``input``), writing ``out``."""
        inference: dict[str, Any] = {"batchSize": self.batch, "device": self.device}
        if self.call_batch is not None:
            inference["callBatchSize"] = self.call_batch
        if self.decode_threads is not None:
            inference["decodeThreads"] = self.decode_threads
        return json.dumps(
            {
                "input": dict(source),
                "model": {"name": self.name, "path": str(self.models_root), "dtype": self.dtype},
                "inference": inference,
                "output": {"uri": str(out), "mode": "overwrite"},
                "errors": {"maxFailedFraction": 0.0},
            }
        )


def images_glob(images: Path) -> dict[str, str]:
    """The job's ``input`` for every image in the folder ``images``."""
    return {"uri": str(images), "format": "images-glob"}


def run_cli_once(
    runner: str, source: Mapping[str, Any], out: Path, setup: JobSetup
) -> tuple[TracedRun, dict[str, Any]]:
    """One traced ``embedding-job run``; the run and the summary line it printed."""
    command = [
        sys.executable,
        "-m",
        "embedding_job.cli",
        "--log-format",
        "json",
        "run",
        "--config-json",
        setup.config(source, out),
        "--runner",
        runner,
    ]
    run = run_traced(command, out, bench_env(setup.env), f"embedding-job run --runner {runner}")
    summary: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    if summary["rowsIn"] and not calls(run.records):
        raise RuntimeError(
            f"embedding-job run --runner {runner} embedded {summary['rowsIn']} rows but left no "
            f"embedder trace: the trace hook did not reach the embedder's process"
        )
    return run, summary


def pipeline_figures(
    run: TracedRun, summary: Mapping[str, Any], small: TracedRun | None = None
) -> dict[str, Any]:
    """A job run's figures (``small``: the same job on its first batch, for the difference
    method)."""
    embed = calls(run.records)
    rows = int(summary["rowsIn"])
    figures: dict[str, Any] = {
        **steady_figures(run, rows),
        "images_per_s": trace_rate(embed),
        "steady_state_method": "embedder batch ends in the full run: 2nd to last",
        "steady_from_first_batch_images_per_s": trace_rate(embed, skip=1),
        "first_batch_done_s": embed[0][1] if embed else math.nan,
        "after_last_batch_s": run.seconds - embed[-1][1] if embed else None,
        "embedder_busy_fraction": busy_fraction(embed),
        "steady_cores": steady_cores(run),
        "failed": summary["rowsFailed"],
        "threads": available_cpus(),
        "startup": startup_figures(run),
    }
    if small is not None:
        extra_seconds = run.seconds - small.seconds
        small_rows = sum(rows for _, _, rows in calls(small.records))
        figures["one_batch_run_s"] = small.seconds
        figures["steady_by_difference_images_per_s"] = (
            (rows - small_rows) / extra_seconds if extra_seconds > 0 else None
        )
    return figures


def run_pipeline(
    runner: str,
    workdir: Path,
    paths: list[Path],
    setup: JobSetup,
    small_runs: dict[str, TracedRun] | None = None,
) -> dict[str, Any]:
    """The CLI on one batch of images (once per runner), then on all of them."""
    small_dir = workdir / "images-small"
    if not small_dir.is_dir():
        small_dir.mkdir()
        for path in paths[: setup.batch]:
            os.link(path, small_dir / path.name)
    small_runs = {} if small_runs is None else small_runs
    if runner not in small_runs:
        out = workdir / f"out-{runner}-small"
        small_runs[runner] = run_cli_once(runner, images_glob(small_dir), out, setup)[0]
    out = workdir / f"out-{runner}"
    run, summary = run_cli_once(runner, images_glob(paths[0].parent), out, setup)
    return pipeline_figures(run, summary, small_runs[runner])


@dataclass(frozen=True)
class PipelineScenario:
    """``embedding-job run`` on one of Daft's runners."""

    name: str
    runner: str
    data_only: bool = False
    suite: str = "model"

    def run(self, context: Context) -> dict[str, Any]:
        setup = JobSetup.of(context)
        return run_pipeline(self.runner, context.workdir, context.paths, setup, context.small_runs)


NATIVE = PipelineScenario("daft_native", "native")
RAY = PipelineScenario("daft_ray", "ray")
