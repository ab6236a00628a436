"""Model families beyond the original four: what each checkpoint is, the pooling it means, and
its vectors against the family's own computation in transformers (tests/support/embedding.py).

Tiny random-init checkpoints of each family (tests/support/hub_models.py) carry the real
preprocessor configs of openai/clip-vit-base-patch32, google/siglip-base-patch16-224 and
facebook/dinov3-vits16-pretrain-lvd1689m; images are photo-sized, non-square and decoded the
job's default way (JPEG draft decoding at jpegDraftFactor 2), as for the original four.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from embedding_job.api import Device, DType, Pooling
from embedding_job.errors import ModelNotUsableError
from embedding_job.imaging.transform import ImageTransform
from embedding_job.model.embedder import Embedder, EmbedderSettings
from embedding_job.model.families import Kind, parameter_names, read_checkpoint
from tests.support.embedding import family_reference
from tests.support.hub_models import FAMILY_MODELS, ORIGINAL_MODELS
from tests.support.images import good_images, photos

TOLERANCE = 1e-4
CLIP, SIGLIP, DINOV3 = list(FAMILY_MODELS)[:3]
TOWER, DEIT = list(FAMILY_MODELS)[3:]

#: (model, kind, family, default pooling, width of that pooling) for the tiny models.
EXPECTED = [
    (CLIP, Kind.IMAGE_TEXT, "clip image-text", Pooling.PROJECTED, 16),
    (SIGLIP, Kind.IMAGE_TEXT, "siglip image-text", Pooling.PROJECTED, 32),
    (DINOV3, Kind.BACKBONE, "dinov3_vit backbone", Pooling.CLS, 32),
    (TOWER, Kind.VISION_TOWER, "clip_vision_model vision-tower", Pooling.PROJECTED, 16),
    (DEIT, Kind.BACKBONE, "deit backbone", Pooling.CLS, 32),
]


@pytest.mark.parametrize(("name", "kind", "family", "pooling", "dim"), EXPECTED)
def test_each_checkpoint_is_told_apart_by_what_it_is(
    family_models: Path, name: str, kind: Kind, family: str, pooling: Pooling, dim: int
) -> None:
    checkpoint = read_checkpoint(family_models / name)
    assert (checkpoint.kind, checkpoint.family) == (kind, family)
    assert checkpoint.resolve_pooling(Pooling.AUTO) is pooling
    assert checkpoint.dim(pooling) == dim


@pytest.mark.parametrize("name", list(ORIGINAL_MODELS))
def test_auto_is_the_cls_token_for_the_original_four(original_models: Path, name: str) -> None:
    checkpoint = read_checkpoint(original_models / name)
    assert checkpoint.kind is Kind.BACKBONE and checkpoint.has_cls_token
    assert checkpoint.resolve_pooling(Pooling.AUTO) is Pooling.CLS
    assert checkpoint.dim(Pooling.CLS) == checkpoint.dim(Pooling.MEAN) == 32


def test_the_real_preprocessor_configs_give_the_family_preprocessing(family_models: Path) -> None:
    clip = ImageTransform.from_pretrained(family_models / CLIP)  # "size": 224 is an edge here
    assert (clip.shortest_edge, clip.crop, clip.resample) == (224, (224, 224), 3)
    assert clip.mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))
    siglip = ImageTransform.from_pretrained(family_models / SIGLIP)
    assert (siglip.resize_to, siglip.crop, siglip.resample) == ((224, 224), None, 3)
    assert siglip.mean == siglip.std == (0.5, 0.5, 0.5)
    # DINOv3's processor class needs torchvision (absent here): read from the file as saved.
    dinov3 = ImageTransform.from_pretrained(family_models / DINOV3)
    assert (dinov3.resize_to, dinov3.crop, dinov3.resample) == ((224, 224), None, 2)


@pytest.mark.parametrize(
    ("name", "kind", "pooling"),
    [
        (CLIP, "clip", Pooling.PROJECTED),
        (CLIP, "clip", Pooling.CLS),
        (SIGLIP, "siglip", Pooling.PROJECTED),
        (SIGLIP, "siglip", Pooling.MEAN),
        (SIGLIP, "siglip", Pooling.POOLER),  # its image features are its vision pooler
        (DINOV3, "dinov3", Pooling.CLS),
        (DINOV3, "dinov3", Pooling.MEAN),
        (TOWER, "clip-vision", Pooling.PROJECTED),
        (DEIT, "deit", Pooling.CLS),
    ],
)
def test_each_family_matches_its_reference_computation(
    family_models: Path, name: str, kind: str, pooling: Pooling
) -> None:
    images = list(photos())
    settings = EmbedderSettings(
        model_dir=str(family_models / name),
        dtype=DType.FLOAT32,
        pooling=pooling,
        batch_size=4,
        device=Device.CPU,
    )
    vectors, errors = Embedder(settings).embed_bytes(images)
    assert errors == [None] * len(images)
    ours = np.stack(vectors)
    expected = family_reference(family_models / name, kind, images, pooling.value)
    assert ours.shape == expected.shape
    distance = 1 - (ours * expected).sum(axis=1)
    print(f"{name} {pooling.value}: max cosine distance {distance.max():.2e}")
    assert distance.max() <= TOLERANCE, distance
    # Meaningful only if the model tells these images apart by far more than the tolerance.
    similarity = expected @ expected.T
    apart = 1 - similarity[~np.eye(len(images), dtype=bool)].max()
    assert apart > 10 * TOLERANCE, apart


def test_auto_embeds_with_the_family_default(family_models: Path) -> None:
    image = [good_images()["jpeg"]]

    def embed(pooling: Pooling) -> np.ndarray:
        settings = EmbedderSettings(
            model_dir=str(family_models / CLIP), dtype=DType.FLOAT32, pooling=pooling
        )
        vectors, _ = Embedder(settings).embed_bytes(image)
        assert vectors[0] is not None
        return vectors[0]

    np.testing.assert_array_equal(embed(Pooling.AUTO), embed(Pooling.PROJECTED))


@pytest.mark.parametrize(
    ("name", "pooling", "message"),
    [
        (SIGLIP, Pooling.CLS, "has no CLS token"),
        (DINOV3, Pooling.PROJECTED, "projected needs an image-text model"),
        (DEIT, Pooling.PROJECTED, "projected needs an image-text model"),
    ],
)
def test_a_pooling_the_model_lacks_is_refused_before_loading(
    family_models: Path, name: str, pooling: Pooling, message: str
) -> None:
    with pytest.raises(ModelNotUsableError, match=message):
        read_checkpoint(family_models / name).resolve_pooling(pooling)


def test_a_model_that_is_not_a_token_vision_model_is_refused_saying_why(tmp_path: Path) -> None:
    from transformers import BertConfig, BertModel, ResNetConfig, ResNetModel

    text = BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2)
    BertModel(text).save_pretrained(tmp_path / "bert")
    with pytest.raises(ModelNotUsableError, match="BertModel does not take images"):
        read_checkpoint(tmp_path / "bert")
    # A CNN takes images, but its output is a feature map with no width in its config.
    cnn = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1])
    ResNetModel(cnn).save_pretrained(tmp_path / "resnet")
    checkpoint = read_checkpoint(tmp_path / "resnet")
    pooling = checkpoint.resolve_pooling(Pooling.AUTO)
    assert pooling is Pooling.MEAN  # no CLS token among its weights
    with pytest.raises(ModelNotUsableError, match="no embedding width"):
        checkpoint.dim(pooling)


def test_the_cls_token_is_read_from_the_weights_names(family_models: Path, tmp_path: Path) -> None:
    names = parameter_names(family_models / SIGLIP)
    assert names and not any("cls_token" in n or "class_embedding" in n for n in names)
    assert any(n.endswith("class_embedding") for n in parameter_names(family_models / CLIP) or [])
    # Sharded checkpoints name their parameters in the index; .bin checkpoints not at all.
    index = {"weight_map": {"embeddings.cls_token": "a.safetensors", "x.weight": "a.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    assert parameter_names(tmp_path) == ["embeddings.cls_token", "x.weight"]
    assert parameter_names(tmp_path / "nothing") is None
