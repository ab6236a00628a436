"""One prepared GPU run that fits a single device call and writes everything to one JSON.

``python -m bench.gpu_run --out gpu-run.json`` (``make bench-gpu``; BENCHMARKS.md says how to
run it on a lent GPU machine) measures the job's ``Embedder`` on the bench's image set for
dinov2-large and dinov2-base (the real architectures from the real checkpoints' config values,
random weights), in bfloat16 and float16, eager and ``torch.compile``d, decoding on the CPU's
threads and with ``gpuDecode`` (nvJPEG): images/s, TFLOP/s (FLOPs per image from
``model_configs.KNOWN_GFLOPS``), the fraction of the 790 TFLOP/s reference ceiling and of the
card's own bf16 matrix-multiply rate (measured first), and how busy the GPU was.

It cannot overrun: the whole run has a budget (``--budget-s``); each variant runs in its own
process (``bench.gpu_variant``), killed with its process group at ``min(its cap, time left)``,
and a variant that would get less than ``--min-variant-s`` is recorded as skipped. Variants run
in priority order (eager before compiled, dinov2-large before dinov2-base, bfloat16 before
float16, CPU decoding before gpuDecode), and the JSON is rewritten after each one, so a run cut
short still holds everything measured until then.

On a CPU (``--device cpu --tiny``) the same plumbing runs with a tiny model in seconds; the unit
tests do that.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.gpu_variant import VariantSpec
from bench.model_configs import (
    GPU_PEAK_TFLOPS,
    KNOWN_GFLOPS,
    REAL_CONFIGS,
    flops_per_image,
    make_real_model,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
#: The tiny stand-in for the plumbing test: a real DINOv2 config, scaled down.
TINY = ("dinov2", 32, 1, 2, 128)


@dataclass(frozen=True)
class Variant:
    """One measurement of the run."""

    model: str
    dtype: str
    compile: bool
    decode: str  # "cpu" or "gpu"

    @property
    def name(self) -> str:
        mode = "compile" if self.compile else "eager"
        return f"{self.model} {self.dtype} {mode} {self.decode}-decode"


@dataclass(frozen=True)
class Budget:
    """Seconds: the whole run, each eager and compiled variant at most, and the least worth
    starting a variant with."""

    total: float
    eager: float
    compiled: float
    minimum: float

    def timeout(self, variant: Variant, remaining: float) -> float | None:
        """How long ``variant`` may run with ``remaining`` seconds left; None: skip it."""
        allowed = min(self.compiled if variant.compile else self.eager, remaining)
        return allowed if allowed >= self.minimum else None


def plan(
    models: list[str], dtypes: list[str], compiles: list[bool], decodes: list[str]
) -> list[Variant]:
    """Every combination, in priority order: eager first, then models, dtypes, decodes in the
    order given."""
    ordered = sorted(compiles)  # False (eager) first
    return [
        Variant(model, dtype, compiled, decode)
        for compiled in ordered
        for model in models
        for dtype in dtypes
        for decode in decodes
    ]


def derived(figures: dict[str, Any], gflops: float, card_tflops: float | None) -> dict[str, Any]:
    """TFLOP/s and the fractions of the reference ceiling and of the card's measured rate."""
    out = dict(figures)
    for prefix in ("", "model_only_"):
        rate = figures.get(f"{prefix}images_per_s")
        if rate is None:
            continue
        tflops = rate * gflops / 1000
        out[f"{prefix}tflops"] = tflops
        out[f"{prefix}fraction_of_reference"] = tflops / GPU_PEAK_TFLOPS
        if card_tflops:
            out[f"{prefix}fraction_of_card_matmul"] = tflops / card_tflops
    return out


