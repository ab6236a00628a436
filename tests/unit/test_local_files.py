"""Images the embedder reads itself, on its data path's threads: local files, remote URLs,
base64 text; their bytes never move through Daft."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import torch

from embedding_job.api import Device, DownloadSpec, DType, SrcType
from embedding_job.errors import RowError
from embedding_job.imaging.gpu_jpeg import GpuJpegDecoder
from embedding_job.io.cells import Base64Image, ImageSource, LocalFile, image_items, local_file
from embedding_job.io.fetch import Fetcher, FetchSettings, RemoteImage
from embedding_job.model.embedder import Embedder, EmbedderSettings
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


def test_every_cell_becomes_what_the_worker_reads_itself(web_root: tuple[Path, str]) -> None:
    www, base = web_root
    (www / "a.jpg").write_bytes(good_images()["jpeg"])
    fetcher = Fetcher(FetchSettings(DownloadSpec()))
    cells = [str(www / "a.jpg"), (www / "a.jpg").as_uri(), f"{base}/a.jpg", None, "", "rel.jpg"]
    items, errors = image_items(cells, SrcType.IMAGE_URL, fetcher)
    assert items[:2] == [LocalFile(str(www / "a.jpg"))] * 2
    assert items[2] == RemoteImage(f"{base}/a.jpg", fetcher)
    assert items[5] == LocalFile("rel.jpg")  # relative to the worker's working directory
    assert errors == [None, None, None, "missing image (null)", "missing image (empty URL)", None]
    assert all(item.read() == good_images()["jpeg"] for item in items[:3] if item is not None)
    # A local listing's exact name wins over the displayed path.
    listed, _ = image_items(["file:///shown"], SrcType.IMAGE_URL, fetcher, [b"/raw/caf\xe9"])
    assert listed == [LocalFile(os.fsdecode(b"/raw/caf\xe9"))]
    encoded = base64.b64encode(good_images()["png"]).decode()
    inline, errors = image_items([encoded, None], SrcType.IMAGE_BASE64, fetcher)
    assert inline[0] == Base64Image(encoded) and errors == [None, "missing image (null)"]


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


Items = list[bytes | ImageSource | None]


@pytest.fixture
def files(tmp_path: Path, web_root: tuple[Path, str]) -> tuple[Items, int]:
    """Good and bad images as bytes, local files, URLs and base64 text; and where a missing
    file is."""
    www, base = web_root
    fetcher = Fetcher(FetchSettings(DownloadSpec()))
    items: Items = []
    for index, (name, data) in enumerate({**good_images(), **bad_images()}.items()):
        (tmp_path / name).write_bytes(data)
        (www / name).write_bytes(data)
        sources: list[bytes | ImageSource] = [
            LocalFile(str(tmp_path / name)),
            data,
            RemoteImage(f"{base}/{name}", fetcher),
            Base64Image(base64.b64encode(data).decode()),
        ]
        items.append(sources[index % 4])
    items.insert(3, LocalFile(str(tmp_path / "missing.jpg")))
    return items, 3


def read_all(items: Items) -> Items:
    """The same images as bytes (empty bytes where a source cannot be read)."""
    return [item if item is None or isinstance(item, bytes) else read(item) for item in items]


def read(source: ImageSource) -> bytes:
    try:
        return source.read()
    except RowError:
        return b""


def cpu_embedder(models_root: Path, **settings: Any) -> Embedder:
    return Embedder(
        EmbedderSettings(
            model_dir=str(models_root / DINOV2), dtype=DType.FLOAT32, device=Device.CPU, **settings
        )
    )


@pytest.mark.parametrize("threads", [0, 2])
def test_the_embedder_reads_every_kind_of_source_exactly_like_bytes(
    models_root: Path, files: tuple[Items, int], threads: int
) -> None:
    items, missing = files
    embedder = cpu_embedder(models_root, decode_threads=threads, batch_size=3)
    vectors, errors = embedder.embed_bytes(items)
    expected_vectors, expected_errors = embedder.embed_bytes(read_all(items))
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
