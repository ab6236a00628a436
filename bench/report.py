"""The figures derived from the scenarios': ratios to the baseline, TFLOP/s, the acceptance
criteria, and the printed table."""

from __future__ import annotations

import math
from typing import Any

from bench.model_configs import GPU_PEAK_TFLOPS

Variants = dict[str, dict[str, Any]]


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
