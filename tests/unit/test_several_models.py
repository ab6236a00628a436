"""Several models in one embedder: each image read and decoded once, embedded by each model in
its own batches, with exactly the vectors one-model embedders give."""

from __future__ import annotations

import base64
import dataclasses
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from embedding_job.api import (
    Device,
    DType,
    HighBitDepth,
    Pooling,
    PreprocessingSpec,
    Transparency,
)
from embedding_job.demo import encode, sample_image
from embedding_job.imaging import datapath as datapath_module
from embedding_job.imaging.datapath import DataPath
from embedding_job.imaging.gpu_jpeg import GpuJpegDecoder
from embedding_job.imaging.transform import ImageTransform
from embedding_job.io.cells import Base64Image
from embedding_job.model import backbone as backbone_module
from embedding_job.model.embedder import Embedder, EmbedderSettings
from tests.support.embedding import fake_torchvision_io
from tests.support.hub_models import CLIP
from tests.support.images import bad_images, good_images, mode_photos, photos
from tests.support.models import DINOV2


@pytest.fixture
def two(models_root: Path, family_models: Path) -> list[EmbedderSettings]:
    """DINOv2 (shortest edge 256, crop 224) and CLIP (edge 224, crop 224): settings for both."""
    dino = EmbedderSettings(
        model_dir=str(models_root / DINOV2), dtype=DType.FLOAT32, batch_size=4, device=Device.CPU
    )
    clip = dataclasses.replace(
        dino, model_dir=str(family_models / CLIP), pooling=Pooling.AUTO, batch_size=4
    )
    return [dino, clip]


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every image decode of the data path (``load_rgb``), by the size its header was opened
    for (``open_image``'s ``min_size``): a trace."""
    calls: list[int] = []
    asked: dict[int, int] = {}
    real_open, real_load = datapath_module.open_image, datapath_module.load_rgb

    def opening(data: bytes, **kwargs: Any) -> Any:
        image, full_size = real_open(data, **kwargs)
        asked[id(image)] = kwargs.get("min_size") or 0
        return image, full_size

    def decoding(image: Any, *args: Any) -> Any:
        calls.append(asked.pop(id(image)))
        return real_load(image, *args)

    monkeypatch.setattr(datapath_module, "open_image", opening)
    monkeypatch.setattr(datapath_module, "load_rgb", decoding)
    return calls


def test_two_models_give_the_one_model_vectors_from_one_decode_per_image(
    two: list[EmbedderSettings], decodes: list[int]
) -> None:
    images = list(photos()) + list(good_images().values())
    both = Embedder(two)
    decodes.clear()
    (dino, clip), errors = both.embed_models(images)
    assert len(decodes) == len(images)  # one decode per image for both models
    assert errors == [None] * len(images)
    decodes.clear()
    alone = [Embedder(settings).embed_bytes(images) for settings in two]
    assert len(decodes) == 2 * len(images)  # two one-model embedders: two decodes each
    for together, (vectors, single_errors) in zip([dino, clip], alone, strict=True):
        assert single_errors == errors
        for a, b in zip(together, vectors, strict=True):
            assert a is not None and b is not None
            np.testing.assert_array_equal(a, b)
    assert {len(v) for v in dino if v is not None} == {32}
    assert {len(v) for v in clip if v is not None} == {16}  # CLIP's projection


def test_the_shared_decode_is_as_large_as_the_most_demanding_model_needs(
    two: list[EmbedderSettings], decodes: list[int]
) -> None:
    # Short side 950: CLIP alone decodes at 1/2 (475 >= 2 x 224); DINOv2 needs 2 x 256 = 512,
    # so the shared decode is full size and CLIP's vector differs, within the draft bound.
    image = [encode(sample_image(60, (1000, 950)), "JPEG", quality=90)]
    both = Embedder(two)
    clip_alone = Embedder(two[1])
    assert (both.datapath.min_size, clip_alone.datapath.min_size) == (512, 448)
    decodes.clear()
    (_, together), _ = both.embed_models(image)
    alone, _ = clip_alone.embed_bytes(image)
    assert decodes == [512, 448]
    assert together[0] is not None and alone[0] is not None
    assert 1 - float(together[0] @ alone[0]) < 1e-4


def test_each_model_runs_its_own_batch_size(
    two: list[EmbedderSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    images = list(good_images().values())
    settings = [
        dataclasses.replace(two[0], batch_size=3),
        dataclasses.replace(two[1], batch_size=5),
    ]
    batches: list[tuple[int, int]] = []
    real: Callable[..., np.ndarray] = backbone_module.Backbone.__call__

    def spying(self: backbone_module.Backbone, pixel_values: torch.Tensor) -> np.ndarray:
        batches.append((self.dim, len(pixel_values)))
        return real(self, pixel_values)

    both = Embedder(settings)
    monkeypatch.setattr(backbone_module.Backbone, "__call__", spying)
    (dino, clip), _ = both.embed_models(images)
    sizes = {dim: [n for d, n in batches if d == dim] for dim in (32, 16)}
    assert sizes == {32: chunks(len(images), 3), 16: chunks(len(images), 5)}
    monkeypatch.undo()
    for together, settings_one in zip([dino, clip], settings, strict=True):
        vectors, _ = Embedder(settings_one).embed_bytes(images)
        for a, b in zip(together, vectors, strict=True):
            assert a is not None and b is not None
            np.testing.assert_allclose(a, b, atol=1e-6)


def chunks(count: int, size: int) -> list[int]:
    return [size] * (count // size) + ([count % size] if count % size else [])


def test_each_model_counts_its_own_forward_time(two: list[EmbedderSettings]) -> None:
    both = Embedder(two)
    before = both.model_seconds
    both.embed_models(list(good_images().values()))
    after = both.model_seconds
    assert len(before) == len(after) == 2  # what the worker's metrics split by model
    assert all(a > b for a, b in zip(after, before, strict=True))


def test_a_bad_row_is_null_for_every_model_with_one_error(two: list[EmbedderSettings]) -> None:
    good, bad = good_images(), bad_images()
    items: list[bytes | None] = [good["jpeg"], bad["truncated"], None, good["png"]]
    (dino, clip), errors = Embedder(two).embed_models(items, [None, None, None, None])
    assert [v is None for v in dino] == [v is None for v in clip] == [False, True, True, False]
    assert errors[0] is None and "corrupt" in str(errors[1]) and errors[2] == "missing image (null)"


@dataclasses.dataclass(frozen=True)
class CountedSource:
    """An image the data path reads itself (as it does a file or a URL), counting its reads."""

    name: str
    data: bytes
    reads: Counter[str]
    lock: threading.Lock

    def read(self) -> bytes:
        with self.lock:
            self.reads[self.name] += 1
        return self.data


#: Every option the other way from the original's.
BETTER = PreprocessingSpec(
    exif_orientation=True, transparency=Transparency.WHITE, high_bit_depth=HighBitDepth.SCALE
)


def test_two_models_read_each_source_once_and_both_get_the_preprocessing(
    two: list[EmbedderSettings], decodes: list[int]
) -> None:
    images = mode_photos()
    reads: Counter[str] = Counter()
    lock = threading.Lock()
    # Sources the data path reads on its threads: counted ones, and one base64 cell.
    items: list[Any] = [
        CountedSource(name, data, reads, lock)
        if name != "gray"
        else Base64Image(base64.b64encode(data).decode())
        for name, data in images.items()
    ]
    # Decoding on threads, within a pixel budget smaller than two of these images.
    settings = [
        dataclasses.replace(s, preprocessing=BETTER, decode_threads=2, decode_megapixels=0.5)
        for s in two
    ]
    both = Embedder(settings)
    assert both.datapath.options == BETTER and both.datapath.budget.capacity == 500_000
    decodes.clear()
    (dino, clip), errors = both.embed_models(items)
    assert errors == [None] * len(items)
    assert reads == Counter({name: 1 for name in images if name != "gray"})
    assert len(decodes) == len(images)  # one read and one decode per image for both models
    assert 0 < both.datapath.budget.peak <= 500_000
    default = Embedder(two)
    (dino_default, clip_default), _ = default.embed_models(list(images.values()))
    for number, together in enumerate([dino, clip]):
        # Each model's vectors are the one-model embedder's with the same options...
        alone, _ = Embedder(settings[number]).embed_bytes(list(images.values()))
        for a, b in zip(together, alone, strict=True):
            assert a is not None and b is not None
            np.testing.assert_allclose(a, b, atol=1e-6)
        # ... and the options reached every model: exactly the images they are about embed
        # differently from the original's handling (the rest within float noise, < 1e-7).
        original = [dino_default, clip_default][number]
        changed = {
            name
            for name, a, b in zip(images, together, original, strict=True)
            if a is not None and b is not None and 1 - float(a @ b) > 1e-6
        }
        assert changed == {"exif", "rgba", "la", "palette", "sixteen"}, (number, changed)


def test_the_models_of_one_embedder_share_device_and_decoding(
    two: list[EmbedderSettings],
) -> None:
    other = dataclasses.replace(two[1], jpeg_draft_factor=None)
    with pytest.raises(ValueError, match="must share jpeg_draft_factor"):
        Embedder([two[0], other])
    rotating = dataclasses.replace(two[1], preprocessing=PreprocessingSpec(exif_orientation=True))
    with pytest.raises(ValueError, match="must share preprocessing"):
        Embedder([two[0], rotating])
    with pytest.raises(ValueError, match="use embed_models"):
        Embedder(two).embed_bytes([good_images()["jpeg"]])


def test_the_gpu_decoder_gives_one_batch_per_model_from_one_decode() -> None:
    dino = ImageTransform(shortest_edge=256, resample=3, crop=(224, 224))
    siglip = ImageTransform(resize_to=(192, 160), resample=2)
    datapath = DataPath(dino, more=[siglip], draft_factor=None)
    tv_io = fake_torchvision_io()
    decoder = GpuJpegDecoder(datapath, torch.device("cpu"), tv_io)
    good = good_images()
    items = [good["jpeg"], good["png"], b"", good["gray"]]
    batches, failures = decoder.decode(items)
    assert tv_io.calls == [2] and failures == {2: "empty image data"}
    assert batches is not None
    assert [tuple(b.shape) for b in batches] == [(3, 224, 224, 3), (3, 192, 160, 3)]
    for row, position in enumerate([0, 1, 3]):
        for batch, expected in zip(batches, datapath.views(items[position]), strict=True):
            assert np.abs(batch[row].numpy().astype(int) - expected.astype(int)).max() <= 2


def test_the_manifest_and_the_status_name_each_model() -> None:
    from datetime import UTC, datetime

    from embedding_job.api import parse_config
    from embedding_job.io.output import build_manifest
    from embedding_job.run.status_report import output_status

    cfg = parse_config(
        {
            "input": {"uri": "/in/"},
            "output": {"uri": "/out/"},
            "models": [{"name": "facebook/dinov2-base"}, {"name": "openai/clip-vit-base-patch32"}],
        }
    )
    widths_and_poolings = [(768, "cls"), (512, "projected")]
    entries = [
        {"column": c, "model": m.name, "embeddingDim": d, "device": "cuda", "dtype": "float16"}
        | {"pooling": p}
        for (m, c), (d, p) in zip(cfg.embedding_columns(), widths_and_poolings, strict=True)
    ]
    now = datetime.now(UTC)
    manifest = build_manifest(
        cfg,
        status="succeeded",
        rows_in=3,
        models=entries,
        files=[],
        counts={"rows": 3, "failed": 0, "errors": []},
        skipped=0,
        kept_rows=0,
        started=now,
        finished=now,
    )
    assert manifest["model"] == "facebook/dinov2-base, openai/clip-vit-base-patch32"
    assert manifest["embeddingDim"] is None and manifest["embeddings"] == entries
    status = output_status(manifest).to_patch()
    assert "embeddingDim" not in status and "pooling" not in status  # absent, never null
    assert "device" not in status and "dtype" not in status
    assert [
        (e["column"], e["embeddingDim"], e["pooling"], e["device"]) for e in status["embeddings"]
    ] == [
        ("embedding_dinov2_base", 768, "cls", "cuda"),
        ("embedding_clip_vit_base_patch32", 512, "projected", "cuda"),
    ]


def test_the_gpu_decode_path_feeds_every_model_from_one_decode(
    two: list[EmbedderSettings],
) -> None:
    """Off a GPU only its wiring: a stand-in for nvJPEG, PyTorch's resize on the device."""
    items = [*good_images().values(), bad_images()["truncated"]]
    both = Embedder(two)
    cpu_vectors, cpu_errors = both.embed_models(items)
    tv_io = fake_torchvision_io()
    both.gpu_decoder = GpuJpegDecoder(both.datapath, torch.device("cpu"), tv_io)
    vectors, errors = both.embed_models(items)
    assert tv_io.calls and [e is None for e in errors] == [e is None for e in cpu_errors]
    for gpu_model, cpu_model in zip(vectors, cpu_vectors, strict=True):
        good = [i for i, v in enumerate(cpu_model) if v is not None]
        assert [i for i, v in enumerate(gpu_model) if v is not None] == good
        # Each row's own image, within the GPU resize's few grey levels.
        similarity = (
            np.stack([gpu_model[i] for i in good]) @ np.stack([cpu_model[i] for i in good]).T
        )
        assert (similarity.argmax(axis=1) == np.arange(len(good))).all()
        assert similarity.diagonal().min() > 0.999
