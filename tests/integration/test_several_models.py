"""`embedding-job run` with a CLIP-style and a DINOv2 model in one spec, on the native runner:
one column per model, each exactly what a one-model job of that model writes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from embedding_job.api import Device, DType, Pooling, PreprocessingSpec
from embedding_job.model.embedder import Embedder, EmbedderSettings
from tests.support.hub_models import CLIP
from tests.support.images import mode_photos
from tests.support.jobs import job, read_manifest, read_output, run_cli, table, write_config
from tests.support.models import DINOV2

IDS = ["a", "b", "bad_1", "c", "d", "e", "bad_2", "f", "g"]


def run(config: dict[str, Any], path: Path) -> dict[str, list[Any]]:
    result = run_cli("run", "--config", str(write_config(path, config)))
    assert result.returncode == 0, result.stderr
    return read_output(config["output"]["uri"])


def by_id(out: dict[str, list[Any]], column: str) -> dict[str, Any]:
    return dict(zip(out["id"], out[column], strict=True))


def test_a_clip_and_a_dinov2_model_in_one_job_write_both_embeddings(
    tmp_path: Path, models_root: Path, family_models: Path
) -> None:
    source = table(tmp_path / "in.parquet", IDS)
    dino = {"name": DINOV2, "path": str(models_root), "dtype": "float32"}
    clip = {"name": CLIP, "path": str(family_models), "dtype": "float32", "batchSize": 3}
    # Every job's rows in one call: a CPU worker's calls default to its largest model batch,
    # which would group CLIP's rows into other batches than its own job's (4 rows a call, not
    # 3), and a CPU's float sums differ in their last bits with the batch.
    binary = {"input": {"srcType": "image_binary"}, "inference": {"callBatchSize": len(IDS)}}
    both = job(models_root, source, tmp_path / "both", **binary)
    del both["model"]
    both["models"] = [{**dino, "alias": "dino"}, clip]
    out = run(both, tmp_path / "both.yaml")

    columns = ["embedding_dino", "embedding_clip_vit_base_patch32"]
    assert set(columns) <= set(out) and "embedding" not in out
    singles = []
    for name, model in [("dino", dino), ("clip", clip)]:
        config = job(models_root, source, tmp_path / name, **binary)
        config["model"] = model
        singles.append(run(config, tmp_path / f"{name}.yaml"))
    for column, single in zip(columns, singles, strict=True):
        together, alone = by_id(out, column), by_id(single, "embedding")
        assert together.keys() == alone.keys() == set(IDS)
        for row_id in IDS:
            if row_id.startswith("bad"):
                assert together[row_id] is None and alone[row_id] is None
            else:
                np.testing.assert_array_equal(together[row_id], alone[row_id])
    assert by_id(out, "embedding_error") == by_id(singles[0], "embedding_error")
    assert {len(v) for v in out[columns[1]] if v is not None} == {16}

    manifest = read_manifest(tmp_path / "both")
    assert manifest["status"] == "succeeded" and manifest["rowsFailed"] == 2
    assert manifest["model"] == f"{DINOV2}, {CLIP}" and manifest["embeddingDim"] is None
    assert manifest["embeddings"] == [
        {
            "column": "embedding_dino",
            "model": DINOV2,
            "alias": "dino",
            "family": "dinov2 backbone",
            "embeddingDim": 32,
            "device": "cpu",
            "dtype": "float32",
            "pooling": "cls",
            "normalize": True,
        },
        {
            "column": "embedding_clip_vit_base_patch32",
            "model": CLIP,
            "alias": "clip_vit_base_patch32",
            "family": "clip image-text",
            "embeddingDim": 16,
            "device": "cpu",
            "dtype": "float32",
            "pooling": "projected",
            "normalize": True,
        },
    ]
    # A one-model job keeps its manifest's top-level fields, pooling as resolved.
    single = read_manifest(tmp_path / "clip")
    assert (single["embeddingDim"], single["pooling"], single["embeddingColumn"]) == (
        16,
        "projected",
        "embedding",
    )


def test_both_models_get_the_job_preprocessing_from_images_the_workers_read(
    tmp_path: Path, models_root: Path, family_models: Path, web_root: tuple[Path, str]
) -> None:
    www, base = web_root
    images = mode_photos()
    urls = []
    for name, data in images.items():
        # Half over HTTP, half as local paths: the workers read both themselves.
        where = www if len(urls) % 2 == 0 else tmp_path
        (where / f"{name}.img").write_bytes(data)
        urls.append(f"{base}/{name}.img" if where == www else str(where / f"{name}.img"))
    source = tmp_path / "urls.parquet"
    pq.write_table(pa.table({"id": list(images), "image": urls}), source)
    options = {"exifOrientation": True, "transparency": "white", "highBitDepth": "scale"}
    config = job(models_root, source, tmp_path / "out", preprocessing=options)
    del config["model"]
    config["models"] = [
        {"name": DINOV2, "path": str(models_root), "dtype": "float32", "alias": "dino"},
        {"name": CLIP, "path": str(family_models), "dtype": "float32", "alias": "clip"},
    ]
    out = run(config, tmp_path / "job.yaml")
    assert by_id(out, "embedding_error") == dict.fromkeys(images)

    dino = EmbedderSettings(
        model_dir=str(models_root / DINOV2), dtype=DType.FLOAT32, batch_size=4, device=Device.CPU
    )
    clip = replace(dino, model_dir=str(family_models / CLIP), pooling=Pooling.AUTO)
    better = PreprocessingSpec.model_validate(options)
    for column, settings in [("embedding_dino", dino), ("embedding_clip", clip)]:
        written = by_id(out, column)
        with_options = Embedder(replace(settings, preprocessing=better))
        expected, _ = with_options.embed_bytes(list(images.values()))
        original, _ = Embedder(settings).embed_bytes(list(images.values()))
        for name, want, was in zip(images, expected, original, strict=True):
            assert want is not None and was is not None
            np.testing.assert_allclose(written[name], want, atol=1e-6)
            # The options changed exactly the images they are about, for each model.
            changed = 1 - float(np.dot(written[name], was)) > 1e-6
            assert changed == (name in {"exif", "rgba", "la", "palette", "sixteen"}), name


def test_a_pooling_the_model_lacks_fails_before_any_data_is_read(
    tmp_path: Path, models_root: Path
) -> None:
    config = job(models_root, tmp_path / "missing.parquet", tmp_path / "out")
    config["model"]["pooling"] = "projected"
    result = run_cli("run", "--config", str(write_config(tmp_path / "job.yaml", config)))
    assert result.returncode == 3, result.stderr
    assert "pooling projected needs an image-text model" in result.stderr
    assert not (tmp_path / "out").exists()
