"""The one-call GPU run (bench/gpu_run.py): its plan, its budget and its arithmetic, and its
plumbing end to end on a CPU with a tiny model, so that a lent GPU's minutes go to measuring."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import gpu_run
from bench.gpu_run import Budget, Variant, derived, plan
from bench.model_configs import DINOV2_CONFIG, PREPROCESSORS, REAL_CONFIGS, dinov2_config


def test_variants_run_in_priority_order() -> None:
    variants = plan(
        ["dinov2-large", "dinov2-base"], ["bfloat16", "float16"], [True, False], ["cpu", "gpu"]
    )
    assert len(variants) == 16
    assert [v.name for v in variants[:3]] == [
        "dinov2-large bfloat16 eager cpu-decode",
        "dinov2-large bfloat16 eager gpu-decode",
        "dinov2-large float16 eager cpu-decode",
    ]
    assert not any(v.compile for v in variants[:8]) and all(v.compile for v in variants[8:])
    assert variants[4] == Variant("dinov2-base", "bfloat16", False, "cpu")


def test_a_variant_gets_its_cap_or_what_is_left_and_none_below_the_minimum() -> None:
    budget = Budget(total=540, eager=75, compiled=180, minimum=25)
    eager, compiled = Variant("m", "bfloat16", False, "cpu"), Variant("m", "bfloat16", True, "cpu")
    assert budget.timeout(eager, remaining=400) == 75
    assert budget.timeout(compiled, remaining=400) == 180
    assert budget.timeout(compiled, remaining=100) == 100
    assert budget.timeout(eager, remaining=24.9) is None


def test_tflops_and_the_fractions_of_the_ceilings() -> None:
    figures = {"images_per_s": 2000.0, "model_only_images_per_s": 3000.0, "images": 4096}
    out = derived(figures, gflops=162.0, card_tflops=800.0)
    assert out["tflops"] == pytest.approx(324.0)
    assert out["fraction_of_reference"] == pytest.approx(324.0 / 790)
    assert out["fraction_of_card_matmul"] == pytest.approx(324.0 / 800)
    assert out["model_only_tflops"] == pytest.approx(486.0)
    assert out["images"] == 4096
    assert "fraction_of_card_matmul" not in derived(figures, gflops=162.0, card_tflops=None)


def test_the_models_have_the_real_checkpoints_config_values(tmp_path: Path) -> None:
    """facebook/dinov2-large's config.json, weights aside (the values the GPU run builds)."""
    config = dinov2_config(REAL_CONFIGS["dinov2-large"])
    assert {k: config[k] for k in ("hidden_size", "num_hidden_layers", "num_attention_heads")} == {
        "hidden_size": 1024,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
    }
    assert config["mlp_ratio"] == 4 and config["image_size"] == 518 and config["patch_size"] == 14
    directory = gpu_run.make_real_model(tmp_path / "m", "dinov2-base", gpu_run.TINY)
    written = json.loads((directory / "config.json").read_text())
    assert {k: written[k] for k in DINOV2_CONFIG} == DINOV2_CONFIG
    real = PREPROCESSORS / "facebook" / "dinov2-base" / "preprocessor_config.json"
    assert (directory / "preprocessor_config.json").read_bytes() == real.read_bytes()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One workdir for the module: the images and the tiny model are made once."""
    return tmp_path_factory.mktemp("gpu-run")


TINY_RUN = [
    "--device", "cpu", "--tiny", "--models", "dinov2-base", "--dtypes", "bfloat16",
    "--compile", "off", "--images", "8", "--batch-size", "4",
    "--seconds", "0.2", "--model-only-seconds", "0.1",
]  # fmt: skip


def test_the_run_measures_each_variant_on_a_cpu(workdir: Path) -> None:
    out = workdir / "run.json"
    assert (
        gpu_run.main(
            [*TINY_RUN, "--decode", "cpu,gpu", "--workdir", str(workdir), "--out", str(out)]
        )
        == 0
    )
    report = json.loads(out.read_text())
    assert report["complete"] is True and report["reference_tflops"] == 790.0
    assert report["machine"]["torch"] and report["settings"]["images"] == 8
    assert "card_matmul" not in report  # measured on a GPU only
    cpu, gpu = report["variants"]
    assert (cpu["decode"], gpu["decode"]) == ("cpu", "gpu")
    for variant in (cpu, gpu):
        assert variant["status"] == "ok" and variant["images"] >= 8
        assert variant["images_per_s"] > 0 and variant["model_only_images_per_s"] > 0
        assert variant["tflops"] == pytest.approx(
            variant["images_per_s"] * variant["gflops_per_image"] / 1000
        )
        assert 0 < variant["model_busy_fraction"] <= 1
        assert variant["effective_dtype"] == "float32"  # bfloat16 on a CPU computes in float32
    assert gpu["gpu_decode_active"] is False  # no CUDA here: the CPU path, and the JSON says so


def test_a_variant_past_its_time_is_killed_and_the_json_still_says_so(workdir: Path) -> None:
    out = workdir / "killed.json"
    argv = [*TINY_RUN, "--decode", "cpu", "--eager-cap-s", "0.5", "--min-variant-s", "0.1"]
    assert gpu_run.main([*argv, "--workdir", str(workdir), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    (variant,) = report["variants"]
    assert variant["status"] == "timeout" and variant["wall_s"] < 5
    assert report["complete"] is False


def test_variants_the_budget_cannot_fit_are_recorded_as_skipped(workdir: Path) -> None:
    out = workdir / "skipped.json"
    argv = [*TINY_RUN, "--decode", "cpu,gpu", "--min-variant-s", "100000"]
    assert gpu_run.main([*argv, "--workdir", str(workdir), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert [v["status"] for v in report["variants"]] == ["skipped: out of budget"] * 2
    assert report["complete"] is False and "finished" in report
