"""The bench's traced runs on the real pipeline, tiny sizes: the pipeline ceiling's input modes
(a loopback web server, moto's S3 server, Parquet tables), one mode through ``embedding-job
run``, the start-up scenario and a peer's script. What they measure is for ``make bench``; these
check that each run is traced end to end and reports what the goals are computed from."""

from __future__ import annotations

import base64
import contextlib
import itertools
import math
import urllib.request
from dataclasses import replace

import pyarrow.parquet as pq
import pytest

from bench.inputs import MODES, Inputs
from bench.scenario import Context
from bench.scenarios.ceiling import CeilingScenario
from bench.scenarios.daft_pipeline import JobSetup, images_glob, run_cli_once
from bench.scenarios.peers import PeerScenario
from bench.scenarios.startup import StartupScenario
from embedding_job.demo import TINY, make_random_model, make_sample_images


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> Context:
    """Four sample images and a tiny DINOv2 under a bench models root."""
    workdir = tmp_path_factory.mktemp("bench")
    paths = make_sample_images(workdir / "images", count=4)
    make_random_model(workdir / "models" / "bench" / "tiny", "dinov2", TINY)
    return Context(
        workdir=workdir,
        paths=paths,
        models_root=workdir / "models",
        model_name="tiny",
        device="cpu",
        dtype="float32",
        min_seconds=0.0,
        draft_factor=2.0,
        batch_size=1,
        call_batch_size=1,
        decode_threads=2,
    )


def test_every_input_mode_holds_the_same_images(context: Context) -> None:
    originals = {p.name: p.read_bytes() for p in context.paths}
    with contextlib.ExitStack() as services:
        inputs = Inputs(context.paths, context.workdir, services)
        sources = {mode: inputs.source(mode) for mode in MODES}
        assert sources["local"] == (
            {"uri": str(context.paths[0].parent), "format": "images-glob"},
            {},
        )
        http, _ = sources["http"]
        urls = pq.read_table(http["uri"]).to_pydict()
        assert http["srcType"] == "image_url" and urls["id"] == list(originals)
        with urllib.request.urlopen(urls["image"][0]) as response:
            assert response.read() == originals[urls["id"][0]]
        s3, env = sources["s3"]
        assert s3["uri"].startswith("s3://") and s3["format"] == "images-glob"
        assert env["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
        for mode, decode in (("binary", bytes), ("base64", base64.b64decode)):
            spec, _ = sources[mode]
            table = pq.read_table(spec["uri"]).to_pydict()
            assert spec["srcType"] == f"image_{mode}"
            assert dict(zip(table["id"], map(decode, table["image"]), strict=True)) == originals
        assert inputs.source("http") is sources["http"]  # made once per bench run
    with pytest.raises(OSError):
        urllib.request.urlopen(urls["image"][0], timeout=5)  # the server has stopped


# The modes whose images the job's workers fetch or decode themselves (issue 14).
@pytest.mark.parametrize("mode", ["base64", "http", "s3"])
def test_a_ceiling_mode_runs_the_job_traced(context: Context, mode: str) -> None:
    with contextlib.ExitStack() as services:
        ceiling = replace(context, inputs=Inputs(context.paths, context.workdir, services))
        figures = CeilingScenario(f"ceiling_{mode}", mode).run(ceiling)
    assert figures["input_mode"] == mode and figures["images"] == 4 and figures["failed"] == 0
    # Four calls of one row: the steady window is the last two.
    assert figures["images_per_s"] > 0 and 0 < figures["embedder_busy_fraction"] <= 1
    assert figures["model_steady_images_per_s"] > 0
    startup = figures["startup"]
    assert 0 < startup["worker_started_s"] < startup["first_model_call_s"]
    assert startup["first_batch_done_s"] <= startup["end_s"]


def test_the_start_up_scenario_counts_one_model_load_per_worker(context: Context) -> None:
    figures = StartupScenario().run(replace(context, batch_size=2))
    assert figures["images"] == 4 and figures["workers"] == 1 and figures["model_loads"] == 1
    steps = figures["startup"]
    assert steps["embedder_in_command"] is True  # no worker process: one import of torch
    order = ["worker_started_s", "model_load_started_s", "model_loaded_s", "first_model_call_s"]
    assert [steps[k] for k in order] == sorted(steps[k] for k in order)
    assert steps["model_loaded_s"] <= steps["first_batch_done_s"] <= steps["end_s"]
    assert steps["first_file_s"] is not None and steps["first_file_s"] <= steps["end_s"]


def test_the_native_runs_calls_take_turns_on_one_model_in_the_jobs_own_process(
    context: Context,
) -> None:
    """Daft calls the in-process UDF from two of its threads (pipeline.in_process_cpus): the
    calls share one model load and never overlap on it (shared_worker's turn)."""
    setup = JobSetup.of(context)  # batches of one image: four calls
    source = images_glob(context.paths[0].parent)
    run, summary = run_cli_once("native", source, context.workdir / "out-turns", setup)
    assert summary["rowsIn"] == 4 and summary["rowsFailed"] == 0
    calls = sorted((r for r in run.records if r.label == "embed"), key=lambda r: r.start)
    assert len(calls) == 4 and {r.pid for r in calls} == {run.pid}
    assert all(before.end <= after.start for before, after in itertools.pairwise(calls))
    assert [r.pid for r in run.records if r.label == "load"] == [run.pid]


def test_a_peer_script_runs_traced_like_the_job(context: Context) -> None:
    figures = PeerScenario("peer_torch_loop", "torch_loop").run(context)
    assert figures["images"] == 4 and figures["end_to_end_images_per_s"] > 0
    # One model call per image (batches of 1): counted from the model's batch ends, as the job.
    assert figures["images_per_s"] == figures["model_steady_images_per_s"] > 0
    assert not math.isnan(figures["startup"]["first_model_call_s"])
    again = PeerScenario("peer_torch_loop", "torch_loop").run(context)  # its output replaced
    assert again["images"] == 4
