"""Local image files: read by the embedder on its decode threads, never moved through Daft."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import daft
import numpy as np
import pyarrow as pa
import pytest
import torch

from embedding_job.api import Device, DownloadSpec, DType
from embedding_job.errors import RowError
from embedding_job.imaging.gpu_jpeg import GpuJpegDecoder
from embedding_job.io.cells import LocalFile, local_file
from embedding_job.io.io_config import io_config
from embedding_job.model.embedder import Embedder, EmbedderSettings
from embedding_job.run.pipeline import fetched, remote_only
from embedding_job.run.udf import result_array
from tests.support.embedding import fake_torchvision_io
from tests.support.images import bad_images, good_images
from tests.support.models import DINOV2


def test_only_absolute_paths_and_file_urls_name_local_files() -> None:
    assert local_file("/data/a.jpg") == LocalFile("/data/a.jpg")
    # As Daft's own IO reads them: the path as written, no percent-decoding.
    assert local_file("file:///data/a b%20c.jpg") == LocalFile("/data/a b%20c.jpg")
    for remote in ["s3://b/a.jpg", "http://127.0.0.1/a.jpg", "file://host/a.jpg", "a.jpg", ""]:
        assert local_file(remote) is None, remote
    assert local_file(None) is None and local_file(b"/a.jpg") is None


def test_remote_only_leaves_just_the_remote_urls_for_the_download() -> None:
    urls = ["/data/a.jpg", "file:///data/b.jpg", "s3://b/c.jpg", None, "rel/d.jpg"]
    df = daft.from_pydict({"u": urls}).select(remote_only(daft.col("u")).alias("r"))
    assert df.to_pydict()["r"] == [None, None, "s3://b/c.jpg", None, "rel/d.jpg"]


def test_the_pipeline_downloads_remote_images_and_leaves_local_files_to_the_embedder(
    web_root: tuple[Path, str],
) -> None:
    www, base = web_root
    (www / "a.jpg").write_bytes(good_images()["jpeg"])
    urls = [str(www / "a.jpg"), (www / "a.jpg").as_uri(), f"{base}/a.jpg"]
    df = daft.from_pydict({"u": urls})
    data = df.select(fetched(daft.col("u"), 4, io_config(DownloadSpec())).alias("d"))
    assert data.to_pydict()["d"] == [None, None, good_images()["jpeg"]]


def test_a_local_file_that_cannot_be_read_is_one_clear_row_error(tmp_path: Path) -> None:
    good = tmp_path / "good.jpg"
    good.write_bytes(good_images()["jpeg"])
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert LocalFile(str(good)).read() == good_images()["jpeg"]
    cases = {
        str(tmp_path / "missing.jpg"): "read failed: No such file or directory: ",
        str(tmp_path): "read failed: Is a directory: ",
        str(tmp_path / "empty.jpg"): "empty file: ",
        "/a\x00b.jpg": "read failed: ValueError: embedded null byte: ",
    }
    for path, message in cases.items():
        with pytest.raises(RowError) as caught:
            LocalFile(path).read()
        assert str(caught.value) == message + path


Items = list[bytes | LocalFile | None]


@pytest.fixture
def files(tmp_path: Path) -> tuple[Items, int]:
    """Good and bad images, some as bytes, some as local files; and where a missing file is."""
    items: Items = []
    for index, (name, data) in enumerate({**good_images(), **bad_images()}.items()):
        path = tmp_path / name
        path.write_bytes(data)
        items.append(LocalFile(str(path)) if index % 2 == 0 else data)
    items.insert(3, LocalFile(str(tmp_path / "missing.jpg")))
    return items, 3


def read_all(items: Items, missing: int) -> Items:
    """The same images as bytes (the missing file as empty bytes)."""
    return [
        b"" if index == missing else item.read() if isinstance(item, LocalFile) else item
        for index, item in enumerate(items)
    ]


def cpu_embedder(models_root: Path, **settings: Any) -> Embedder:
    return Embedder(
        EmbedderSettings(
            model_dir=str(models_root / DINOV2), dtype=DType.FLOAT32, device=Device.CPU, **settings
        )
    )


@pytest.mark.parametrize("threads", [0, 2])
def test_the_embedder_reads_local_files_exactly_like_bytes(
    models_root: Path, files: tuple[Items, int], threads: int
) -> None:
    items, missing = files
    embedder = cpu_embedder(models_root, decode_threads=threads, batch_size=3)
    vectors, errors = embedder.embed_bytes(items)
    expected_vectors, expected_errors = embedder.embed_bytes(read_all(items, missing))
    missing_file = items[missing]
    assert isinstance(missing_file, LocalFile)
    assert errors[missing] == f"read failed: No such file or directory: {missing_file.path}"
    assert errors[:missing] + errors[missing + 1 :] == (
        expected_errors[:missing] + expected_errors[missing + 1 :]
    )
    for got, want in zip(vectors, expected_vectors, strict=True):
        if want is None:
            assert got is None
        else:
            np.testing.assert_array_equal(got, want)
    assert sum(v is not None for v in vectors) == len(good_images())


def test_the_gpu_decode_path_reads_local_files_too(
    models_root: Path, files: tuple[Items, int]
) -> None:
    items, missing = files
    embedder = cpu_embedder(models_root, decode_threads=2, batch_size=3)
    cpu_vectors, cpu_errors = embedder.embed_bytes(items)
    tv_io = fake_torchvision_io()
    embedder.gpu_decoder = GpuJpegDecoder(embedder.datapath, torch.device("cpu"), tv_io)
    vectors, errors = embedder.embed_bytes(items)
    assert len(tv_io.calls) > 1, "several groups of JPEGs went through the stand-in GPU decoder"
    assert [e is None for e in errors] == [e is None for e in cpu_errors]
    assert errors[missing] == cpu_errors[missing] and "No such file" in str(errors[missing])
    good = [i for i, v in enumerate(cpu_vectors) if v is not None]
    assert [i for i, v in enumerate(vectors) if v is not None] == good
    # Each row's vector is its own image's (GPU resize: within a few grey levels), not a
    # neighbour's.
    similarity = np.stack([vectors[i] for i in good]) @ np.stack([cpu_vectors[i] for i in good]).T
    assert (similarity.argmax(axis=1) == np.arange(len(good))).all()
    assert similarity.diagonal().min() > 0.999


def test_result_array_matches_arrow_built_from_python_lists() -> None:
    vectors = [np.arange(4, dtype=np.float32), None, np.ones(4, dtype=np.float32) / 2, None]
    errors = [None, "corrupt image", None, "missing image (null)"]
    got = result_array(vectors, errors)
    expected = pa.StructArray.from_arrays(
        [
            pa.array([None if v is None else v.tolist() for v in vectors], pa.list_(pa.float32())),
            pa.array(errors, pa.string()),
        ],
        names=["embedding", "error"],
    )
    assert got.equals(expected)
    assert result_array([], []).to_pylist() == []
    assert result_array([None, None], ["a", "b"]).to_pylist() == [
        {"embedding": None, "error": "a"},
        {"embedding": None, "error": "b"},
    ]
