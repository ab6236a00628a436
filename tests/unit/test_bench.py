"""The benchmark harness's own arithmetic and its in-process data-path variants."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from embedding_job import bench
from tests.support.models import DINOV2


def write_config(directory: Path, **config: object) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config))
    return directory


@pytest.mark.parametrize(
    ("name", "config"),
    [
        ("vit-base-patch16", {"model_type": "vit", "hidden_size": 768, "num_hidden_layers": 12,
                              "patch_size": 16, "intermediate_size": 3072}),
        ("vit-large-patch16", {"model_type": "vit", "hidden_size": 1024, "num_hidden_layers": 24,
                               "patch_size": 16, "intermediate_size": 4096}),
        ("dinov2-base", {"model_type": "dinov2", "hidden_size": 768, "num_hidden_layers": 12,
                         "patch_size": 14, "mlp_ratio": 4}),
        ("dinov2-large", {"model_type": "dinov2", "hidden_size": 1024, "num_hidden_layers": 24,
                          "patch_size": 14, "mlp_ratio": 4}),
    ],
)  # fmt: skip
def test_flops_from_the_config_match_the_published_figures(
    tmp_path: Path, name: str, config: dict[str, object]
) -> None:
    flops = bench.flops_per_image(write_config(tmp_path / name, **config))
    assert flops / 1e9 == pytest.approx(bench.KNOWN_GFLOPS[name], rel=0.005)


def test_the_image_set_is_reproducible(tmp_path: Path) -> None:
    first = bench.make_image_set(tmp_path / "a", 3)
    second = bench.make_image_set(tmp_path / "b", 3)
    assert [p.name for p in first] == [p.name for p in second]
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    assert first[2].name.endswith("375x500.jpg")


def test_ratios_acceptance_and_table() -> None:
    variants = {
        "baseline": {"images_per_s": 10.0, "threads": 2},
        "datapath_baseline": {"images_per_s": 50.0, "threads": 1, "images_per_cpu_s": 52.0},
        "datapath": {
            "images_per_s": 120.0,
            "threads": 1,
            "images_per_cpu_s": 125.0,
            "data_only": True,
        },
        "embedder": {"images_per_s": 12.0, "threads": 2},
        "daft_native": {"images_per_s": 11.0, "threads": 2, "end_to_end_images_per_s": 5.0},
    }
    bench.add_ratios(variants, flops=46.3e9, on_gpu=True)
    assert variants["datapath"]["x_baseline"] == pytest.approx(12.0)
    assert variants["datapath"]["x_baseline_per_core"] == pytest.approx(24.0)
    assert variants["embedder"]["tflops"] == pytest.approx(12 * 46.3e9 / 1e12)
    assert "tflops" not in variants["datapath"]
    result = bench.acceptance(variants)
    assert result["datapath_vs_datapath_baseline_per_core"] == pytest.approx(2.4)
    assert result["datapath_2x_per_core"] is True
    assert result["daft_native_steady_vs_embedder"] == pytest.approx(11 / 12)
    assert result["daft_native_90pct_of_embedder"] is True
    table = bench.format_table(variants, on_gpu=True)
    assert table.splitlines()[0].startswith("| variant")
    assert "| datapath " in table and "TFLOP/s" in table


def test_trace_rate_counts_from_the_end_of_the_first_batch() -> None:
    calls = [(8.0, 10.0, 32), (10.5, 12.0, 32), (12.0, 14.0, 16)]
    assert bench._trace_rate(calls, skip=1) == pytest.approx(12.0)
    assert bench._busy_fraction(calls, skip=1) == pytest.approx(3.5 / 4)
    assert bench._trace_rate(calls) == pytest.approx(8.0)  # from the end of the 2nd call
    assert bench._busy_fraction(calls) == pytest.approx(1.0)
    assert bench._trace_rate(calls[:1]) != bench._trace_rate(calls[:1])  # nan


@pytest.mark.parametrize("variant", ["datapath", "datapath_baseline"])
def test_data_path_variants_run_in_process(tmp_path: Path, models_root: Path, variant: str) -> None:
    paths = bench.make_image_set(tmp_path / "images", 4)
    spec = bench.WorkerSpec(
        variant=variant,
        model_dir=str(models_root / DINOV2),
        images=[str(p) for p in paths],
        device="cpu",
        dtype="float32",
        min_seconds=0.0,
        draft_factor=2.0,
        result=str(tmp_path / "result.json"),
    )
    threads = torch.get_num_threads()
    try:
        figures = bench.run_worker(spec)
    finally:
        torch.set_num_threads(threads)  # the worker pins one thread for per-core figures
    assert figures["images"] == 4 and figures["threads"] == 1
    assert figures["images_per_s"] > 0 and figures["peak_rss_mb_self"] > 0


def test_the_embedder_trace_hook_records_each_call(
    tmp_path: Path, models_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from embedding_job.model.embedder import TRACE_ENV, Embedder, EmbedderSettings
    from tests.support.images import good_images

    trace = tmp_path / "trace"
    embedder = Embedder(EmbedderSettings(model_dir=str(models_root / DINOV2)))
    embedder.embed_bytes([good_images()["jpeg"]])
    assert not trace.exists()
    monkeypatch.setenv(TRACE_ENV, str(trace))
    embedder.embed_bytes([good_images()["jpeg"], None])
    embedder.embed_bytes([b""])
    lines = [line.split() for line in trace.read_text().splitlines()]
    assert [int(rows) for _, _, rows in lines] == [2, 1]
    assert all(float(start) <= float(end) for start, end, _ in lines)
