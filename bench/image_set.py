"""The generated, reproducible image set every scenario runs on."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

#: The size mix, per 10 images: (width, height, format). Web-photo sizes, landscape and
#: portrait, one in ten a PNG.
SIZE_MIX = (
    (500, 375, "JPEG"),
    (500, 375, "JPEG"),
    (375, 500, "JPEG"),
    (1024, 768, "JPEG"),
    (1024, 768, "JPEG"),
    (768, 1024, "JPEG"),
    (1920, 1080, "JPEG"),
    (1920, 1080, "JPEG"),
    (500, 375, "JPEG"),
    (800, 600, "PNG"),
)


def _make_one(args: tuple[Path, int, int]) -> str:
    from embedding_job.demo import encode, sample_image

    directory, index, seed = args
    width, height, fmt = SIZE_MIX[index % len(SIZE_MIX)]
    image = sample_image(seed + index, (width, height))
    suffix = "jpg" if fmt == "JPEG" else "png"
    path = directory / f"img_{index:05d}_{width}x{height}.{suffix}"
    options: dict[str, Any] = {"quality": 90} if fmt == "JPEG" else {}
    path.write_bytes(encode(image, fmt, **options))
    return str(path)


def make_image_set(directory: Path, count: int, seed: int = 0, workers: int = 1) -> list[Path]:
    """``count`` images in SIZE_MIX proportions; identical bytes for the same count and seed."""
    directory.mkdir(parents=True, exist_ok=True)
    jobs = [(directory, index, seed) for index in range(count)]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            paths = list(pool.map(_make_one, jobs, chunksize=4))
    else:
        paths = [_make_one(job) for job in jobs]
    return [Path(p) for p in paths]
