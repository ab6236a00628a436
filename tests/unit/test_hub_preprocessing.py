"""The original four models' real preprocessor configs against the original computation.

The weights are random (tests/hub_models.py) but the preprocessing is the real checkpoints':
ViT in21k ships ``"size": 224`` (a square for ViTImageProcessor), DINOv2 a shortest edge of 256
and a 224 centre crop. Images are photo-sized and non-square, decoded the job's default way
(JPEG draft decoding at ``jpegDraftFactor`` 2).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embedding_job.api import Device, DType, Pooling
from embedding_job.imaging.transform import ImageTransform
from embedding_job.model.embedder import Embedder, EmbedderSettings
from tests.support.embedding import reference_embeddings
from tests.support.hub_models import ORIGINAL_MODELS
from tests.support.images import PHOTO_SIZES, photos

TOLERANCE = 1e-4


@pytest.mark.parametrize("name", list(ORIGINAL_MODELS))
def test_the_real_config_gives_one_fixed_input_size(original_models: Path, name: str) -> None:
    transform = ImageTransform.from_pretrained(original_models / name)
    assert transform.output_size == (224, 224)
    if ORIGINAL_MODELS[name] == "vit":
        assert (transform.resize_to, transform.crop, transform.resample) == ((224, 224), None, 2)
    else:
        assert (transform.shortest_edge, transform.crop, transform.resample) == (256, (224, 224), 3)


@pytest.mark.parametrize("pooling", [Pooling.CLS, Pooling.MEAN])
@pytest.mark.parametrize("name", list(ORIGINAL_MODELS))
def test_non_square_photos_match_the_original_computation(
    original_models: Path, name: str, pooling: Pooling
) -> None:
    images = list(photos())
    embedder = Embedder(
        EmbedderSettings(
            model_dir=str(original_models / name),
            dtype=DType.FLOAT32,
            pooling=pooling,
            batch_size=4,
            device=Device.CPU,
        )
    )
    vectors, errors = embedder.embed_bytes(images)
    assert errors == [None] * len(images)
    ours = np.stack(vectors)
    expected = reference_embeddings(original_models / name, images, pooling is Pooling.CLS)
    distance = 1 - (ours * expected).sum(axis=1) / (
        np.linalg.norm(ours, axis=1) * np.linalg.norm(expected, axis=1)
    )
    print(f"{name} {pooling.value}: max cosine distance {distance.max():.2e}")
    assert distance.max() <= TOLERANCE, dict(zip(PHOTO_SIZES, distance, strict=False))
    # The check means something only if the model tells these images apart by far more.
    similarity = expected @ expected.T
    apart = 1 - similarity[~np.eye(len(images), dtype=bool)].max()
    assert apart > 10 * TOLERANCE, apart
