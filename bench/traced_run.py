"""One traced subprocess (``embedding-job run`` or a peer's script) and the figures read from
it: wall time, the per-call trace (``bench.call_trace``), the peak memory of its process tree and
when its first output file appeared.

``run_traced`` acts; ``steady_figures`` and ``startup_figures`` are pure functions of what it
returns, shared by the job's scenarios and the peers' so that both are counted the same way.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.call_trace import (
    PROCESS,
    Record,
    busy_fraction,
    calls,
    hook_env,
    read_records,
    steady_window,
    trace_rate,
)
from bench.sampling import Sampler
from bench.tree_memory import TreeMemory, cpu_at, cpu_by
from embedding_job.api import TELEMETRY_OFF

#: How often the output directory is looked at for its first data file.
_POLL_S = 0.02


@dataclass(frozen=True)
class TracedRun:
    """What one traced subprocess did; times in seconds after it was started."""

    seconds: float
    records: list[Record]
    stdout: str
    peak_rss_mb: float
    peak_pss_mb: float
    first_file_s: float | None
    #: The command's own process id, and the CPU seconds each process of its tree had used, by
    #: time: {pid: [(seconds after the start, CPU seconds), ...]}.
    pid: int = 0
    cpu: dict[int, list[tuple[float, float]]] = field(default_factory=dict)
    #: The same for the bench's own process, outside the tree: the web and S3 servers of the
    #: remote input modes run in its threads, on the same CPUs as the command.
    observer_cpu: list[tuple[float, float]] = field(default_factory=list)


class _FirstFile(Sampler):
    """When ``directory`` first holds a ``*.parquet`` file (the first rows written, as far as
    can be seen from outside), in seconds after ``started``."""

    def __init__(self, directory: Path, started: float):
        super().__init__(_POLL_S)
        self.directory = directory
        self.started = started
        self.seen: float | None = None

    def sample(self) -> bool:
        if self.directory.is_dir() and next(self.directory.rglob("*.parquet"), None):
            self.seen = time.perf_counter() - self.started
            return False
        return True


def bench_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a traced run: this one, telemetry off, no progress bars."""
    return {
        **os.environ,
        "DAFT_PROGRESS_BAR": "0",
        "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
        "TRANSFORMERS_VERBOSITY": "error",
        **TELEMETRY_OFF,
        **(extra or {}),
    }


def run_traced(command: Sequence[str], out: Path, env: Mapping[str, str], what: str) -> TracedRun:
    """Run ``command`` (which writes its output to ``out``) traced; raise if it fails."""
    trace = out.with_name(out.name + ".trace")
    trace.unlink(missing_ok=True)
    shutil.rmtree(out, ignore_errors=True)  # its first file must be this run's
    started_unix = time.time()
    started = time.perf_counter()
    proc = subprocess.Popen(
        list(command),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=hook_env(trace, env),
        text=True,
    )
    with (
        TreeMemory(proc.pid, observer=os.getpid()) as memory,
        _FirstFile(out, started) as first_file,
    ):
        stdout, stderr = proc.communicate()
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {proc.returncode}):\n{stderr[-3000:]}")
    return TracedRun(
        seconds=seconds,
        records=read_records(trace, since=started_unix),
        stdout=stdout,
        peak_rss_mb=memory.peak_rss_kb / 1024,
        peak_pss_mb=memory.peak_pss_kb / 1024,
        first_file_s=first_file.seen,
        pid=proc.pid,
        cpu={
            pid: [(when - started_unix, used) for when, used in samples]
            for pid, samples in memory.cpu.items()
        },
        observer_cpu=[(when - started_unix, used) for when, used in memory.observer_cpu],
    )


def steady_figures(run: TracedRun, rows: int) -> dict[str, Any]:
    """Steady state from the model's batch ends (comparable between the job and the peers),
    end-to-end rate and memory."""
    model = calls(run.records, "model")
    return {
        "model_steady_images_per_s": trace_rate(model),
        "model_busy_fraction": busy_fraction(model),
        "end_to_end_images_per_s": rows / run.seconds,
        "end_to_end_s": run.seconds,
        "images": rows,
        "peak_rss_mb": run.peak_rss_mb,
        "peak_pss_mb": run.peak_pss_mb,
    }


def steady_cores(run: TracedRun) -> dict[str, float]:
    """Where the CPUs went in the steady window: the cores (CPU seconds per second) used by the
    command's own process (the driver: Daft's runner, the output), by the embedder's
    processes (decode and model), and by the rest of its tree (Ray's, Daft's other workers).
    Where the embedder runs in the command's own process (the native runner's one worker), that
    process counts as the embedder's and the driver's share is 0. ``bench``, not in
    ``total``: the bench's own process (the remote modes' web and S3 servers, the samplers)."""
    window = steady_window(calls(run.records))
    if window is None:
        return {}
    begin, end = window
    embedders = {r.pid for r in run.records if r.label == "embed"}

    def used(pid: int) -> float:
        samples = run.cpu.get(pid, [])
        return cpu_at(samples, end) - cpu_at(samples, begin) if samples else 0.0

    by_role = {"driver": 0.0, "embedder": 0.0, "other": 0.0}
    for pid in run.cpu:
        role = "embedder" if pid in embedders else "driver" if pid == run.pid else "other"
        by_role[role] += used(pid)
    cores = {role: seconds / (end - begin) for role, seconds in by_role.items()}
    cores["total"] = sum(cores.values())
    observer = run.observer_cpu
    serving = cpu_at(observer, end) - cpu_at(observer, begin) if observer else 0.0
    cores["bench"] = serving / (end - begin)
    return cores


def _first(values: list[float]) -> float:
    return min(values) if values else math.nan


def startup_figures(run: TracedRun) -> dict[str, float | None]:
    """Where a run's start-up went, in seconds after it was started: the embedding worker's
    process start (the process of the first embedder call, else of the first model call), its
    model load, the first model call, the first embedded batch (the first embedder call's end,
    else the first model call's), the first output file and the run's end."""
    embed = [r for r in run.records if r.label == "embed"]
    model = [r for r in run.records if r.label == "model"]
    first = min(embed or model, key=lambda r: r.end) if embed or model else None
    worker = first.pid if first else None
    starts = [r.start for r in run.records if r.label == PROCESS and r.pid == worker]
    loads = [r for r in run.records if r.label == "load" and r.pid == worker]
    figures = {
        "worker_started_s": _first(starts),
        "model_load_started_s": _first([r.start for r in loads]),
        "model_loaded_s": _first([r.end for r in loads]),
        "first_model_call_s": _first([r.start for r in model]),
        "first_batch_done_s": first.end if first else math.nan,
        "first_file_s": run.first_file_s,
        "end_s": run.seconds,
        # The native runner's one worker is the command's own process (pipeline.Workers).
        "embedder_in_command": worker == run.pid if worker is not None else None,
    }
    # On a shared machine the wall times stretch with the load; the CPU time of the work on the
    # way to the first batch does much less: the command's own process until the worker
    # started, then the worker's until its first batch was done (sampled every 0.25 s).
    driver, worker_cpu = math.nan, math.nan
    if first is not None and starts:
        driver = cpu_by(run.cpu.get(run.pid, []), min(starts))
        worker_cpu = cpu_by(run.cpu.get(first.pid, []), first.end)
    figures["driver_cpu_until_worker_s"] = driver
    figures["worker_cpu_until_first_batch_s"] = worker_cpu
    figures["first_batch_cpu_path_s"] = driver + worker_cpu
    return figures
