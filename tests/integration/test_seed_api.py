"""The original component's usage: ImageViTEmbedding(...) inside with_column."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import daft
import numpy as np
from daft import col

from embedding_job import ImageViTEmbedding
from embedding_job.api import DType, PreprocessingSpec
from embedding_job.model.embedder import Embedder, EmbedderSettings
from tests.support.images import good_images
from tests.support.models import DINOV2, VIT
from tests.support.slow_hosts import BadHost


def test_seed_style_usage_with_urls(models_root: Path, web_root: tuple[Path, str]) -> None:
    www, base = web_root
    (www / "a.jpg").write_bytes(good_images()["jpeg"])
    (www / "b.png").write_bytes(good_images()["rgba"])
    df = daft.from_pydict({"image": [f"{base}/a.jpg", f"{base}/missing.jpg", f"{base}/b.png"]})
    df = df.with_column(
        "embedding",
        ImageViTEmbedding(
            image_src_type="image_url",
            dtype="float32",
            batch_size=2,
            model_path=str(models_root),
            model_name=DINOV2,
            use_cls_token_embedding=True,
            rank=0,
        )(col("image")),
    )
    assert df.schema()["embedding"].dtype == daft.DataType.list(daft.DataType.float32())
    rows = df.to_pydict()["embedding"]
    assert rows[1] is None
    assert len(rows[0]) == 32 and len(rows[2]) == 32
    assert abs(np.linalg.norm(rows[0]) - 1) < 1e-5


def test_seed_style_usage_with_base64_and_mean_pooling(models_root: Path) -> None:
    cells = [base64.b64encode(good_images()["gray"]).decode(), "%%%"]
    df = daft.from_pydict({"image": cells}).with_column(
        "embedding",
        ImageViTEmbedding(
            image_src_type="image_base64",
            dtype="float32",
            model_path=str(models_root),
            model_name=VIT,
            use_cls_token_embedding=False,
        )(col("image")),
    )
    rows = df.to_pydict()["embedding"]
    assert len(rows[0]) == 32 and rows[1] is None


def test_the_job_settings_are_keyword_arguments_the_original_lacks(
    models_root: Path, web_root: tuple[Path, str], hanging_host: BadHost
) -> None:
    www, base = web_root
    (www / "exif.jpg").write_bytes(good_images()["exif"])
    urls = [f"{base}/exif.jpg", *(f"{hanging_host.base}/{n}.jpg" for n in range(6))]

    def embed(**settings: Any) -> list[Any]:
        udf = ImageViTEmbedding(
            dtype="float32", model_path=str(models_root), model_name=DINOV2, **settings
        )
        return daft.from_pydict({"image": urls}).select(udf(col("image"))).to_pydict()["image"]

    bounded = {"timeoutSeconds": 1, "retries": 1, "maxConnections": 2}
    as_stored = embed(download=bounded)
    assert as_stored[0] is not None and as_stored[1:] == [None] * 6
    # Two reads at once, and the host is skipped after two failures in a row: not two tries
    # for each of the six rows.
    assert hanging_host.connections <= 2 + 2 - 1
    rotated = embed(download=bounded, preprocessing={"exifOrientation": True})
    expected = Embedder(
        EmbedderSettings(
            model_dir=str(models_root / DINOV2),
            dtype=DType.FLOAT32,
            preprocessing=PreprocessingSpec(exif_orientation=True),
        )
    ).embed_bytes([good_images()["exif"]])[0][0]
    np.testing.assert_allclose(rotated[0], expected, atol=1e-5)
    assert float(np.dot(rotated[0], as_stored[0])) < 0.9999
