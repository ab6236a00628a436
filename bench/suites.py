"""The three suites of a bench run (``scenario.SUITES``), each a set of variants run in rounds on
its own images and model, and reported with its derived figures:

* ``model`` - per model: the original component, the data paths, the embedder, the job on both
  runners and the peers; ratios to the baseline, the acceptance criteria, the job's ratios to
  each peer.
* ``ceiling`` - the pipeline ceiling: a near-zero-cost model in every input mode against the raw
  decode rate, and the peers on the same images; its goals and the job's ratios to the peers.
* ``startup`` - the demo-sized job's start-up; its goal.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bench.image_set import make_image_set
from bench.inputs import Inputs
from bench.model_configs import CPU_CONFIGS, KNOWN_GFLOPS, REAL_CONFIGS, flops_per_image, make_model
from bench.report import (
    acceptance,
    add_ratios,
    better,
    ceiling_goals,
    format_ceiling,
    format_peer_ratios,
    format_table,
    peer_ratios,
    startup_goals,
)
from bench.scenario import Context
from bench.scenarios import SCENARIOS, ceiling, startup
from embedding_job.imaging.datapath import available_cpus


@dataclass(frozen=True)
class Settings:
    """What the command line decided for every suite."""

    workdir: Path
    device: str
    dtype: str
    min_seconds: float
    draft_factor: float | None
    batch_size: int
    call_batch_size: int
    repeats: int

    @property
    def on_gpu(self) -> bool:
        return self.device == "cuda"

    def context(self, workdir: Path, paths: list[Path], model_name: str) -> Context:
        """A suite's context, its models under the bench's models root."""
        return Context(
            workdir=workdir,
            paths=paths,
            models_root=self.workdir / "models",
            model_name=model_name,
            device=self.device,
            dtype=self.dtype,
            min_seconds=self.min_seconds,
            draft_factor=self.draft_factor,
            batch_size=self.batch_size,
            call_batch_size=self.call_batch_size,
        )


def image_set(workdir: Path, count: int) -> list[Path]:
    """The workdir's image set, made again unless it has ``count`` images already."""
    images_dir = workdir / "images"
    paths = sorted(images_dir.glob("img_*")) if images_dir.is_dir() else []
    if len(paths) != count:
        shutil.rmtree(images_dir, ignore_errors=True)
        shutil.rmtree(workdir / "images-small", ignore_errors=True)
        paths = make_image_set(images_dir, count, workers=available_cpus())
    return paths


def ensure_model(context: Context) -> Path:
    """The context's model, built (random weights) unless it is there."""
    if not (context.model_dir / "config.json").is_file():
        arch = REAL_CONFIGS.get(context.model_name) or CPU_CONFIGS[context.model_name]
        make_model(context.models_root, context.model_name, arch)
    return context.model_dir


def run_rounds(context: Context, variants: list[str], repeats: int) -> dict[str, dict[str, Any]]:
    """Rounds, each over every variant: load from whatever else shares the machine then hits
    all variants alike, and each variant keeps its best round (all rounds' rates are kept)."""
    results: dict[str, dict[str, Any]] = {}
    for round_index in range(repeats):
        for variant in variants:
            started = time.perf_counter()
            scenario = SCENARIOS[variant]
            figures = scenario.run(context)
            figures["data_only"] = scenario.data_only
            previous = results.get(variant)
            rounds = [*(previous or {}).get("rounds_images_per_s", []), figures["images_per_s"]]
            if previous is None or better(figures, previous):
                results[variant] = figures
            results[variant]["rounds_images_per_s"] = rounds
            took = time.perf_counter() - started
            print(
                f"  {context.model_name} {variant} (round {round_index + 1}/{repeats}): "
                f"{figures['images_per_s']:.1f} img/s ({took:.0f}s)",
                flush=True,
            )
    return results


def run_model_suite(
    settings: Settings, variants: list[str], model_name: str, paths: list[Path]
) -> dict[str, Any]:
    """One model's variants, with their ratios, acceptance criteria and ratios to the peers."""
    context = settings.context(settings.workdir, paths, model_name)
    ensure_model(context)
    flops = KNOWN_GFLOPS.get(model_name, 0.0) * 1e9 or flops_per_image(context.model_dir)
    results = run_rounds(context, variants, settings.repeats)
    add_ratios(results, flops, settings.on_gpu)
    criteria = acceptance(results)
    ratios = peer_ratios(results, "daft_native")
    print(
        f"\n{model_name} ({flops / 1e9:.1f} GFLOP/image), {len(paths)} images:\n"
        f"{format_table(results, settings.on_gpu)}"
    )
    for key, value in criteria.items():
        print(f"  {key}: {value:.2f}" if isinstance(value, float) else f"  {key}: {value}")
    if ratios:
        print(format_peer_ratios(ratios, "daft_native"))
    return {
        "gflops_per_image": flops / 1e9,
        "variants": results,
        "acceptance": criteria,
        "peer_ratios": ratios,
    }


def run_ceiling_suite(settings: Settings, variants: list[str], count: int) -> dict[str, Any]:
    """The pipeline ceiling: its variants on ``count`` images, its goals, the peer ratios."""
    workdir = settings.workdir / "ceiling"
    paths = image_set(workdir, count)
    with contextlib.ExitStack() as services:
        context = replace(
            settings.context(workdir, paths, ceiling.MODEL),
            call_batch_size=2 * settings.batch_size,
            decode_threads=available_cpus(),
            inputs=Inputs(paths, workdir, services),
        )
        ensure_model(context)
        results = run_rounds(context, variants, settings.repeats)
    add_ratios(results, flops_per_image(context.model_dir), settings.on_gpu)
    goals = ceiling_goals(results)
    ratios = peer_ratios(results, "ceiling_local")
    print(
        f"\npipeline ceiling ({ceiling.MODEL}, {count} images, decodeThreads "
        f"{context.decode_threads}, callBatchSize {context.call_batch_size}):\n"
        f"{format_table(results, settings.on_gpu)}"
    )
    if goals["modes"]:
        print(format_ceiling(goals, results))
    if ratios:
        print(format_peer_ratios(ratios, "ceiling_local"))
    return {
        "model": ceiling.MODEL,
        "images": count,
        "decode_threads": context.decode_threads,
        "call_batch_size": context.call_batch_size,
        "variants": results,
        "goals": goals,
        "peer_ratios": ratios,
    }


def run_startup_suite(settings: Settings) -> dict[str, Any]:
    """The demo-sized job's start-up, best of the rounds, and its goal."""
    workdir = settings.workdir / "startup"
    models_root = settings.workdir / "models"
    paths = startup.make_demo_inputs(workdir, models_root)
    context = replace(
        settings.context(workdir, paths, startup.MODEL),
        dtype="float32",
        batch_size=startup.BATCH,
    )
    figures = run_rounds(context, [startup.SCENARIO.name], settings.repeats)[startup.SCENARIO.name]
    goals = startup_goals(figures)
    steps = ", ".join(
        f"{key.removesuffix('_s')} {value:.1f}s"
        for key, value in figures["startup"].items()
        if isinstance(value, float)
    )
    print(
        f"\nstart-up of the demo-sized job ({len(paths)} images): {steps}; model loads "
        f"{figures['model_loads']} for {figures['workers']} worker(s); first embedded row "
        f"{goals['first_embedded_row_s']:.1f}s (goal <= {goals['goal_s']:.0f}s: "
        f"{'holds' if goals['holds'] else 'MISSES'})"
    )
    return {"figures": figures, "goals": goals}
