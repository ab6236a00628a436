"""``startup``: the demo-sized job (``make demo``'s 24 sample images and random-init DINOv2
384x4, batches of 8, float32) through ``embedding-job run`` on the native runner, and where its
start-up goes (``traced_run.startup_figures``): the CLI's start, the embedding worker's process
start, its model load, the first model call, the first embedded batch, the first output file,
the end. ``model_loads`` counts the model loads (one per worker is the goal). The goal
(``report.startup_goals``): the first embedded row within 10 s of the CLI's start.

``images_per_s`` is images over the whole run (the rounds keep the fastest).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.scenario import Context
from bench.scenarios.daft_pipeline import JobSetup, images_glob, run_cli_once
from bench.traced_run import startup_figures

#: The demo's model, under the bench's models root.
MODEL = "demo-small"
#: The demo's image count and model batch size (``embedding-job demo``).
IMAGES = 24
BATCH = 8


def make_demo_inputs(workdir: Path, models_root: Path) -> list[Path]:
    """The demo's sample images and model (made once); the images' paths."""
    from embedding_job.demo import SMALL, make_random_model, make_sample_images

    images = workdir / "startup-images"
    paths = sorted(images.iterdir()) if images.is_dir() else []
    if len(paths) != IMAGES:
        paths = make_sample_images(images, count=IMAGES)
    model_dir = models_root / "bench" / MODEL
    if not (model_dir / "config.json").is_file():
        make_random_model(model_dir, "dinov2", SMALL)
    return paths


@dataclass(frozen=True)
class StartupScenario:
    """The demo-sized job, timed from the CLI's start."""

    name: str = "startup"
    data_only: bool = False
    suite: str = "startup"

    def run(self, context: Context) -> dict[str, Any]:
        setup = JobSetup.of(context, call_batch=None)  # the demo keeps the job's default
        source = images_glob(context.paths[0].parent)
        run, summary = run_cli_once("native", source, context.workdir / "out-startup", setup)
        workers = {r.pid for r in run.records if r.label == "embed"}
        return {
            "images": summary["rowsIn"],
            "images_per_s": summary["rowsIn"] / run.seconds,
            "end_to_end_s": run.seconds,
            "startup": startup_figures(run),
            "workers": len(workers),
            "model_loads": sum(r.label == "load" for r in run.records),
            "threads": 1,
            "peak_rss_mb": run.peak_rss_mb,
            "peak_pss_mb": run.peak_pss_mb,
        }


SCENARIO = StartupScenario()
