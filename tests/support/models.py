"""The tiny random-init models the tests embed with, under two of the original model names."""

from __future__ import annotations

from pathlib import Path

from embedding_job.demo import make_random_model
from tests.support.hub_models import hub_preprocessor

VIT = "google/vit-base-patch16-224-in21k"
DINOV2 = "facebook/dinov2-base"


def make_models(root: Path) -> Path:
    """A models root holding a tiny ViT and a tiny DINOv2 (no model hub), each with the real
    checkpoint's preprocessor_config.json."""
    make_random_model(root / VIT, "vit", seed=1, preprocessor_config=hub_preprocessor(VIT))
    make_random_model(root / DINOV2, "dinov2", seed=2, preprocessor_config=hub_preprocessor(DINOV2))
    return root
