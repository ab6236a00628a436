"""The job's Prometheus metrics, exported by a Ray node as on a KubeRay pod, read back by
scraping its metrics export port while the job runs: a job of two models, whose rows are
counted once and whose model time is each model's."""

from __future__ import annotations

import json
from pathlib import Path

from embedding_job.demo import make_sample_images
from embedding_job.run import metrics
from tests.support.hub_models import CLIP
from tests.support.jobs import CLI_TIMEOUT, job, start_cli, write_config
from tests.support.models import DINOV2
from tests.support.ray_head import RayHead, ray_head
from tests.support.scrape import Samples, scrape, value
from tests.support.waiting import wait_for

IMAGES, BAD_EVERY = 96, 8


def test_a_ray_run_exports_rows_latency_and_stage_times(
    tmp_path: Path, models_root: Path, family_models: Path
) -> None:
    images = tmp_path / "images"
    for index, image in enumerate(make_sample_images(images, count=IMAGES)):
        if index % BAD_EVERY == 0:
            image.write_bytes(b"not an image")
    # Many small calls: a worker's metrics reach the node's exporter at its next flush (every
    # second here, ray_head), and a job's last calls may end with the worker before that.
    config = job(models_root, f"{images}/", tmp_path / "out", inference={"callBatchSize": 4})
    config["input"].pop("idColumn")
    del config["model"]
    config["models"] = [
        {"name": DINOV2, "path": str(models_root), "dtype": "float16"},
        {"name": CLIP, "path": str(family_models), "dtype": "float32"},
    ]
    path = write_config(tmp_path / "job.yaml", config)
    # Rows and calls are the job's (its models named together); model time is each model's.
    labels = {"embedding_job": "scraped", "model": f"{DINOV2}, {CLIP}"}
    rows, stages = f"ray_{metrics.ROWS}_total", f"ray_{metrics.STAGE_SECONDS}_total"
    batches = f"ray_{metrics.BATCH_SECONDS}"
    wanted = [
        (rows, {"outcome": "embedded"}),
        (rows, {"outcome": "failed"}),
        (f"{batches}_count", {}),
        (f"{batches}_sum", {}),
        (stages, {"stage": "decode"}),
    ]
    with ray_head(tmp_path / "ray") as head:
        env = {**head.env, "EMBEDDING_JOB_NAME": "scraped", "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"}
        log = tmp_path / "job.log"
        run = start_cli("run", "--config", str(path), "--runner", "ray", env=env, log=log)
        try:

            def exported() -> Samples | None:
                try:
                    samples = scrape(head.metrics_url)[1]
                except OSError:  # the exporter, busy starting workers, reset the connection
                    return None
                every = all(value(samples, name, **labels, **more) > 0 for name, more in wanted)
                every = every and all(
                    value(samples, stages, embedding_job="scraped", model=model, stage="model") > 0
                    for model in (DINOV2, CLIP)
                )
                return samples if every else None

            # Counters from a worker that has ended stay exported: polling may outlast the job.
            samples = wait_for(
                exported,
                timeout=CLI_TIMEOUT,
                interval=1,
                message=lambda: (
                    f"the job's metrics; the node exports {job_samples(head)}; "
                    f"the job {'ended' if run.poll() is not None else 'runs'}: "
                    f"{log.read_text(errors='replace')[-3000:]}"
                ),
            )
            assert run.wait(CLI_TIMEOUT) == 0, log.read_text(errors="replace")[-4000:]
        finally:
            if run.poll() is None:
                run.kill()
                run.wait()
    bad = IMAGES // BAD_EVERY
    # Each row once: counted per model, the two models would pass IMAGES - bad.
    assert value(samples, rows, outcome="embedded", **labels) <= IMAGES - bad
    assert value(samples, rows, outcome="failed", **labels) <= bad
    assert value(samples, rows, embedding_job="scraped") == value(samples, rows, **labels)
    # The manifest says what the CPU worker computed each model with, not what was asked.
    manifest = json.loads((tmp_path / "out" / "_manifest.json").read_text())
    used = [(e["model"], e["device"], e["dtype"]) for e in manifest["embeddings"]]
    assert used == [(DINOV2, "cpu", "float32"), (CLIP, "cpu", "float32")]
    assert manifest["config"]["models"][0]["dtype"] == "float16"
    assert (manifest["rowsEmbedded"], manifest["rowsFailed"]) == (IMAGES - bad, bad)


def job_samples(head: RayHead) -> Samples:
    return {key: v for key, v in scrape(head.metrics_url)[1].items() if "embedding_job" in key[0]}
