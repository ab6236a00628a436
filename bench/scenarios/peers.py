"""``peer_daft_docs``, ``peer_ray_data``, ``peer_torch_loop``: what users write instead of this
job, each a plain script in ``bench/peers/`` run in a subprocess on the same image folder and
model, traced like the job (``bench.call_trace``).

``images_per_s`` is the steady state counted from the model's batch ends (second to last), as
the job's ``model_steady_images_per_s``; ``end_to_end_images_per_s`` is N / T(N) from the
script's start to its exit. ``report.peer_ratios`` divides the job's figures by these.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.scenario import Context
from bench.traced_run import bench_env, run_traced, startup_figures, steady_figures
from embedding_job.imaging.datapath import available_cpus

PEERS_DIR = Path(__file__).resolve().parent.parent / "peers"


def output_rows(out: Path) -> int:
    """Rows of the Parquet files a script wrote under ``out``."""
    import pyarrow.parquet as pq

    return sum(pq.read_metadata(path).num_rows for path in out.rglob("*.parquet"))


@dataclass(frozen=True)
class PeerScenario:
    """One of the scripts in ``bench/peers/`` (``script``, without ``.py``)."""

    name: str
    script: str
    suite: str = "model"
    data_only: bool = False

    def command(self, context: Context, out: Path) -> list[str]:
        """The script's command line on the context's images and model."""
        return [
            sys.executable,
            str(PEERS_DIR / f"{self.script}.py"),
            str(context.paths[0].parent),
            str(context.model_dir),
            str(out),
            "--batch-size",
            str(context.batch_size),
            "--device",
            context.device,
        ]

    def run(self, context: Context) -> dict[str, Any]:
        out = context.workdir / f"out-{self.name}"
        shutil.rmtree(out, ignore_errors=True)  # the scripts add to what is there
        run = run_traced(self.command(context, out), out, bench_env(), f"peer {self.script}")
        rows = output_rows(out)
        if rows != len(context.paths):
            raise RuntimeError(f"peer {self.script} wrote {rows} rows for {len(context.paths)}")
        figures = steady_figures(run, rows)
        figures["images_per_s"] = figures["model_steady_images_per_s"]
        figures["threads"] = available_cpus()
        figures["startup"] = startup_figures(run)
        return figures


def peers(prefix: str = "", suite: str = "model") -> tuple[PeerScenario, ...]:
    """The three peers, named ``<prefix>peer_<script>``, in ``suite``."""
    return tuple(
        PeerScenario(f"{prefix}peer_{script}", script, suite)
        for script in ("daft_docs", "ray_data", "torch_loop")
    )
