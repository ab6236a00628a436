"""Real checkpoints' preprocessor configs (tests/data/preprocessors, as the hub ships them) on
tiny random-init weights: models roots for parity checks.

The original four were copied from the hub. The hub is out of reach here, so the CLIP, SigLIP
and DINOv3 files were written from what those checkpoints publish, each setting checked
against transformers' own processor defaults for the family in the installed package
(CLIPImageProcessorPil: shortest edge 224, crop 224, bicubic, OPENAI_CLIP_MEAN/STD;
SiglipImageProcessorPil: 224x224, bicubic, 0.5/0.5; DINOv3ViTImageProcessor: 224x224,
bilinear, ImageNet mean/std) and against public code that quotes the files: clip-vit-base-patch32
keeps its original feature-extractor form (``"size": 224``, ``"crop_size": 224``, ints).
"""

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


#: Further families, as make_random_model builds them, with real preprocessing where the
#: name is a real checkpoint's (the tower with a projection and DeiT get generated configs).
FAMILY_MODELS = {
    "openai/clip-vit-base-patch32": "clip",
    "google/siglip-base-patch16-224": "siglip",
    "facebook/dinov3-vits16-pretrain-lvd1689m": "dinov3",
    "tiny/clip-vision-with-projection": "clip-vision",
    "tiny/deit": "deit",
}
#: The CLIP model of ``family_models``: the second model of the tests of several models.
CLIP = next(name for name, kind in FAMILY_MODELS.items() if kind == "clip")


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


@pytest.fixture(scope="session")
def family_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models root with one tiny model of each further family (FAMILY_MODELS), real
    preprocessing where there is a real file, weights drawn wide as in ``original_models``."""
    root = tmp_path_factory.mktemp("family-models")
    # CLIP and SigLIP scale their initialisation by initializer_factor (ignored by the others).
    dims = {**TINY, "initializer_range": 0.2, "initializer_factor": 2.0}
    for seed, (name, kind) in enumerate(FAMILY_MODELS.items(), start=10):
        config = hub_preprocessor(name)
        real = config if config.is_file() else None
        make_random_model(root / name, kind, size=dims, seed=seed, preprocessor_config=real)
    return root
