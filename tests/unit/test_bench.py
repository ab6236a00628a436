"""The benchmark harness (bench/): its arithmetic (ratios, the goals, the job against its
peers), its registry and its in-process variants. The call trace: tests/unit/test_call_trace.py;
the GPU run: tests/unit/test_gpu_run.py; the suites' runs on the real pipeline:
tests/integration/test_bench_runs.py."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from bench import cli
from bench.image_set import make_image_set
from bench.in_process import InProcessScenario, WorkerSpec, run_worker
from bench.model_configs import KNOWN_GFLOPS, flops_per_image
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
from bench.scenarios import SCENARIOS
from bench.scenarios.ceiling import CeilingScenario
from bench.scenarios.daft_pipeline import PipelineScenario
from bench.scenarios.peers import PEERS_DIR, PeerScenario
from tests.support.hub_models import CLIP
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
    flops = flops_per_image(write_config(tmp_path / name, **config))
    assert flops / 1e9 == pytest.approx(KNOWN_GFLOPS[name], rel=0.005)


def test_flops_of_an_image_text_model_are_its_vision_towers(tmp_path: Path) -> None:
    # CLIP's config.json leaves out the sizes its config class defaults to (ViT-B/32's).
    config = {"model_type": "clip", "vision_config": {"patch_size": 32}, "text_config": {}}
    flops = flops_per_image(write_config(tmp_path / "clip", **config))
    assert flops / 1e9 == pytest.approx(2 * 4.41, rel=0.01)  # timm: ViT-B/32, 4.41 GMACs


def test_the_image_set_is_reproducible(tmp_path: Path) -> None:
    first = make_image_set(tmp_path / "a", 3)
    second = make_image_set(tmp_path / "b", 3)
    assert [p.name for p in first] == [p.name for p in second]
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    assert first[2].name.endswith("375x500.jpg")


def test_the_registry_holds_every_variant_in_order_by_suite() -> None:
    model = [
        "baseline",
        "datapath_baseline",
        "datapath",
        "datapath_mt",
        "embedder",
        "embedder_stream",
        "two_models",
        "daft_native",
        "daft_ray",
        "peer_daft_docs",
        "peer_ray_data",
        "peer_torch_loop",
    ]
    ceiling = [
        "ceiling_datapath_mt",
        "ceiling_local",
        "ceiling_http",
        "ceiling_s3",
        "ceiling_binary",
        "ceiling_base64",
        "ceiling_peer_daft_docs",
        "ceiling_peer_ray_data",
        "ceiling_peer_torch_loop",
    ]
    assert list(SCENARIOS) == [*model, *ceiling, "startup"]
    assert all(name == scenario.name for name, scenario in SCENARIOS.items())
    assert [n for n, s in SCENARIOS.items() if s.suite == "model"] == model
    assert [n for n, s in SCENARIOS.items() if s.suite == "ceiling"] == ceiling
    assert [n for n, s in SCENARIOS.items() if s.data_only] == [
        "datapath_baseline",
        "datapath",
        "datapath_mt",
        "ceiling_datapath_mt",
    ]
    pipelines = {n: s for n, s in SCENARIOS.items() if isinstance(s, PipelineScenario)}
    assert {name: s.runner for name, s in pipelines.items()} == {
        "daft_native": "native",
        "daft_ray": "ray",
    }
    modes = {n: s.mode for n, s in SCENARIOS.items() if isinstance(s, CeilingScenario)}
    assert modes == {f"ceiling_{m}": m for m in ("local", "http", "s3", "binary", "base64")}
    peers = {n: s.script for n, s in SCENARIOS.items() if isinstance(s, PeerScenario)}
    assert set(peers.values()) == {"daft_docs", "ray_data", "torch_loop"} and len(peers) == 6
    assert all((PEERS_DIR / f"{script}.py").is_file() for script in peers.values())
    in_process = [s for s in SCENARIOS.values() if isinstance(s, InProcessScenario)]
    assert len(in_process) == 8  # two_models among them


def test_an_unknown_variant_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--variants", "datapath,no_such_variant"]) == 2
    assert "no_such_variant" in capsys.readouterr().err


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
    add_ratios(variants, flops=46.3e9, on_gpu=True)
    assert variants["datapath"]["x_baseline"] == pytest.approx(12.0)
    assert variants["datapath"]["x_baseline_per_core"] == pytest.approx(24.0)
    assert variants["embedder"]["tflops"] == pytest.approx(12 * 46.3e9 / 1e12)
    assert variants["embedder"]["fraction_of_peak"] == pytest.approx(12 * 46.3e9 / 1e12 / 790)
    assert "tflops" not in variants["datapath"]
    result = acceptance(variants)
    assert result["datapath_vs_datapath_baseline_per_core"] == pytest.approx(2.4)
    assert result["datapath_vs_datapath_baseline_per_cpu_second"] == pytest.approx(125 / 52)
    assert result["datapath_2x_per_core"] is True
    assert result["daft_native_steady_vs_embedder"] == pytest.approx(11 / 12)
    assert result["daft_native_90pct_of_embedder"] is True
    table = format_table(variants, on_gpu=True)
    assert table.splitlines()[0].startswith("| variant")
    assert "| datapath " in table and "TFLOP/s" in table and "of 790" in table
    assert "| 5.0 " in table  # daft_native's end-to-end rate; "-" for the others
    assert "TFLOP/s" not in format_table(variants, on_gpu=False)


def test_the_job_against_its_peers_end_to_end_and_in_steady_state() -> None:
    variants = {
        "daft_native": {"end_to_end_images_per_s": 12.0, "model_steady_images_per_s": 30.0},
        "peer_daft_docs": {"end_to_end_images_per_s": 10.0, "model_steady_images_per_s": 20.0},
        "peer_torch_loop": {"end_to_end_images_per_s": 15.0, "model_steady_images_per_s": 30.0},
        "peer_ray_data": {"end_to_end_images_per_s": 6.0, "model_steady_images_per_s": math.nan},
        "embedder": {"images_per_s": 31.0},
    }
    ratios = peer_ratios(variants, "daft_native")
    assert set(ratios) == {"daft_docs", "torch_loop", "ray_data"}
    assert ratios["daft_docs"] == {"end_to_end": pytest.approx(1.2), "steady": pytest.approx(1.5)}
    assert ratios["torch_loop"] == {"end_to_end": pytest.approx(0.8), "steady": pytest.approx(1.0)}
    assert ratios["ray_data"]["end_to_end"] == pytest.approx(2.0)
    assert math.isnan(ratios["ray_data"]["steady"])  # no steady state: no ratio, not 0 or inf
    assert peer_ratios(variants, "ceiling_local") == {}  # that job did not run
    printed = format_peer_ratios(ratios, "daft_native")
    assert "daft_native / daft_docs: end to end 1.20x, steady state 1.50x" in printed


def _mode(mode: str, per_core: float, busy: float) -> dict[str, object]:
    return {"input_mode": mode, "images_per_s_per_core": per_core, "embedder_busy_fraction": busy}


def test_the_pipeline_ceiling_goals_per_input_mode() -> None:
    variants = {
        "ceiling_datapath_mt": {"images_per_s_per_core": 100.0, "data_only": True},
        "ceiling_local": {
            **_mode("local", 95.0, 0.99),
            "steady_cores": {"driver": 0.05, "embedder": 1.5, "other": 0.0, "total": 1.55},
        },
        "ceiling_http": _mode("http", 91.0, 0.94),  # busy misses
        "ceiling_base64": _mode("base64", 70.0, 0.97),  # per core misses
    }
    goals = ceiling_goals(variants)
    assert goals["busy_goal"] == 0.95 and goals["per_core_goal"] == 0.9
    assert goals["datapath_mt_images_per_s_per_core"] == 100.0
    modes = goals["modes"]
    assert modes["local"] == {
        "embedder_busy_fraction": 0.99,
        "busy_holds": True,
        "per_core_vs_datapath_mt": pytest.approx(0.95),
        "per_core_all_cpus_vs_datapath_mt": pytest.approx(0.95),
        "bench_cores": pytest.approx(math.nan, nan_ok=True),
        "per_core_holds": True,
    }
    assert (modes["http"]["busy_holds"], modes["http"]["per_core_holds"]) == (False, True)
    assert (modes["base64"]["busy_holds"], modes["base64"]["per_core_holds"]) == (True, False)
    assert goals["all_hold"] is False
    assert ceiling_goals({"ceiling_local": variants["ceiling_local"]})["all_hold"] is False
    assert ceiling_goals({k: variants[k] for k in list(variants)[:2]})["all_hold"] is True
    assert ceiling_goals({})["all_hold"] is False  # nothing measured holds nothing
    printed = format_ceiling(goals, variants)
    assert (
        "local" in printed and "95% of datapath_mt" in printed and "busy 94.0%: MISSES" in printed
    )
    assert "cores used 1.55 (embedder 1.50, driver 0.05, other 0.00; the bench" in printed
    assert "cores used nan" in printed  # a mode measured without the CPU samples
    no_reference = ceiling_goals({"ceiling_local": variants["ceiling_local"]})
    assert "datapath_mt - img/s/core" in format_ceiling(no_reference, variants)


def test_a_remote_modes_cores_are_those_the_benchs_servers_left_to_the_job() -> None:
    cores = {"driver": 0.0, "embedder": 1.5, "other": 0.0, "total": 1.5, "bench": 0.4}
    variants = {
        "ceiling_datapath_mt": {"images_per_s": 200.0, "threads": 2, "data_only": True},
        "ceiling_s3": {
            "input_mode": "s3",
            "images_per_s": 160.0,
            "threads": 2,
            "embedder_busy_fraction": 0.99,
            "steady_cores": cores,
        },
    }
    add_ratios(variants, flops=0.0, on_gpu=False)
    assert variants["ceiling_s3"]["images_per_s_per_core_left"] == pytest.approx(100.0)
    s3 = ceiling_goals(variants)["modes"]["s3"]
    assert s3["per_core_vs_datapath_mt"] == pytest.approx(1.0) and s3["per_core_holds"]
    assert s3["per_core_all_cpus_vs_datapath_mt"] == pytest.approx(0.8)
    assert s3["bench_cores"] == 0.4
    printed = format_ceiling(ceiling_goals(variants), variants)
    assert "100.0 img/s/core left (100% of datapath_mt; 80% over every CPU)" in printed
    assert "the bench's process: servers, samplers 0.40" in printed


def test_the_start_up_goal() -> None:
    fast = {"startup": {"first_batch_done_s": 8.5}, "model_loads": 1, "workers": 1}
    assert startup_goals(fast) == {
        "first_embedded_row_s": 8.5,
        "goal_s": 10.0,
        "holds": True,
        "one_model_load_per_worker": True,
    }
    slow = {"startup": {"first_batch_done_s": 12.0}, "model_loads": 2, "workers": 1}
    assert startup_goals(slow)["holds"] is False
    assert startup_goals(slow)["one_model_load_per_worker"] is False
    assert startup_goals({})["holds"] is False


def test_a_round_is_kept_only_when_it_is_faster() -> None:
    assert better({"images_per_s": 2.0}, {"images_per_s": 1.0})
    assert not better({"images_per_s": 1.0}, {"images_per_s": 2.0})
    assert not better({"images_per_s": math.nan}, {"images_per_s": 1.0})
    assert better({"images_per_s": 1.0}, {"images_per_s": math.nan})


def tiny_spec(tmp_path: Path, variant: str, model_dir: Path, **extra: Any) -> WorkerSpec:
    """A worker spec of one pass over 4 generated images on the CPU."""
    paths = make_image_set(tmp_path / "images", 4)
    return WorkerSpec(
        variant=variant,
        model_dir=str(model_dir),
        images=[str(p) for p in paths],
        device="cpu",
        dtype="float32",
        min_seconds=0.0,
        draft_factor=2.0,
        result=str(tmp_path / "result.json"),
        **extra,
    )


@pytest.mark.parametrize("variant", ["datapath", "datapath_baseline"])
def test_data_path_variants_run_in_process(tmp_path: Path, models_root: Path, variant: str) -> None:
    spec = tiny_spec(tmp_path, variant, models_root / DINOV2)
    threads = torch.get_num_threads()
    try:
        figures = run_worker(spec)
    finally:
        torch.set_num_threads(threads)  # the worker pins one thread for per-core figures
    assert figures["images"] == 4 and figures["threads"] == 1
    assert figures["images_per_s"] > 0 and figures["peak_rss_mb_self"] > 0


def test_a_pipeline_variant_is_not_run_as_a_worker(tmp_path: Path) -> None:
    spec = WorkerSpec("daft_native", "m", [], "cpu", "float32", 0.0, None, str(tmp_path / "r"))
    with pytest.raises(ValueError, match="daft_native"):
        run_worker(spec)


def test_a_short_run_writes_the_report_from_any_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The driver end to end on one in-process variant: the worker subprocess finds ``bench``
    whatever the working directory, and the JSON has the keys BENCHMARKS.md documents."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "report.json"
    argv = ["--variants", "datapath", "--images", "4", "--repeats", "1", "--min-seconds", "0"]
    assert cli.main([*argv, "--device", "cpu", "--out", str(out), "--workdir", "work"]) == 0
    report = json.loads(out.read_text())
    for key in ("device", "commit", "cpu", "cpu_threads", "dtype", "images", "image_mix"):
        assert key in report, key
    for key in ("draft_factor", "batch_size", "call_batch_size", "model", "total_seconds"):
        assert key in report, key
    assert report["device"] == "cpu" and report["images"] == 4
    assert report["model"] == "dinov2-small4" and report["batch_size"] == 32
    figures = report["variants"]["datapath"]
    assert figures["images"] >= 4 and figures["images_per_s"] > 0 and figures["threads"] == 1
    assert figures["data_only"] is True and figures["peak_pss_mb"] > 0
    assert figures["rounds_images_per_s"] == [figures["images_per_s"]]
    assert report["by_model"]["dinov2-small4"]["variants"] == report["variants"]
    assert report["acceptance"] == {}  # datapath alone meets neither criterion's pair


def test_the_two_model_variant_counts_one_decode_per_pair_against_two(
    tmp_path: Path, models_root: Path, family_models: Path
) -> None:
    """The plumbing of ``two_models`` on a tiny run: the decode meter sees each image decoded
    once by the two-model embedder and twice by the two one-model embedders."""
    spec = tiny_spec(
        tmp_path,
        "two_models",
        models_root / DINOV2,
        batch_size=2,
        call_batch_size=2,
        companion_model_dir=str(family_models / CLIP),
    )
    figures = run_worker(spec)
    assert figures["images"] == 4 and figures["passes"] == 1
    assert (figures["two_decodes_per_pair"], figures["singles_decodes_per_pair"]) == (1.0, 2.0)
    assert figures["two_decode_cpu_ms_per_pair"] > 0 and figures["singles_images_per_s"] > 0
    ratio = figures["singles_decode_cpu_ms_per_pair"] / figures["two_decode_cpu_ms_per_pair"]
    assert figures["decode_cpu_ratio"] == pytest.approx(ratio)
    assert figures["flops_per_image"] > flops_per_image(models_root / DINOV2)


def test_the_two_model_criterion_and_its_flops() -> None:
    variants = {
        "two_models": {
            "images_per_s": 10.0,
            "threads": 2,
            "decode_cpu_ratio": 1.7,
            "flops_per_image": 80e9,
        },
        "embedder": {"images_per_s": 12.0, "threads": 2},
    }
    add_ratios(variants, flops=46.3e9, on_gpu=True)
    assert variants["two_models"]["tflops"] == pytest.approx(10 * 80e9 / 1e12)
    assert variants["embedder"]["tflops"] == pytest.approx(12 * 46.3e9 / 1e12)
    result = acceptance(variants)
    assert result["two_models_decode_cpu_ratio"] == 1.7
    assert result["two_models_1_6x_less_decode_cpu"] is True
