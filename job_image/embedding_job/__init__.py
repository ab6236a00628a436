"""embedding_job: batch image embedding with ViT-family models on Daft + Ray.

``embedding_job.api`` (the spec contract) imports nothing heavy. ``ImageViTEmbedding``, the
seed-compatible Daft UDF, is loaded on first use so that importing the package stays light.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ImageViTEmbedding", "__version__"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "ImageViTEmbedding":
        from embedding_job.image_vit_embedding import ImageViTEmbedding

        return ImageViTEmbedding
    raise AttributeError(f"module 'embedding_job' has no attribute {name!r}")
