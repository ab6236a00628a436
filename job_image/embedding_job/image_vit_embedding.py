"""``ImageViTEmbedding``: the original component's Daft UDF, argument for argument.

Usage, as in the original product page::

    df.with_column("embedding", ImageViTEmbedding(model_path=..., model_name=...)(col("image")))

Unlike the original, a bad image yields a null embedding for that row only (its reason is
logged); the other rows of the batch are embedded.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import daft
from daft import DataType, Series
from daft.io import IOConfig

from embedding_job.api import DownloadSpec, DType, ModelSpec, Pooling, SrcType
from embedding_job.io.cells import DeadHosts, resolve_inline, short_error
from embedding_job.io.io_config import io_config
from embedding_job.model.embedder import Embedder, EmbedderSettings
from embedding_job.model.files import locate_model

log = logging.getLogger(__name__)

_FETCH_THREADS = 16


def _fetch(url: Any, io: IOConfig, dead_hosts: DeadHosts) -> tuple[bytes | None, str | None]:
    """One URL's bytes under the job's download policy (input.download's defaults), or why not.

    A host that did not answer is not asked again by this worker (cells.DeadHosts).
    """
    if not isinstance(url, str) or not url:
        return None, "missing image (null)" if url is None else "missing image (empty URL)"
    earlier = dead_hosts.reason(url)
    if earlier is not None:
        return None, f"download failed: {earlier} (host {DeadHosts.host(url)} failed earlier)"
    try:
        with daft.open_file(url, "rb", io_config=io) as handle:
            data = handle.read()
    except Exception as exc:  # noqa: BLE001 - this row's error
        reason = short_error(exc)
        dead_hosts.record(url, reason)
        return None, "download failed: " + reason
    return (data, None) if data else (None, "download failed: empty response")


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
    ):
        self.src_type = SrcType(image_src_type)
        model_dir = locate_model(ModelSpec(name=model_name, path=model_path))
        self.embedder = Embedder(
            EmbedderSettings(
                model_dir=str(model_dir),
                dtype=DType(dtype),
                pooling=Pooling.CLS if use_cls_token_embedding else Pooling.MEAN,
                normalize=True,
                batch_size=int(batch_size),
                rank=int(rank),
            )
        )
        self._pool = (
            ThreadPoolExecutor(_FETCH_THREADS) if self.src_type is SrcType.IMAGE_URL else None
        )
        # The job's download policy and credentials (io_config), not Daft's defaults.
        self._io = io_config(DownloadSpec())
        self._dead_hosts = DeadHosts()

    @daft.method.batch(return_dtype=DataType.list(DataType.float32()))
    def __call__(self, images: Series) -> list[list[float] | None]:
        cells = images.to_pylist()
        if self._pool is not None:
            fetched = list(self._pool.map(lambda u: _fetch(u, self._io, self._dead_hosts), cells))
            items = [data for data, _ in fetched]
            errors = [err for _, err in fetched]
        else:
            items, errors = [], []
            for cell in cells:
                try:
                    items.append(resolve_inline(cell, self.src_type))
                    errors.append(None)
                except Exception as exc:  # noqa: BLE001 - this row only
                    items.append(None)
                    errors.append(str(exc))
        vectors, row_errors = self.embedder.embed_bytes(items, errors)
        for index, error in enumerate(row_errors):
            if error is not None:
                log.warning("ImageViTEmbedding: row %d: %s", index, error)
        return [None if v is None else v.tolist() for v in vectors]
