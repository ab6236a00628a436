"""The original component's usage: ImageViTEmbedding(...) inside with_column."""

from __future__ import annotations

import base64
from pathlib import Path

import daft
import numpy as np
from daft import col

from embedding_job import ImageViTEmbedding
from tests.support.images import good_images
from tests.support.models import DINOV2, VIT


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
