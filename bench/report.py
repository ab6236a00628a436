"""The figures derived from the scenarios': ratios to the baseline, TFLOP/s, the acceptance
criteria, the job's ratios to its peers, the goals of the pipeline ceiling and of start-up, and
the printed tables."""

from __future__ import annotations

import math
from typing import Any

from bench.model_configs import GPU_PEAK_TFLOPS

Variants = dict[str, dict[str, Any]]

#: Pipeline ceiling goals (issue 18): the embedder busy this share of the steady window ...
BUSY_GOAL = 0.95
#: ... and this share of ``datapath_mt``'s images/s per core, in every input mode.
PER_CORE_GOAL = 0.90
#: Start-up goal: the demo-sized job's first embedded row within this many seconds.
STARTUP_GOAL_S = 10.0


def better(figures: dict[str, Any], previous: dict[str, Any]) -> bool:
    """Whether a round's ``figures`` beat the best round so far (a NaN never does)."""
    new, old = figures.get("images_per_s"), previous.get("images_per_s")
    if new is None or (isinstance(new, float) and math.isnan(new)):
        return False
    return old is None or (isinstance(old, float) and math.isnan(old)) or new > old


def add_ratios(variants: Variants, flops: float, on_gpu: bool) -> None:
    """Per-core rates, ratios to ``baseline`` and, on a GPU, TFLOP/s and share of the ceiling."""
    base = variants.get("baseline", {}).get("images_per_s")
    for figures in variants.values():
        ips = figures.get("images_per_s")
        if ips is None:
            continue
        threads = figures.get("threads") or 1
        figures["images_per_s_per_core"] = ips / threads
        # Over the CPUs the bench's own process (the remote modes' servers, the samplers) left
        # to the job.
        bench = (figures.get("steady_cores") or {}).get("bench")
        if bench is not None and threads - bench > 0:
            figures["images_per_s_per_core_left"] = ips / (threads - bench)
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
            # A scenario of several models reports its own FLOPs per image (all its models').
            figures["tflops"] = ips * figures.get("flops_per_image", flops) / 1e12
            figures["fraction_of_peak"] = figures["tflops"] / GPU_PEAK_TFLOPS


def acceptance(variants: Variants) -> dict[str, Any]:
    """The criteria: our data path ≥ 2× the processor's per core, two models in one embedder
    ≥ 1.6× less decode CPU per image pair than two one-model embedders, and the pipeline's
    steady state ≥ 90 % of the embedder's in-process rate."""
    result: dict[str, Any] = {}
    dp, dpb = variants.get("datapath"), variants.get("datapath_baseline")
    if dp and dpb:
        per_core = dp["images_per_s_per_core"] / dpb["images_per_s_per_core"]
        per_cpu_s = dp["images_per_cpu_s"] / dpb["images_per_cpu_s"]
        result["datapath_vs_datapath_baseline_per_core"] = per_core
        result["datapath_vs_datapath_baseline_per_cpu_second"] = per_cpu_s
        result["datapath_2x_per_core"] = per_core >= 2.0
    two = variants.get("two_models")
    if two:
        result["two_models_decode_cpu_ratio"] = two["decode_cpu_ratio"]
        result["two_models_1_6x_less_decode_cpu"] = two["decode_cpu_ratio"] >= 1.6
    native, embedder = variants.get("daft_native"), variants.get("embedder")
    if native and embedder:
        ratio = native["images_per_s"] / embedder["images_per_s"]
        result["daft_native_steady_vs_embedder"] = ratio
        result["daft_native_90pct_of_embedder"] = ratio >= 0.9
    return result


def format_table(variants: Variants, on_gpu: bool) -> str:
    """A Markdown table of every variant's main figures ("-" where one has none)."""
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
        headers += ["TFLOP/s", f"of {GPU_PEAK_TFLOPS:.0f}"]
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


def _ratio(numerator: Any, denominator: Any) -> float:
    if not numerator or not denominator or math.isnan(numerator) or math.isnan(denominator):
        return math.nan
    return float(numerator) / float(denominator)


def peer_ratios(variants: Variants, job: str) -> dict[str, dict[str, float]]:
    """The job's (variant ``job``) rate over each peer's (variants named ``...peer_<name>``):
    end to end (N / T(N) of each run) and in steady state (both counted from the model's batch
    ends); above 1, the job is faster."""
    mine = variants.get(job)
    if mine is None:
        return {}
    return {
        name.split("peer_", 1)[1]: {
            "end_to_end": _ratio(
                mine.get("end_to_end_images_per_s"), peer.get("end_to_end_images_per_s")
            ),
            "steady": _ratio(
                mine.get("model_steady_images_per_s"), peer.get("model_steady_images_per_s")
            ),
        }
        for name, peer in variants.items()
        if "peer_" in name
    }


