"""The original four models' real preprocessor configs against the original computation.

The weights are random (tests/hub_models.py) but the preprocessing is the real checkpoints':
ViT in21k ships ``"size": 224`` (a square for ViTImageProcessor), DINOv2 a shortest edge of 256
and a 224 centre crop. Images are photo-sized and non-square, decoded the job's default way
(JPEG draft decoding at ``jpegDraftFactor`` 2), in every mode whose handling differs between
decoders: transparency, EXIF rotation, 16-bit greyscale, palette, CMYK, greyscale.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embedding_job.api import (
    Device,
    DType,
    HighBitDepth,
    Pooling,
    PreprocessingSpec,
    Transparency,
)
from embedding_job.imaging.transform import ImageTransform
from embedding_job.model.embedder import Embedder, EmbedderSettings
from tests.support.embedding import as_opened, reference_embeddings
from tests.support.hub_models import ORIGINAL_MODELS
from tests.support.images import PHOTO_SIZES, mode_photos, photos
from tests.support.summary import report

TOLERANCE = 1e-4
#: Where the measured distances go in every run's output (tests/support/summary.py).
PARITY = f"parity with the original component: cosine distance (tolerance {TOLERANCE:g})"


@pytest.mark.parametrize("name", list(ORIGINAL_MODELS))
def test_the_real_config_gives_one_fixed_input_size(original_models: Path, name: str) -> None:
    transform = ImageTransform.from_pretrained(original_models / name)
    assert transform.output_size == (224, 224)
    if ORIGINAL_MODELS[name] == "vit":
        assert (transform.resize_to, transform.crop, transform.resample) == ((224, 224), None, 2)
    else:
        assert (transform.shortest_edge, transform.crop, transform.resample) == (256, (224, 224), 3)


def embed(
    model_dir: Path,
    images: list[bytes],
    pooling: Pooling = Pooling.CLS,
    options: PreprocessingSpec | None = None,
) -> np.ndarray:
    embedder = Embedder(
        EmbedderSettings(
            model_dir=str(model_dir),
            dtype=DType.FLOAT32,
            pooling=pooling,
            batch_size=4,
            device=Device.CPU,
            preprocessing=options or PreprocessingSpec(),
        )
    )
    vectors, errors = embedder.embed_bytes(images)
    assert errors == [None] * len(images)
    return np.stack(vectors)


def cosine_distance(ours: np.ndarray, expected: np.ndarray) -> np.ndarray:
    return np.asarray(
        1
        - (ours * expected).sum(axis=1)
        / (np.linalg.norm(ours, axis=1) * np.linalg.norm(expected, axis=1))
    )


@pytest.mark.parametrize("pooling", [Pooling.CLS, Pooling.MEAN])
@pytest.mark.parametrize("name", list(ORIGINAL_MODELS))
def test_non_square_photos_match_the_original_computation(
    original_models: Path, name: str, pooling: Pooling
) -> None:
    images = list(photos())
    ours = embed(original_models / name, images, pooling)
    expected = reference_embeddings(original_models / name, images, pooling is Pooling.CLS)
    distance = cosine_distance(ours, expected)
    report(PARITY, f"{name} {pooling.value}: max cosine distance {distance.max():.2e}")
    assert distance.max() <= TOLERANCE, dict(zip(PHOTO_SIZES, distance, strict=False))
    # The check means something only if the model tells these images apart by far more.
    similarity = expected @ expected.T
    apart = 1 - similarity[~np.eye(len(images), dtype=bool)].max()
    assert apart > 10 * TOLERANCE, apart


@pytest.mark.parametrize("name", list(ORIGINAL_MODELS))
def test_every_image_mode_matches_the_original_computation_by_default(
    original_models: Path, name: str
) -> None:
    # The pixels are what differs between modes: one pooling shows it (the photos test has both).
    modes = mode_photos()
    images = list(modes.values())
    ours = embed(original_models / name, images)
    expected = reference_embeddings(original_models / name, images, cls_token=True)
    distance = dict(zip(modes, cosine_distance(ours, expected), strict=True))
    report(PARITY, f"{name} cls: " + ", ".join(f"{k} {d:.2e}" for k, d in distance.items()))
    assert max(distance.values()) <= TOLERANCE, distance


#: Each option, and the images whose embedding it must change (and no other).
OPTIONS = {
    "exifOrientation": (PreprocessingSpec(exif_orientation=True), {"exif"}),
    "transparency: white": (
        PreprocessingSpec(transparency=Transparency.WHITE),
        {"rgba", "la", "palette"},
    ),
    "highBitDepth: scale": (PreprocessingSpec(high_bit_depth=HighBitDepth.SCALE), {"sixteen"}),
}


@pytest.mark.parametrize("option", list(OPTIONS))
@pytest.mark.parametrize("name", ["google/vit-base-patch16-224-in21k", "facebook/dinov2-base"])
def test_each_option_changes_exactly_the_images_it_is_about(
    original_models: Path, name: str, option: str
) -> None:
    options, affected = OPTIONS[option]
    modes = mode_photos()
    ours = embed(original_models / name, list(modes.values()), options=options)
    expected = reference_embeddings(original_models / name, list(modes.values()), True)
    distance = dict(zip(modes, cosine_distance(ours, expected), strict=True))
    report(PARITY, f"{name} {option}: " + ", ".join(f"{k} {d:.2e}" for k, d in distance.items()))
    assert {k for k, d in distance.items() if d > 10 * TOLERANCE} == affected, distance
    assert all(distance[k] <= TOLERANCE for k in modes if k not in affected), distance


@pytest.mark.parametrize("name", ["facebook/dinov2-base", "facebook/dinov2-large"])
def test_white_transparency_is_what_transformers_5_does_with_the_image_as_opened(
    original_models: Path, name: str
) -> None:
    # DINOv2's processor converts to RGB itself (do_convert_rgb); transformers 5 composites
    # transparency over white there. An index built that way is matched by this option.
    modes = mode_photos()
    images = list(modes.values())
    ours = embed(original_models / name, images, options=OPTIONS["transparency: white"][0])
    expected = reference_embeddings(original_models / name, images, True, load=as_opened)
    distance = dict(zip(modes, cosine_distance(ours, expected), strict=True))
    report(PARITY, f"{name} transparency white vs as opened: {max(distance.values()):.2e}")
    assert max(distance.values()) <= TOLERANCE, distance
