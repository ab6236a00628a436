"""The models the bench builds (random weights, real or small architectures) and their FLOPs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: The compute ceiling for ``tflops`` / ``fraction_of_peak``: about what an H100 sustains on
#: bf16 dense matrix multiplies (its data sheet's dense BF16 peak is higher: 989 TFLOP/s for the
#: SXM part). A reference figure, not measured by this bench; BENCHMARKS.md ("The GPU ceiling")
#: says where it comes from.
GPU_PEAK_TFLOPS = 790.0
#: Published GFLOP per 224 px image (2 per multiply-add).
KNOWN_GFLOPS = {
    "dinov2-large": 162.0,
    "dinov2-base": 46.3,
    "vit-base-patch16": 35.1,
    "vit-large-patch16": 123.1,
}
#: Architectures: (kind, hidden, layers, heads, mlp hidden).
Arch = tuple[str, int, int, int, int]
REAL_CONFIGS: dict[str, Arch] = {
    "vit-base-patch16": ("vit", 768, 12, 12, 3072),
    "dinov2-base": ("dinov2", 768, 12, 12, 3072),
    "dinov2-large": ("dinov2", 1024, 24, 16, 4096),
}
CPU_CONFIGS: dict[str, Arch] = {
    "dinov2-small4": ("dinov2", 384, 4, 6, 1536),
    "vit-tiny": ("vit", 32, 2, 2, 128),
    # The pipeline ceiling's near-zero-cost model: DINOv2's preprocessing, almost no compute.
    "dinov2-tiny": ("dinov2", 32, 1, 2, 128),
}
#: The second model of ``two_models``, (name, arch): CLIP ViT-B/32's vision tower (patch 32)
#: with the real configs, a small one on a CPU.
COMPANION: dict[str, tuple[str, Arch]] = {
    "real": ("clip-vit-b32", ("clip", 768, 12, 12, 3072)),
    "cpu": ("clip-small4", ("clip", 384, 4, 6, 1536)),
}


#: The real DINOv2 checkpoints' config.json values (facebook/dinov2-small, -base, -large, -giant
#: share them), the dimensions aside: 518 px position embeddings, interpolated at 224 px per
#: forward as in the real models.
DINOV2_CONFIG: dict[str, Any] = {
    "architectures": ["Dinov2Model"],
    "attention_probs_dropout_prob": 0.0,
    "drop_path_rate": 0.0,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.0,
    "image_size": 518,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-06,
    "layerscale_value": 1.0,
    "model_type": "dinov2",
    "num_channels": 3,
    "patch_size": 14,
    "qkv_bias": True,
    "use_swiglu_ffn": False,
}
#: The real checkpoints' preprocessor_config.json files (the tests' copies).
PREPROCESSORS = Path(__file__).resolve().parent.parent / "tests" / "data" / "preprocessors"


def dinov2_config(arch: Arch) -> dict[str, Any]:
    """A DINOv2 checkpoint's config.json values for ``arch``."""
    _, hidden, layers, heads, mlp = arch
    return {
        **DINOV2_CONFIG,
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "mlp_ratio": mlp // hidden,
    }


def make_real_model(directory: Path, name: str, arch: Arch) -> Path:
    """A random-init DINOv2 of ``arch`` with the real checkpoints' config values and, where the
    tests hold it, ``facebook/<name>``'s own preprocessor config, byte for byte."""
    from embedding_job.demo import make_random_model

    config = {
        k: v for k, v in dinov2_config(arch).items() if k not in ("architectures", "model_type")
    }
    real = PREPROCESSORS / "facebook" / name / "preprocessor_config.json"
    return make_random_model(
        directory, "dinov2", config, preprocessor_config=real if real.is_file() else None
    )


def make_model(models_root: Path, name: str, arch: Arch) -> Path:
    """A random-init model of ``arch`` under ``<models_root>/bench/<name>``: the real
    architecture for the real DINOv2 configs, the demo's builder otherwise."""
    from embedding_job.demo import make_random_model

    if name in REAL_CONFIGS and arch[0] == "dinov2":
        return make_real_model(models_root / "bench" / name, name, arch)

    kind, hidden, layers, heads, mlp = arch
    dims = {
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "intermediate_size": mlp,
    }
    if kind == "dinov2":
        dims["mlp_ratio"] = mlp // hidden
    return make_random_model(models_root / "bench" / name, kind, dims)


def flops_per_image(model_dir: Path) -> float:
    """Forward FLOPs (2 per multiply-add) of a ViT/DINOv2 encoder (or an image-text model's
    vision tower) at its 224 px input."""
    from embedding_job.model.families import read_checkpoint

    # Through transformers' config class: a CLIP config.json leaves out default sizes.
    config = read_checkpoint(Path(model_dir)).vision
    hidden = int(config["hidden_size"])
    layers = int(config["num_hidden_layers"])
    patch = int(config["patch_size"])
    if config.get("model_type") == "dinov2":
        mlp = int(hidden * float(config.get("mlp_ratio", 4)))
    else:
        mlp = int(config["intermediate_size"])
    patches = (224 // patch) ** 2
    tokens = patches + 1
    per_layer = 2 * tokens * (4 * hidden * hidden + 2 * hidden * mlp) + 4 * tokens * tokens * hidden
    embed = 2 * patches * (3 * patch * patch) * hidden
    return float(layers * per_layer + embed)
