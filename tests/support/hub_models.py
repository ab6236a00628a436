"""The four original models' real preprocessor configs (tests/data/preprocessors, as the hub
ships them) on tiny random-init weights: a models root for parity checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from embedding_job.demo import TINY, make_random_model

PREPROCESSORS = Path(__file__).parents[1] / "data" / "preprocessors"

#: The original component's models and their architectures.
ORIGINAL_MODELS = {
    "google/vit-base-patch16-224-in21k": "vit",
    "google/vit-large-patch16-224-in21k": "vit",
    "facebook/dinov2-base": "dinov2",
    "facebook/dinov2-large": "dinov2",
}


def hub_preprocessor(name: str) -> Path:
    """The real ``preprocessor_config.json`` of one of the original models."""
    return PREPROCESSORS / name / "preprocessor_config.json"


@pytest.fixture(scope="session")
def original_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models root with all four original model names: random weights, real preprocessing.

    The weights are drawn 10x wider than transformers' default (initializer_range 0.2): with the
    default, a tiny model's CLS vector barely depends on the image (distinct images land within
    ~5e-4 of each other), too close to the 1e-4 parity tolerance for the check to mean much.
    """
    root = tmp_path_factory.mktemp("original-models")
    dims = {**TINY, "initializer_range": 0.2}
    for seed, (name, kind) in enumerate(ORIGINAL_MODELS.items()):
        config = hub_preprocessor(name)
        make_random_model(root / name, kind, size=dims, seed=seed, preprocessor_config=config)
    return root
