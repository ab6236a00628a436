"""The fast data path: reduced-size JPEG decode, PyTorch resize, decode threads, GPU decode."""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from embedding_job.api import Device, DType, Pooling, PreprocessingSpec
from embedding_job.demo import encode, sample_image
from embedding_job.errors import RowError
from embedding_job.imaging.datapath import DataPath
from embedding_job.imaging.decode import decode_image, decode_scaled
from embedding_job.imaging.gpu_jpeg import GpuJpegDecoder
from embedding_job.imaging.transform import ImageTransform, _rgbx_pixels, _torch_resize
from embedding_job.model.embedder import Embedder, EmbedderSettings
from tests.support.embedding import fake_torchvision_io, reference_embeddings
from tests.support.images import bad_images, good_images
from tests.support.models import DINOV2, VIT

DINO_TRANSFORM = ImageTransform(shortest_edge=256, resample=3, crop=(224, 224))
VIT_TRANSFORM = ImageTransform(resize_to=(224, 224), resample=2)


@pytest.fixture(scope="module")
def large_jpegs() -> list[bytes]:
    """Photos large enough for a 1/2 (or smaller) scale decode, landscape and portrait."""
    sizes = [(1920, 1080), (1200, 1600), (2100, 1400)]
    return [encode(sample_image(40 + i, s), "JPEG", quality=90) for i, s in enumerate(sizes)]


