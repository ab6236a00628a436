"""How much a process grows while its data path decodes large PNGs on many threads.

Run as ``python -m tests.support.decode_memory <png> <threads> <images> <budget Mpx|none>``
(a fresh process, so that its peak RSS is this work's alone); prints a JSON object. The PNG is
made by :func:`large_png` in the calling process: making it here would raise the peak before
the decoding starts.
"""

from __future__ import annotations

import io
import json
import re
import sys
from pathlib import Path

import numpy as np
from PIL import Image

#: The PNG decoded: 12 Mpx.
SIZE = (4000, 3000)


def _status_kib(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    assert match, field
    return int(match.group(1))


def large_png(path: Path) -> Path:
    """A 12 Mpx PNG of noise, stored uncompressed (quick to make, as large to decode)."""
    noise = np.random.default_rng(0).integers(0, 255, (SIZE[1], SIZE[0], 3), np.uint8)
    Image.fromarray(noise, "RGB").save(path, "PNG", compress_level=0)
    return path


def main(png: Path, threads: int, images: int, budget: float | None) -> dict[str, float]:
    from embedding_job.imaging.budget import megapixels
    from embedding_job.imaging.datapath import DataPath
    from embedding_job.imaging.transform import ImageTransform

    data = png.read_bytes()
    transform = ImageTransform(shortest_edge=256, resample=3, crop=(224, 224))
    datapath = DataPath(transform, threads=threads, budget_pixels=megapixels(budget))
    small = io.BytesIO()
    Image.new("RGB", (300, 300)).save(small, "PNG")
    datapath.pixels(small.getvalue())  # torch's kernels and Pillow loaded before the baseline
    # Linux's peak RSS, reset here: what imports and reading the file took is not counted.
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_kib("VmRSS")
    decoded = list(datapath.map([data] * images, window=images))
    peak = _status_kib("VmHWM")
    assert all(isinstance(pixels, np.ndarray) for pixels in decoded)
    return {
        "growth_bytes": (peak - before) * 1024,
        "image_pixels": SIZE[0] * SIZE[1],
        "peak_pixels_held": datapath.budget.peak,
    }


if __name__ == "__main__":
    budget = None if sys.argv[4] == "none" else float(sys.argv[4])
    print(json.dumps(main(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), budget)))
