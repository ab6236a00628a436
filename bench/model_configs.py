"""The models the bench builds (random weights, real or small architectures) and their FLOPs."""

from __future__ import annotations

from pathlib import Path

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
}
#: The second model of ``two_models``, (name, arch): CLIP ViT-B/32's vision tower (patch 32)
#: with the real configs, a small one on a CPU.
COMPANION: dict[str, tuple[str, Arch]] = {
    "real": ("clip-vit-b32", ("clip", 768, 12, 12, 3072)),
    "cpu": ("clip-small4", ("clip", 384, 4, 6, 1536)),
}


def make_model(models_root: Path, name: str, arch: Arch) -> Path:
    """A random-init model of ``arch`` under ``<models_root>/bench/<name>``."""
    from embedding_job.demo import make_random_model

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