def run_bounded(command: list[str], timeout: float, log: Path) -> tuple[str, str | None]:
    """Run ``command`` (with this repository's ``bench`` and ``embedding_job`` first on its
    path) in its own process group, its output to ``log``, killing the group at ``timeout``;
    ("ok" | "timeout" | "failed", the log's tail unless ok)."""
    path = [str(REPO_ROOT), str(REPO_ROOT / "job_image"), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, path))}
    with log.open("w") as handle:
        proc = subprocess.Popen(
            command, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return "timeout", log.read_text()[-2000:]
    sys.stdout.write(log.read_text())
    sys.stdout.flush()
    return ("ok", None) if code == 0 else ("failed", log.read_text()[-2000:])


_MATMUL = """
import json, sys, torch
n = 8192
a, b = (torch.randn(n, n, device="cuda", dtype=torch.bfloat16) for _ in range(2))
for _ in range(3):
    a @ b
start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
start.record()
for _ in range(10):
    a @ b
end.record()
torch.cuda.synchronize()
seconds = start.elapsed_time(end) / 1000 / 10
json.dump({"bf16_tflops": 2 * n**3 / seconds / 1e12, "n": n}, open(sys.argv[1], "w"))
"""


def machine() -> dict[str, Any]:
    """What the run ran on and with."""
    import torch
    import transformers

    cuda = torch.cuda.is_available()
    return {
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "python": sys.version.split()[0],
        "cpus": len(os.sched_getaffinity(0)),
    }


def _images(directory: Path, count: int) -> list[Path]:
    """The bench's image set of ``count`` images in ``directory`` (made unless it is there)."""
    from bench.image_set import make_image_set

    paths = sorted(directory.glob("img_*")) if directory.is_dir() else []
    if len(paths) == count:
        return paths
    return make_image_set(directory, count, workers=len(os.sched_getaffinity(0)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.gpu_run", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", default=os.environ.get("BENCH_GPU_OUT", "gpu-run.json"))
    parser.add_argument("--workdir", default="/tmp/embedding-gpu-run")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--models", default="dinov2-large,dinov2-base")
    parser.add_argument("--dtypes", default="bfloat16,float16")
    parser.add_argument("--compile", choices=["both", "off", "on"], default="both")
    parser.add_argument("--decode", default="cpu,gpu", help="cpu, gpu (gpuDecode) or both")
    parser.add_argument("--images", type=int, default=1024, help="a multiple of --batch-size")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=12.0, help="timed passes per variant")
    parser.add_argument("--model-only-seconds", type=float, default=4.0)
    parser.add_argument("--budget-s", type=float, default=540.0, help="the whole run")
    parser.add_argument("--eager-cap-s", type=float, default=75.0)
    parser.add_argument("--compiled-cap-s", type=float, default=180.0)
    parser.add_argument("--min-variant-s", type=float, default=25.0)
    parser.add_argument("--tiny", action="store_true", help="a tiny model (plumbing tests)")
    return parser


def _write(report: dict[str, Any], out: Path) -> None:
    temporary = out.with_name(out.name + ".partial")
    temporary.write_text(json.dumps(report, indent=2, sort_keys=True))
    temporary.replace(out)


def main(argv: list[str] | None = None) -> int:
    """Run every variant the budget allows; 0 once the JSON is written."""
    args = build_parser().parse_args(argv)
    started = time.monotonic()
    budget = Budget(args.budget_s, args.eager_cap_s, args.compiled_cap_s, args.min_variant_s)
    workdir, out = Path(args.workdir), Path(args.out)
    workdir.mkdir(parents=True, exist_ok=True)
    compiles = {"both": [False, True], "off": [False], "on": [True]}[args.compile]
    variants = plan(
        args.models.split(","), args.dtypes.split(","), compiles, args.decode.split(",")
    )
    report: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "workdir")},
        "reference_tflops": GPU_PEAK_TFLOPS,
        "variants": [],
        "complete": False,
    }
    _write(report, out)

    paths = _images(workdir / f"images-{args.images}", args.images)
    models: dict[str, tuple[Path, float]] = {}
    for name in dict.fromkeys(v.model for v in variants):
        directory = workdir / "models" / ("tiny-" if args.tiny else "") / name
        if not (directory / "model.safetensors").is_file():
            make_real_model(directory, name, TINY if args.tiny else REAL_CONFIGS[name])
        known = 0.0 if args.tiny else KNOWN_GFLOPS.get(name, 0.0)
        models[name] = (directory, known or flops_per_image(directory) / 1e9)
    report["setup_s"] = time.monotonic() - started
    card: float | None = None
    if args.device == "cuda":
        result = workdir / "matmul.json"
        command = [sys.executable, "-c", _MATMUL, str(result)]
        left = budget.total - (time.monotonic() - started)
        status, error = run_bounded(command, min(60.0, left), workdir / "matmul.log")
        report["card_matmul"] = {"status": status, "error": error}
        if status == "ok":
            report["card_matmul"].update(json.loads(result.read_text()))
            card = report["card_matmul"]["bf16_tflops"]
        _write(report, out)
    for index, variant in enumerate(variants):
        entry: dict[str, Any] = {"name": variant.name, **asdict(variant)}
        timeout = budget.timeout(variant, budget.total - (time.monotonic() - started))
        if timeout is None:
            entry["status"] = "skipped: out of budget"
        else:
            model_dir, gflops = models[variant.model]
            spec = VariantSpec(
                model_dir=str(model_dir),
                dtype=variant.dtype,
                compile=variant.compile,
                gpu_decode=variant.decode == "gpu",
                device=args.device,
                images=[str(p) for p in paths],
                batch_size=args.batch_size,
                seconds=args.seconds,
                model_only_seconds=args.model_only_seconds,
                result=str(workdir / f"variant-{index}.json"),
            ).write(workdir / f"variant-{index}.spec.json")
            command = [sys.executable, "-m", "bench.gpu_variant", str(spec)]
            began = time.monotonic()
            print(f"gpu-run: {variant.name} (up to {timeout:.0f}s)", flush=True)
            status, error = run_bounded(command, timeout, workdir / f"variant-{index}.log")
            entry.update(status=status, wall_s=time.monotonic() - began, gflops_per_image=gflops)
            if status == "ok":
                figures = json.loads((workdir / f"variant-{index}.json").read_text())
                entry.update(derived(figures, gflops, card))
            else:
                entry["error"] = error
        report["variants"].append(entry)
        report["elapsed_s"] = time.monotonic() - started
        _write(report, out)
    report["complete"] = all(v["status"] == "ok" for v in report["variants"])
    report["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    _write(report, out)
    print(summary(report))
    return 0


def summary(report: dict[str, Any]) -> str:
    """The run as a short table (the end of the device call's output)."""
    lines = [f"{'variant':44} {'status':8} {'img/s':>8} {'TFLOP/s':>8} {'of ref':>7} {'busy':>6}"]
    for v in report["variants"]:
        lines.append(
            f"{v['name']:44} {v['status'][:8]:8} {v.get('images_per_s', 0):8.1f} "
            f"{v.get('tflops', 0):8.1f} {v.get('fraction_of_reference', 0):7.1%} "
            f"{v.get('model_busy_fraction', 0):6.1%}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
