"""The embedder against the original component's computation (shared/ANCHORS.md)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from embedding_job.api import Device, DType, Pooling
from embedding_job.demo import encode, sample_image
from embedding_job.imaging.datapath import available_cpus
from embedding_job.model.embedder import Embedder, EmbedderSettings
from tests.support.embedding import reference_embeddings
from tests.support.images import bad_images, good_images
from tests.support.models import DINOV2, VIT

SIZES = [(500, 375), (375, 500), (224, 224), (640, 333), (97, 130)]


@pytest.mark.parametrize("name", [VIT, DINOV2])
@pytest.mark.parametrize("pooling", [Pooling.CLS, Pooling.MEAN])
def test_parity_with_the_reference_computation(
    models_root: Path, name: str, pooling: Pooling
) -> None:
    images = [encode(sample_image(i, size), "JPEG", quality=92) for i, size in enumerate(SIZES)]
    embedder = Embedder(
        EmbedderSettings(
            model_dir=str(models_root / name),
            dtype=DType.FLOAT32,
            pooling=pooling,
            batch_size=2,
            device=Device.CPU,
        )
    )
    vectors, errors = embedder.embed_bytes(images)
    assert errors == [None] * len(images)
    ours = np.stack(vectors)
    expected = reference_embeddings(models_root / name, images, pooling is Pooling.CLS)
    cosine = (ours * expected).sum(axis=1) / (
        np.linalg.norm(ours, axis=1) * np.linalg.norm(expected, axis=1)
    )
    assert np.all(1 - cosine < 1e-4), 1 - cosine
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, rtol=1e-5)


def test_a_bad_row_never_costs_its_neighbours(models_root: Path) -> None:
    good = good_images()
    bad = bad_images()
    items: list[bytes | None] = [
        good["jpeg"],
        bad["truncated"],
        good["cmyk"],
        None,
        bad["random"],
        good["sixteen"],
        bad["empty"],
    ]
    embedder = Embedder(
        EmbedderSettings(model_dir=str(models_root / DINOV2), dtype=DType.FLOAT32, batch_size=2)
    )
    vectors, errors = embedder.embed_bytes(items)
    assert [v is None for v in vectors] == [False, True, False, True, True, False, True]
    assert [e is None for e in errors] == [v is not None for v in vectors]
    assert "corrupt" in errors[1] and "null" in errors[3] and "not an image" in errors[4]
    alone, _ = embedder.embed_bytes([good["cmyk"]])
    np.testing.assert_allclose(vectors[2], alone[0], atol=1e-5)


def test_upstream_errors_are_kept(models_root: Path) -> None:
    embedder = Embedder(EmbedderSettings(model_dir=str(models_root / VIT), dtype=DType.FLOAT32))
    vectors, errors = embedder.embed_bytes(
        [None, good_images()["png"]], ["download failed: 404", None]
    )
    assert vectors[0] is None and errors[0] == "download failed: 404"
    assert vectors[1] is not None and vectors[1].shape == (32,)


def test_half_precision_on_cpu_falls_back_to_float32(
    models_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    embedder = Embedder(
        EmbedderSettings(model_dir=str(models_root / VIT), dtype=DType.FLOAT16, device=Device.AUTO)
    )
    assert embedder.device.type == "cpu" or torch.cuda.is_available()
    if embedder.device.type == "cpu":
        assert embedder.dtype == torch.float32
        assert next(embedder.model.parameters()).dtype == torch.float32
        assert "using float32" in caplog.text


def test_a_cpu_worker_runs_torch_on_the_threads_it_was_given(models_root: Path) -> None:
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        settings = EmbedderSettings(
            model_dir=str(models_root / VIT), dtype=DType.FLOAT32, device=Device.CPU
        )
        Embedder(settings)
        assert torch.get_num_threads() == 2  # None keeps torch's setting
        vectors, _ = Embedder(dataclasses.replace(settings, cpu_threads=1)).embed_bytes(
            [good_images()["jpeg"]]
        )
        assert torch.get_num_threads() == 1 and vectors[0] is not None
        Embedder(dataclasses.replace(settings, cpu_threads=0))
        assert torch.get_num_threads() == available_cpus()
    finally:
        torch.set_num_threads(before)


def test_loading_is_quiet_unless_the_checkpoint_lacks_weights(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import json

    from embedding_job.demo import make_random_model

    model_dir = make_random_model(tmp_path / "vit", "vit", seed=3)
    with caplog.at_level("WARNING"):
        Embedder(EmbedderSettings(model_dir=str(model_dir), dtype=DType.FLOAT32))
    assert not [r for r in caplog.records if "randomly initialised" in r.getMessage()]
    # A config asking for one more layer than the weights hold: that layer would be random.
    config = json.loads((model_dir / "config.json").read_text())
    config["num_hidden_layers"] += 1
    (model_dir / "config.json").write_text(json.dumps(config))
    caplog.clear()
    with caplog.at_level("WARNING"):
        Embedder(EmbedderSettings(model_dir=str(model_dir), dtype=DType.FLOAT32))
    (warning,) = [
        r.getMessage() for r in caplog.records if "randomly initialised" in r.getMessage()
    ]
    assert f"layers.{config['num_hidden_layers'] - 1}." in warning