def cosine_error(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    cosine = (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return np.asarray(1 - cosine)


def test_reduced_decode_keeps_at_least_the_minimum_size_and_reports_the_full_one() -> None:
    data = encode(sample_image(1, (1920, 1080)), "JPEG", quality=90)
    image, full = decode_scaled(data, min_size=512)
    assert image.size == (960, 540) and full == (1920, 1080)
    image, full = decode_scaled(data, min_size=256)
    assert image.size == (480, 270) and full == (1920, 1080)
    assert decode_scaled(data)[0].size == (1920, 1080)
    png = encode(sample_image(1, (1920, 1080)), "PNG")
    assert decode_scaled(png, min_size=256)[0].size == (1920, 1080)  # JPEG only


def test_reduced_decode_swaps_the_full_size_with_exif_rotation() -> None:
    image = sample_image(7, (1280, 640))
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(image, "JPEG", exif=exif.tobytes())
    rotate = PreprocessingSpec(exif_orientation=True)
    decoded, full = decode_scaled(data, min_size=300, options=rotate)
    assert full == (640, 1280) and decoded.size == (320, 640)
    assert decode_image(data, options=rotate).size == (640, 1280)
    # As stored (the default): nothing swaps.
    decoded, full = decode_scaled(data, min_size=300)
    assert full == (1280, 640) and decoded.size == (640, 320)


@pytest.mark.parametrize("name", [VIT, DINOV2])
@pytest.mark.parametrize("pooling", [Pooling.CLS, Pooling.MEAN])
def test_reduced_decode_of_large_jpegs_stays_within_the_parity_bound(
    models_root: Path, large_jpegs: list[bytes], name: str, pooling: Pooling
) -> None:
    embedder = Embedder(
        EmbedderSettings(
            model_dir=str(models_root / name),
            dtype=DType.FLOAT32,
            pooling=pooling,
            device=Device.CPU,
        )
    )
    assert embedder.datapath.min_size is not None
    for data in large_jpegs:  # the reduced decode really happens for every one of them
        image, full = decode_scaled(data, min_size=embedder.datapath.min_size)
        assert image.size[0] < full[0]
    vectors, errors = embedder.embed_bytes(large_jpegs)
    assert errors == [None] * len(large_jpegs)
    expected = reference_embeddings(models_root / name, large_jpegs, pooling is Pooling.CLS)
    error = cosine_error(np.stack(vectors), expected)
    assert np.all(error < 1e-4), error


@pytest.mark.parametrize("transform", [DINO_TRANSFORM, VIT_TRANSFORM])
@pytest.mark.parametrize("size", [(97, 130), (500, 375), (640, 333), (1024, 768), (224, 224)])
def test_torch_resize_is_within_two_grey_levels_of_pillow(
    transform: ImageTransform, size: tuple[int, int]
) -> None:
    image = sample_image(3, size)
    fast = transform.to_uint8(image).astype(int)
    pil = dataclasses.replace(transform, resize_backend="pil").to_uint8(image).astype(int)
    assert fast.shape == pil.shape == (224, 224, 3)
    assert np.abs(fast - pil).max() <= 2
    assert np.abs(fast - pil).mean() < 0.05


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
def test_torch_resize_reads_pillows_memory_with_the_same_result_as_a_copy(mode: str) -> None:
    image = sample_image(5, (1000, 750))
    assert _rgbx_pixels(image) is not None  # the path without a copy is the one taken
    copied = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    batch = copied.view(750, 1000, 3).permute(2, 0, 1).unsqueeze(0)
    expected = torch.nn.functional.interpolate(
        batch, size=(224, 224), mode=mode, antialias=True, align_corners=False
    )[0].permute(1, 2, 0)
    resized = _torch_resize(image, (224, 224), mode)
    assert resized.shape == (224, 224, 3) and resized.flags.c_contiguous
    np.testing.assert_array_equal(resized, expected.numpy())
    # Where Pillow cannot hand its memory over (rows in separate blocks, another mode), the
    # copy is made.
    large = image.resize((4200, 3150))
    assert _rgbx_pixels(large) is None and _rgbx_pixels(image.convert("L")) is None
    assert _torch_resize(large, (224, 224), mode).shape == (224, 224, 3)


def test_filters_torch_lacks_use_pillow_exactly() -> None:
    lanczos = ImageTransform(shortest_edge=256, resample=1, crop=(224, 224))
    image = sample_image(4, (500, 375))
    expected = np.asarray(image.resize((341, 256), resample=1))[16:240, 58:282]
    np.testing.assert_array_equal(lanczos.to_uint8(image), expected)


def mixed_items() -> list[bytes]:
    good, bad = good_images(), bad_images()
    items = []
    for index, data in enumerate(good.values()):
        items.append(data)
        if index % 3 == 1:
            items.append(list(bad.values())[index % len(bad)])
    return items * 3


def test_threaded_decode_gives_exactly_the_sequential_results() -> None:
    items = mixed_items()
    sequential = list(DataPath(DINO_TRANSFORM, threads=0).map(items))
    pool = DataPath(DINO_TRANSFORM, threads=3)
    try:
        threaded = list(pool.map(items, window=4))
    finally:
        pool.close()
    assert len(sequential) == len(threaded) == len(items)
    for a, b in zip(sequential, threaded, strict=True):
        if isinstance(a, RowError):
            assert isinstance(b, RowError) and str(a) == str(b)
        else:
            assert isinstance(b, np.ndarray)
            np.testing.assert_array_equal(a, b)


def test_work_ahead_starts_when_asked_for_and_what_is_left_is_cancelled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Embedder.start relies on it: a call waiting for its turn has its first images decoded."""
    items = [encode(sample_image(i, (640, 480)), "JPEG") for i in range(12)]
    decoded: list[bytes] = []
    original = DataPath._read_and_decode

    def counted(self: DataPath, data: Any) -> Any:
        decoded.append(data)
        return original(self, data)

    monkeypatch.setattr(DataPath, "_read_and_decode", counted)
    pool = DataPath(DINO_TRANSFORM, threads=2, io_threads=0)
    try:
        ahead = pool.map_views(items, window=4)
        deadline = time.monotonic() + 30
        while len(decoded) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sorted(decoded) == sorted(items[:4])  # the window, with nothing taken yet
        first = next(ahead)
        assert isinstance(first, list)
        np.testing.assert_array_equal(first[0], pool.views(items[0])[0])
        ahead.close()
        assert list(ahead) == []
        # At most the window (refilled by one as the first result was taken) ever started.
        assert len(decoded) <= 5
    finally:
        pool.close()


def test_embedder_threads_and_batches_keep_rows_isolated_and_identical(models_root: Path) -> None:
    items: list[bytes | None] = list(mixed_items())
    items.insert(2, None)
    upstream: list[str | None] = [None] * len(items)
    upstream[5] = "download failed: 404"

    def run(threads: int, batch: int) -> tuple[list[Any], list[str | None]]:
        embedder = Embedder(
            EmbedderSettings(
                model_dir=str(models_root / DINOV2),
                dtype=DType.FLOAT32,
                batch_size=batch,
                device=Device.CPU,
                decode_threads=threads,
            )
        )
        return embedder.embed_bytes(items, upstream)

    inline_vectors, inline_errors = run(0, 4)
    threaded_vectors, threaded_errors = run(2, 3)
    assert inline_errors == threaded_errors
    assert inline_errors[2] == "missing image (null)" and inline_errors[5] == upstream[5]
    failed = {i for i, e in enumerate(inline_errors) if e is not None}
    assert failed == {i for i, v in enumerate(inline_vectors) if v is None}
    assert len(failed) == 2 + 3 * 3  # null, upstream, and three bad payloads per repeat
    for a, b in zip(inline_vectors, threaded_vectors, strict=True):
        if a is None:
            assert b is None
        else:
            np.testing.assert_allclose(a, b, atol=1e-5)


def test_compile_flag_compiles_the_model(
    models_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[dict[str, Any]] = []

    def fake_compile(model: torch.nn.Module, **kwargs: Any) -> torch.nn.Module:
        calls.append(kwargs)
        return model

    monkeypatch.setattr(torch, "compile", fake_compile)
    settings = EmbedderSettings(model_dir=str(models_root / VIT), dtype=DType.FLOAT32)
    Embedder(settings)
    assert calls == []
    embedder = Embedder(dataclasses.replace(settings, compile=True))
    assert calls == [{"dynamic": False}]
    vectors, _ = embedder.embed_bytes([good_images()["jpeg"]])
    assert vectors[0] is not None


# ---- GPU decode: off the GPU, only its wiring can be tested, with a stand-in for nvJPEG ----


def test_gpu_decode_falls_back_to_the_cpu_path_without_a_gpu(
    models_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    settings = EmbedderSettings(
        model_dir=str(models_root / DINOV2), dtype=DType.FLOAT32, device=Device.CPU
    )
    embedder = Embedder(dataclasses.replace(settings, gpu_decode=True))
    assert embedder.gpu_decoder is None and "decoding on CPU" in caplog.text
    vectors, errors = embedder.embed_bytes([good_images()["jpeg"], b""])
    assert vectors[0] is not None and errors[1] == "empty image data"


def test_gpu_decoder_routes_jpegs_to_the_gpu_and_the_rest_to_the_cpu() -> None:
    tv_io = fake_torchvision_io()
    datapath = DataPath(DINO_TRANSFORM, draft_factor=None)
    decoder = GpuJpegDecoder(datapath, torch.device("cpu"), tv_io)
    good = good_images()
    items = [good["jpeg"], good["png"], good["cmyk"], b"", good["exif"], good["gray"]]
    batches, failures = decoder.decode(items)
    assert tv_io.calls == [3]  # jpeg, exif and gray; CMYK and PNG stay on the CPU
    assert failures == {3: "empty image data"}
    assert batches is not None and len(batches) == 1  # one model, one batch
    batch = batches[0]
    assert batch.dtype == torch.uint8
    assert batch.shape == (5, 224, 224, 3)
    for row, position in enumerate([0, 1, 2, 4, 5]):
        expected = datapath.pixels(items[position]).astype(int)
        assert np.abs(batch[row].numpy().astype(int) - expected).max() <= 2


def test_a_batch_the_gpu_rejects_is_decoded_on_the_cpu_row_by_row() -> None:
    tv_io = fake_torchvision_io()  # like nvJPEG here, it fails the whole call on a bad file
    decoder = GpuJpegDecoder(DataPath(DINO_TRANSFORM), torch.device("cpu"), tv_io)
    items = [good_images()["jpeg"], bad_images()["truncated"], good_images()["gray"]]
    batches, failures = decoder.decode(items)
    assert tv_io.calls == [3]
    assert list(failures) == [1] and failures[1].startswith("corrupt image")
    assert batches is not None and batches[0].shape == (2, 224, 224, 3)


def test_gpu_decoder_is_chosen_only_with_cuda_and_torchvision(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    datapath = DataPath(DINO_TRANSFORM)
    assert GpuJpegDecoder.create(datapath, torch.device("cpu")) is None
    monkeypatch.setitem(sys.modules, "torchvision", None)
    assert GpuJpegDecoder.create(datapath, torch.device("cuda", 0)) is None


def test_decode_threads_default_to_inline_on_cpu_and_a_pool_for_a_gpu() -> None:
    from embedding_job.imaging.datapath import default_decode_threads

    assert default_decode_threads(torch.device("cpu")) == 0
    assert 1 <= default_decode_threads(torch.device("cuda", 0)) <= 16
