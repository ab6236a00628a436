"""An EmbeddingJob with a CLIP-style and a DINOv2 model in one spec, through the operator,
KubeRay and Ray (real pods on the ``node`` provider): both embeddings written, each equal to
the model's own computation on the host, each model's settings kept apart."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from embedding_job.api import Device, DType, Pooling
from embedding_job.model.embedder import Embedder, EmbedderSettings
from tests.e2e.checks import note
from tests.e2e.steps import embedding_job, stage_images, wait_terminal
from tests.support.hub_models import CLIP
from tests.support.jobs import read_manifest, read_output
from tests.support.models import DINOV2
from tests.support.providers import Provider


def test_a_clip_and_a_dinov2_model_in_one_job_write_both_embeddings(
    provider: Provider, namespace: str, models: Path
) -> None:
    folder = stage_images(provider, namespace, count=7)
    each = {"path": str(models), "dtype": "float32", "pooling": "auto"}
    spec = {
        "models": [
            {"name": CLIP, "alias": "clip", "batchSize": 3, **each},
            {"name": DINOV2, "alias": "dino", "batchSize": 5, **each},
        ]
    }
    manifest = embedding_job(provider, namespace, "two", str(folder) + "/", models, spec=spec)
    del manifest["spec"]["model"]  # the list replaces the one model
    provider.cluster.apply(manifest)

    status = wait_terminal(provider, namespace, "two")["status"]
    assert status["phase"] == "Succeeded", status
    assert status["model"] == f"{CLIP}, {DINOV2}"  # kubectl get ej's MODEL column
    assert status["progress"]["rowsDone"] == status["progress"]["rowsTotal"] == 7, status
    uri = status["output"]["uri"]
    out = read_output(uri)
    assert all(e is None for e in out["embedding_error"]), out["embedding_error"]
    written = read_manifest(Path(uri))
    assert [(e["column"], e["model"], e["pooling"]) for e in written["embeddings"]] == [
        ("embedding_clip", CLIP, "projected"),
        ("embedding_dino", DINOV2, "cls"),
    ], written["embeddings"]

    images = [Path(urlparse(p).path).read_bytes() for p in out["path"]]  # file:/… paths
    for column, name in [("embedding_clip", CLIP), ("embedding_dino", DINOV2)]:
        settings = EmbedderSettings(
            model_dir=str(models / name),
            dtype=DType.FLOAT32,
            pooling=Pooling.AUTO,
            batch_size=8,
            device=Device.CPU,
        )
        expected, errors = Embedder(settings).embed_bytes(images)
        assert errors == [None] * len(images)
        vectors = np.asarray(out[column], dtype=np.float32)
        assert vectors.shape == (7, np.asarray(expected[0]).shape[0]), vectors.shape
        np.testing.assert_allclose(vectors, np.stack(expected), atol=1e-5)  # type: ignore[arg-type]
    widths = {e["column"]: e["embeddingDim"] for e in written["embeddings"]}
    assert widths == {c: len(out[c][0]) for c in widths}, widths
    # kubectl get ej says the same: each model's column, width and pooling.
    told = {e["column"]: (e["embeddingDim"], e["pooling"]) for e in status["output"]["embeddings"]}
    assert told == {e["column"]: (e["embeddingDim"], e["pooling"]) for e in written["embeddings"]}
    note(f"two: {CLIP} and {DINOV2} in one job, 7 rows each, widths {widths}")
