"""The benchmark harness (bench/): its arithmetic (ratios, goals, the job against its peers),
its registry, its in-process variants and the call trace it adds to the job's processes from
outside the library. The suites' plumbing: tests/unit/test_bench_suites.py; the GPU run:
tests/unit/test_gpu_run.py."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest
import torch

from bench import call_trace, cli
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
from bench.traced_run import TracedRun, startup_figures, steady_figures
from bench.tree_memory import TreeMemory, cpu_by
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
    assert len(in_process) == 7


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


def test_the_cpu_a_process_had_used_by_a_time() -> None:
    samples = [(1.0, 0.2), (1.25, 0.4), (1.5, 0.45)]
    assert cpu_by(samples, 0.5) == 0.0
    assert cpu_by(samples, 1.25) == 0.4
    assert cpu_by(samples, 1.4) == 0.4
    assert cpu_by(samples, 9.0) == 0.45
    assert math.isnan(cpu_by([], 1.0))


def test_tree_memory_samples_each_processs_cpu_time() -> None:
    busy = "import time\nend = time.process_time() + 0.6\nwhile time.process_time() < end: pass"
    proc = subprocess.Popen([sys.executable, "-c", busy])
    with TreeMemory(proc.pid, interval=0.05) as memory:
        proc.wait(timeout=60)
    used = [cpu for _, cpu in memory.cpu[proc.pid]]
    assert used == sorted(used) and used[-1] >= 0.3
    assert memory.peak_rss_kb > 0


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
        "ceiling_local": _mode("local", 95.0, 0.99),
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
    no_reference = ceiling_goals({"ceiling_local": variants["ceiling_local"]})
    assert "datapath_mt - img/s/core" in format_ceiling(no_reference, variants)


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


def _record(start: float, end: float, rows: int, pid: int, label: str) -> call_trace.Record:
    return call_trace.Record(start, end, rows, pid, label)


def test_where_a_runs_start_up_went() -> None:
    records = [
        _record(0.4, 0.4, 0, 10, "proc"),  # the CLI
        _record(3.0, 3.0, 0, 20, "proc"),  # the embedding worker
        _record(5.0, 6.5, 0, 20, "load"),
        _record(7.0, 7.1, 8, 20, "model"),
        _record(6.9, 7.3, 8, 20, "embed"),
        _record(7.4, 7.5, 8, 20, "model"),
        _record(7.3, 7.6, 8, 20, "embed"),
    ]
    cpu = {
        10: [(1.0, 0.5), (2.9, 2.0), (3.1, 2.1)],  # the CLI: 2.0 s of CPU when the worker starts
        20: [(3.5, 0.3), (7.0, 4.0), (7.5, 4.2)],  # the worker: 4.0 s by its first batch
    }
    run = TracedRun(9.0, sorted(records, key=lambda r: r.end), "", 100.0, 80.0, 7.9, 10, cpu)
    assert startup_figures(run) == {
        "worker_started_s": 3.0,
        "model_load_started_s": 5.0,
        "model_loaded_s": 6.5,
        "first_model_call_s": 7.0,
        "first_batch_done_s": 7.3,
        "first_file_s": 7.9,
        "end_s": 9.0,
        "driver_cpu_until_worker_s": 2.0,
        "worker_cpu_until_first_batch_s": 4.0,
        "first_batch_cpu_path_s": 6.0,
    }
    # A peer has no embedder: its first batch is its first model call.
    peer = TracedRun(9.0, [r for r in run.records if r.label in ("proc", "model")], "", 1, 1, None)
    figures = startup_figures(peer)
    assert figures["first_batch_done_s"] == 7.1 and figures["worker_started_s"] == 3.0
    assert math.isnan(figures["model_load_started_s"]) and figures["first_file_s"] is None
    assert math.isnan(figures["first_batch_cpu_path_s"])  # no CPU samples
    steady = steady_figures(run, rows=16)
    assert steady["end_to_end_images_per_s"] == pytest.approx(16 / 9.0)
    # Two model calls: the window shrinks to the second one (8 rows from 7.1 s to 7.5 s).
    assert steady["model_steady_images_per_s"] == pytest.approx(8 / 0.4)
    assert steady["peak_rss_mb"] == 100.0 and steady["images"] == 16


def test_a_round_is_kept_only_when_it_is_faster() -> None:
    assert better({"images_per_s": 2.0}, {"images_per_s": 1.0})
    assert not better({"images_per_s": 1.0}, {"images_per_s": 2.0})
    assert not better({"images_per_s": math.nan}, {"images_per_s": 1.0})
    assert better({"images_per_s": 1.0}, {"images_per_s": math.nan})


def test_trace_rate_counts_from_the_end_of_the_first_batch() -> None:
    calls = [(8.0, 10.0, 32), (10.5, 12.0, 32), (12.0, 14.0, 16)]
    assert call_trace.trace_rate(calls, skip=1) == pytest.approx(12.0)
    assert call_trace.busy_fraction(calls, skip=1) == pytest.approx(3.5 / 4)
    assert call_trace.trace_rate(calls) == pytest.approx(8.0)  # from the end of the 2nd call
    assert call_trace.busy_fraction(calls) == pytest.approx(1.0)
    assert math.isnan(call_trace.trace_rate(calls[:1]))
    assert math.isnan(call_trace.busy_fraction([]))


def test_overlapping_calls_of_several_workers_count_once_in_the_busy_share() -> None:
    # Two workers: calls 2 and 3 overlap by 1 s; the window runs from 4 to 10.
    calls = [(0.0, 4.0, 8), (5.0, 8.0, 8), (7.0, 9.0, 8), (9.5, 10.0, 8)]
    assert call_trace.busy_fraction(calls, skip=1) == pytest.approx((4.0 + 0.5) / 6.0)
    assert call_trace.trace_rate(calls, skip=1) == pytest.approx(24 / 6.0)


def test_the_trace_is_read_by_label_relative_to_the_start_and_ordered_by_end(
    tmp_path: Path,
) -> None:
    trace = tmp_path / "trace"
    assert call_trace.read_trace(trace, since=0.0) == []
    trace.write_text(
        "105.5 108.0 32 11 embed\n100.5 104.0 32 12\n100.0 100.0 0 12 proc\n"
        "101.0 101.5 16 12 model\n\n"
    )
    # A line without a label is the embedder's (the trace's first format).
    assert call_trace.read_trace(trace, since=100.0) == [(0.5, 4.0, 32), (5.5, 8.0, 32)]
    assert call_trace.read_trace(trace, since=100.0, label="model") == [(1.0, 1.5, 16)]
    records = call_trace.read_records(trace, since=100.0)
    assert [r.label for r in records] == ["proc", "model", "embed", "embed"]
    assert records[0] == call_trace.Record(0.0, 0.0, 0, 12, "proc")


def test_the_hook_env_puts_the_site_dir_first_and_keeps_the_rest(tmp_path: Path) -> None:
    env = call_trace.hook_env(tmp_path / "t", {"PYTHONPATH": "/a:/b", "HOME": "/h"})
    assert env["PYTHONPATH"] == os.pathsep.join([str(call_trace.SITE_DIR), "/a:/b"])
    assert env[call_trace.TRACE_ENV] == str(tmp_path / "t") and env["HOME"] == "/h"
    assert (call_trace.SITE_DIR / "sitecustomize.py").is_file()
    assert call_trace.hook_env(tmp_path / "t", {})["PYTHONPATH"] == str(call_trace.SITE_DIR)


class _Tensor:
    shape = (5, 3, 224, 224)


@pytest.mark.parametrize(
    ("args", "kwargs", "rows"),
    [
        (([b"a", b"b"],), {}, 2),  # Embedder.embed_bytes(items)
        ((), {"pixel_values": _Tensor()}, 5),  # model(pixel_values=...)
        (({"image": [1, 2, 3], "path": ["a", "b", "c"]},), {}, 3),  # a Ray Data batch
        ((object(),), {}, 0),  # Embedder.__init__(settings)
        ((), {}, 0),
    ],
)
def test_the_rows_of_a_call(args: tuple[object, ...], kwargs: dict[str, object], rows: int) -> None:
    assert call_trace.rows_of(args, kwargs) == rows


def test_the_traced_method_records_start_end_rows_and_label(tmp_path: Path) -> None:
    class Fake:
        def embed_bytes(self, items: list[bytes], errors: object = None) -> tuple[int, object]:
            return len(items), errors

    trace = tmp_path / "trace"
    method = call_trace.traced(Fake.embed_bytes, str(trace), "model")
    assert method(Fake(), [b"a", b"b"], errors="e") == (2, "e")
    assert method(Fake(), []) == (0, None)
    lines = [line.split() for line in trace.read_text().splitlines()]
    assert [int(rows) for _, _, rows, _, _ in lines] == [2, 0]
    assert all(float(start) <= float(end) for start, end, *_ in lines)
    assert {(int(pid), label) for *_, pid, label in lines} == {(os.getpid(), "model")}


def test_a_call_nested_in_a_traced_call_is_traced_once(tmp_path: Path) -> None:
    """In transformers 5 a model's encoder is itself a ``PreTrainedModel``: one forward, one
    line."""

    class Model:
        def __init__(self, inner: Model | None = None):
            self.inner = inner

        def __call__(self, pixel_values: _Tensor) -> int:
            return 1 + (self.inner(pixel_values) if self.inner else 0)

    trace = tmp_path / "trace"
    Model.__call__ = call_trace.traced(Model.__call__, str(trace), "model")  # type: ignore[method-assign]
    assert Model(Model())(pixel_values=_Tensor()) == 2
    assert Model(Model())(pixel_values=_Tensor()) == 2
    assert [line.split()[2:] for line in trace.read_text().splitlines()] == [
        ["5", str(os.getpid()), "model"],
        ["5", str(os.getpid()), "model"],
    ]


def test_install_traces_the_process_start_and_patches_every_target_once(tmp_path: Path) -> None:
    trace = tmp_path / "trace"

    class Embedder:
        def __init__(self, settings: object) -> None:
            self.settings = settings

        def embed_bytes(self, items: list[bytes]) -> int:
            return len(items)

    module = types.ModuleType("embedding_job.model.embedder")
    module.Embedder = Embedder  # type: ignore[attr-defined]
    call_trace.patch(module, str(trace))
    call_trace.patch(module, str(trace))  # a second import hook must not wrap twice
    assert Embedder(None).embed_bytes([b"x", b"y", b"z"]) == 3
    labels = [line.split()[4] for line in trace.read_text().splitlines()]
    assert labels == ["load", "embed"]
    original = Embedder.embed_bytes.__wrapped__  # type: ignore[attr-defined]
    assert not getattr(original, "__bench_traced__", False)
    other = types.ModuleType("somewhere.else")
    other.Embedder = Embedder  # type: ignore[attr-defined]
    call_trace.patch(other, str(trace))  # not a target module: nothing more is wrapped
    Embedder(None).embed_bytes([b"x"])
    assert len(trace.read_text().splitlines()) == 4


def test_the_trace_reaches_a_fresh_process_that_runs_the_embedder(
    tmp_path: Path, models_root: Path
) -> None:
    """What the traced scenarios rely on: a process started with ``hook_env`` (as Daft's UDF
    workers and Ray's workers are, inheriting it) traces its start, the model load and every
    embedder and model call, the library untouched."""
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
    env = call_trace.hook_env(trace, {**os.environ, "HF_HUB_OFFLINE": "1"})
    run = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    records = call_trace.read_records(trace, since=0.0)
    assert [(r.label, r.rows) for r in records] == [
        ("proc", 0),
        ("load", 0),
        ("model", 1),  # the one good image; the null and the empty one never reach the model
        ("embed", 2),
        ("embed", 1),
    ]
    assert all(r.start <= r.end for r in records)
    assert {r.pid for r in records} == {int(run.stdout.split()[-1])}


def test_the_library_writes_no_trace_of_its_own(
    tmp_path: Path, models_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from embedding_job.model import embedder as embedder_module
    from tests.support.images import good_images

    trace = tmp_path / "trace"
    monkeypatch.setenv(call_trace.TRACE_ENV, str(trace))
    monkeypatch.setenv("EMBEDDING_JOB_TRACE_FILE", str(trace))  # the hook the library had
    embedder = embedder_module.Embedder(
        embedder_module.EmbedderSettings(model_dir=str(models_root / DINOV2))
    )
    vectors, errors = embedder.embed_bytes([good_images()["jpeg"]])
    assert vectors[0] is not None and errors == [None]
    assert not trace.exists()
    assert not hasattr(embedder_module, "TRACE_ENV")


@pytest.mark.parametrize("variant", ["datapath", "datapath_baseline"])
def test_data_path_variants_run_in_process(tmp_path: Path, models_root: Path, variant: str) -> None:
    paths = make_image_set(tmp_path / "images", 4)
    spec = WorkerSpec(
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
