"""``ImageViTEmbedding``: the original component's Daft UDF, argument for argument.

Usage, as in the original product page::

    df.with_column("embedding", ImageViTEmbedding(model_path=..., model_name=...)(col("image")))

Unlike the original, a bad image yields a null embedding for that row only (its reason is
logged); the other rows of the batch are embedded. Two keyword arguments the original lacks take
the job's config sections, as objects or as their dicts (camelCase or snake_case keys):
``preprocessing`` (EXIF rotation, transparency, 16-bit images; the default is the original's
handling) and ``download`` (timeouts, retries and what a slow or dead host may cost).
"""

from __future__ import annotations

import logging
from typing import Any

import daft
from daft import DataType, Series

from embedding_job.api import DownloadSpec, DType, ModelSpec, Pooling, PreprocessingSpec, SrcType
from embedding_job.io.cells import image_items
from embedding_job.io.fetch import Fetcher, FetchSettings
from embedding_job.model.embedder import Embedder, EmbedderSettings
from embedding_job.model.files import locate_model

log = logging.getLogger(__name__)


@daft.cls(name_override="ImageViTEmbedding")
class ImageViTEmbedding:
    """Embed an ``image`` column (URLs, base64 or bytes) with a ViT/DINOv2 model → List[Float32]."""

    def __init__(
        self,
        image_src_type: str = "image_url",
        dtype: str = "float16",
        batch_size: int = 32,
        model_path: str = "/opt/aihc/models",
        model_name: str = "facebook/dinov2-large",
        use_cls_token_embedding: bool = True,
        rank: int = 0,
        *,
        preprocessing: PreprocessingSpec | dict[str, Any] | None = None,
        download: DownloadSpec | dict[str, Any] | None = None,
    ):
        self.src_type = SrcType(image_src_type)
        reads = DownloadSpec.model_validate(download or {})
        model_dir = locate_model(ModelSpec(name=model_name, path=model_path))
        self.embedder = Embedder(
            EmbedderSettings(
                model_dir=str(model_dir),
                dtype=DType(dtype),
                pooling=Pooling.CLS if use_cls_token_embedding else Pooling.MEAN,
                normalize=True,
                batch_size=int(batch_size),
                rank=int(rank),
                preprocessing=PreprocessingSpec.model_validate(preprocessing or {}),
                read_threads=reads.max_connections,
            )
        )
        # The job's download policy and credentials (EMBEDDING_JOB_HTTP_BEARER_TOKEN, AWS_*).
        self.fetcher = Fetcher(FetchSettings.from_env(reads))

    @daft.method.batch(return_dtype=DataType.list(DataType.float32()))
    def __call__(self, images: Series) -> list[list[float] | None]:
        items, errors = image_items(images.to_pylist(), self.src_type, self.fetcher)
        vectors, row_errors = self.embedder.embed_bytes(items, errors)
        for index, error in enumerate(row_errors):
            if error is not None:
                log.warning("ImageViTEmbedding: row %d: %s", index, error)
        return [None if v is None else v.tolist() for v in vectors]
