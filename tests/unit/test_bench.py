"""The benchmark harness (bench/): its arithmetic, its registry, its in-process variants and the
embedder trace it adds to the job's processes from outside the library."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch

from bench import cli, embedder_trace
from bench.image_set import make_image_set
from bench.in_process import InProcessScenario, WorkerSpec, run_worker
from bench.model_configs import KNOWN_GFLOPS, flops_per_image
from bench.report import acceptance, add_ratios, better, format_table
from bench.scenarios import SCENARIOS
from bench.scenarios.daft_pipeline import PipelineScenario
from tests.support.hub_models import FAMILY_MODELS
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


def test_the_registry_holds_every_variant_in_order() -> None:
    assert list(SCENARIOS) == [
        "baseline",
        "datapath_baseline",
        "datapath",
        "datapath_mt",
        "embedder",
        "embedder_stream",
        "two_models",
        "daft_native",
        "daft_ray",
    ]
    assert all(name == scenario.name for name, scenario in SCENARIOS.items())
    assert [n for n, s in SCENARIOS.items() if s.data_only] == [
        "datapath_baseline",
        "datapath",
        "datapath_mt",
    ]
    pipelines = {n: s for n, s in SCENARIOS.items() if isinstance(s, PipelineScenario)}
    assert {name: s.runner for name, s in pipelines.items()} == {
        "daft_native": "native",
        "daft_ray": "ray",
    }
    in_process = [s for name, s in SCENARIOS.items() if name not in pipelines]
    assert all(isinstance(s, InProcessScenario) for s in in_process) and len(in_process) == 7


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


def test_a_round_is_kept_only_when_it_is_faster() -> None:
    assert better({"images_per_s": 2.0}, {"images_per_s": 1.0})
    assert not better({"images_per_s": 1.0}, {"images_per_s": 2.0})
    assert not better({"images_per_s": math.nan}, {"images_per_s": 1.0})
    assert better({"images_per_s": 1.0}, {"images_per_s": math.nan})


def test_trace_rate_counts_from_the_end_of_the_first_batch() -> None:
    calls = [(8.0, 10.0, 32), (10.5, 12.0, 32), (12.0, 14.0, 16)]
    assert embedder_trace.trace_rate(calls, skip=1) == pytest.approx(12.0)
    assert embedder_trace.busy_fraction(calls, skip=1) == pytest.approx(3.5 / 4)
    assert embedder_trace.trace_rate(calls) == pytest.approx(8.0)  # from the end of the 2nd call
    assert embedder_trace.busy_fraction(calls) == pytest.approx(1.0)
    assert math.isnan(embedder_trace.trace_rate(calls[:1]))
    assert math.isnan(embedder_trace.busy_fraction([]))


def test_the_trace_is_read_relative_to_the_start_and_ordered_by_end(tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    assert embedder_trace.read_trace(trace, since=0.0) == []
    trace.write_text("105.5 108.0 32 11\n100.5 104.0 32 12\n\n")
    assert embedder_trace.read_trace(trace, since=100.0) == [(0.5, 4.0, 32), (5.5, 8.0, 32)]


def test_the_hook_env_puts_the_site_dir_first_and_keeps_the_rest(tmp_path: Path) -> None:
    env = embedder_trace.hook_env(tmp_path / "t", {"PYTHONPATH": "/a:/b", "HOME": "/h"})
    assert env["PYTHONPATH"] == os.pathsep.join([str(embedder_trace.SITE_DIR), "/a:/b"])
    assert env[embedder_trace.TRACE_ENV] == str(tmp_path / "t") and env["HOME"] == "/h"
    assert (embedder_trace.SITE_DIR / "sitecustomize.py").is_file()
    assert embedder_trace.hook_env(tmp_path / "t", {})["PYTHONPATH"] == str(embedder_trace.SITE_DIR)


def test_the_traced_method_records_start_end_and_rows(tmp_path: Path) -> None:
    class Fake:
        def embed_bytes(self, items: list[bytes], errors: object = None) -> tuple[int, object]:
            return len(items), errors

    trace = tmp_path / "trace"
    method = embedder_trace.traced(Fake.embed_bytes, str(trace))
    assert method(Fake(), [b"a", b"b"], errors="e") == (2, "e")
    assert method(Fake(), []) == (0, None)
    lines = [line.split() for line in trace.read_text().splitlines()]
    assert [int(rows) for _, _, rows, _ in lines] == [2, 0]
    assert all(float(start) <= float(end) for start, end, _, _ in lines)
    assert {int(pid) for *_, pid in lines} == {os.getpid()}


def test_the_trace_reaches_a_fresh_process_that_runs_the_embedder(
    tmp_path: Path, models_root: Path
) -> None:
    """What the pipeline scenarios rely on: a process started with ``hook_env`` (as Daft's UDF
    workers and Ray's workers are, inheriting it) traces every call, the library untouched."""
    from tests.support.images import good_images

    image = tmp_path / "image.jpg"
    image.write_bytes(good_images()["jpeg"])
    script = textwrap.dedent(
        f"""
        import os
        from pathlib import Path
        from embedding_job.model.embedder import Embedder, EmbedderSettings
        embedder = Embedder(EmbedderSettings(model_dir={str(models_root / DINOV2)!r}))
        data = Path({str(image)!r}).read_bytes()
        embedder.embed_bytes([data, None])
        embedder.embed_bytes([b""])
        print(os.getpid())
        """
    )
    trace = tmp_path / "trace"
    env = embedder_trace.hook_env(trace, {**os.environ, "HF_HUB_OFFLINE": "1"})
    run = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    lines = [line.split() for line in trace.read_text().splitlines()]
    assert [int(rows) for _, _, rows, _ in lines] == [2, 1]
    assert all(float(start) <= float(end) for start, end, _, _ in lines)
    assert {int(pid) for *_, pid in lines} == {int(run.stdout.split()[-1])}


def test_the_library_writes_no_trace_of_its_own(
    tmp_path: Path, models_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from embedding_job.model import embedder as embedder_module
    from tests.support.images import good_images

    trace = tmp_path / "trace"
    monkeypatch.setenv(embedder_trace.TRACE_ENV, str(trace))
    monkeypatch.setenv("EMBEDDING_JOB_TRACE_FILE", str(trace))  # the hook the library had
    embedder = embedder_module.Embedder(
        embedder_module.EmbedderSettings(model_dir=str(models_root / DINOV2))
    )
    vectors, errors = embedder.embed_bytes([good_images()["jpeg"]])
    assert vectors[0] is not None and errors == [None]
    assert not trace.exists()
    assert not hasattr(embedder_module, "TRACE_ENV")


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
    clip = next(name for name, kind in FAMILY_MODELS.items() if kind == "clip")
    spec = tiny_spec(
        tmp_path,
        "two_models",
        models_root / DINOV2,
        batch_size=2,
        call_batch_size=2,
        companion_model_dir=str(family_models / clip),
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