def ceiling_goals(variants: Variants, reference: str = "ceiling_datapath_mt") -> dict[str, Any]:
    """Each input mode (variants with an ``input_mode``) against the goals: the embedder busy
    ``BUSY_GOAL`` of the steady window, and ``PER_CORE_GOAL`` of the reference's (the raw
    decode rate's) images/s per core. A mode's cores are those the bench's own process left to
    the job (the http and s3 modes' servers and the samplers share the machine's CPUs; the
    reference, in-process, has neither);
    ``per_core_all_cpus_vs_datapath_mt`` divides by every CPU. ``all_hold`` is false when a mode
    misses one, or when a figure is missing."""
    ref = variants.get(reference, {}).get("images_per_s_per_core")
    modes: dict[str, Any] = {}
    for figures in variants.values():
        mode = figures.get("input_mode")
        if mode is None:
            continue
        busy = figures.get("embedder_busy_fraction", math.nan)
        every_cpu = figures.get("images_per_s_per_core")
        per_core = _ratio(figures.get("images_per_s_per_core_left", every_cpu), ref)
        modes[mode] = {
            "embedder_busy_fraction": busy,
            "busy_holds": busy >= BUSY_GOAL,
            "per_core_vs_datapath_mt": per_core,
            "per_core_all_cpus_vs_datapath_mt": _ratio(every_cpu, ref),
            "bench_cores": (figures.get("steady_cores") or {}).get("bench", math.nan),
            "per_core_holds": per_core >= PER_CORE_GOAL,
        }
    return {
        "busy_goal": BUSY_GOAL,
        "per_core_goal": PER_CORE_GOAL,
        "datapath_mt_images_per_s_per_core": ref,
        "modes": modes,
        "all_hold": bool(modes)
        and all(m["busy_holds"] and m["per_core_holds"] for m in modes.values()),
    }


def startup_goals(figures: dict[str, Any]) -> dict[str, Any]:
    """The start-up goal: the first embedded row within ``STARTUP_GOAL_S`` of the CLI's start,
    and one model load per embedding worker."""
    first = figures.get("startup", {}).get("first_batch_done_s", math.nan)
    return {
        "first_embedded_row_s": first,
        "goal_s": STARTUP_GOAL_S,
        "holds": first <= STARTUP_GOAL_S,
        "one_model_load_per_worker": figures.get("model_loads") == figures.get("workers"),
    }


def format_ceiling(goals: dict[str, Any], variants: Variants) -> str:
    """The ceiling's modes against their goals, one line each."""
    reference = goals["datapath_mt_images_per_s_per_core"]
    lines = [
        f"pipeline ceiling: datapath_mt {'-' if reference is None else f'{reference:.1f}'} "
        f"img/s/core; goals: busy >= {goals['busy_goal']:.0%}, "
        f">= {goals['per_core_goal']:.0%} of datapath_mt per core"
    ]
    by_mode = {f.get("input_mode"): f for f in variants.values() if f.get("input_mode")}
    for mode, check in goals["modes"].items():
        verdict = "holds" if check["busy_holds"] and check["per_core_holds"] else "MISSES"
        cores = by_mode[mode].get("steady_cores") or {}
        figures = by_mode[mode]
        per_core = figures.get("images_per_s_per_core_left", figures.get("images_per_s_per_core"))
        lines.append(
            f"  {mode:7} {per_core if per_core is not None else math.nan:7.1f} img/s/core left "
            f"({check['per_core_vs_datapath_mt']:.0%} of datapath_mt; "
            f"{check['per_core_all_cpus_vs_datapath_mt']:.0%} over every CPU), "
            f"busy {check['embedder_busy_fraction']:.1%}: {verdict}; cores used "
            f"{cores.get('total', math.nan):.2f} (embedder {cores.get('embedder', math.nan):.2f}, "
            f"driver {cores.get('driver', math.nan):.2f}, other {cores.get('other', math.nan):.2f}"
            f"; the bench's process: servers, samplers {cores.get('bench', math.nan):.2f})"
        )
    return "\n".join(lines)


def format_peer_ratios(ratios: dict[str, dict[str, float]], job: str) -> str:
    """One line per peer: the job's rate over the peer's, end to end and steady."""
    return "\n".join(
        f"  {job} / {peer}: end to end {r['end_to_end']:.2f}x, steady state {r['steady']:.2f}x"
        for peer, r in ratios.items()
    )
