"""A worker's decoding memory is bounded by the pixels it holds decoded at once (its budget),
not by its threads x the largest image."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np

from embedding_job.demo import encode, sample_image
from embedding_job.errors import RowError
from embedding_job.imaging.budget import PixelBudget
from embedding_job.imaging.datapath import DataPath
from embedding_job.imaging.transform import ImageTransform
from tests.support.decode_memory import large_png
from tests.support.waiting import wait_for

TRANSFORM = ImageTransform(shortest_edge=256, resample=3, crop=(224, 224))
ROOT = Path(__file__).parents[2]


def test_a_holder_waits_until_the_pixels_held_leave_room_for_it() -> None:
    budget = PixelBudget(100)
    inside, release = threading.Event(), threading.Event()
    order: list[str] = []

    def first() -> None:
        with budget.hold(60):
            order.append("first in")
            inside.set()
            release.wait(10)
            order.append("first out")  # inside the hold: before the second can get in

    def second() -> None:
        with budget.hold(60):
            order.append("second in")

    threading.Thread(target=first).start()
    assert inside.wait(10)
    waiting = threading.Thread(target=second)
    waiting.start()
    wait_for(lambda: budget.waits == 1, timeout=10, message="the second holder to wait")
    assert order == ["first in"] and budget.in_use == 60
    with budget.hold(40):  # what still fits goes ahead
        assert budget.in_use == 100
    release.set()
    waiting.join(10)
    assert order == ["first in", "first out", "second in"]
    assert (budget.peak, budget.in_use) == (100, 0)


def test_an_image_larger_than_the_whole_budget_is_held_alone() -> None:
    budget = PixelBudget(100)
    with budget.hold(1_000):
        assert budget.in_use == 100
    assert budget.peak == 100
    unbounded = PixelBudget(None)
    with unbounded.hold(10**9):
        assert unbounded.in_use == 0


def test_the_data_path_never_holds_more_than_its_budget_and_decodes_the_same() -> None:
    large = [encode(sample_image(i, (1600, 1200)), "PNG") for i in range(4)]
    items = [*large, encode(sample_image(9, (300, 200)), "JPEG"), b"not an image", *large]
    capacity = 1600 * 1200 * 3 // 2  # one large image and a half
    bounded = DataPath(TRANSFORM, threads=4, budget_pixels=capacity)
    try:
        results = list(bounded.map(items, window=len(items)))
    finally:
        bounded.close()
    expected = list(DataPath(TRANSFORM, budget_pixels=None).map(items))
    assert 1600 * 1200 <= bounded.budget.peak <= capacity
    assert bounded.budget.in_use == 0
    for got, want in zip(results, expected, strict=True):
        if isinstance(want, RowError):
            assert isinstance(got, RowError) and str(got) == str(want)
        else:
            np.testing.assert_array_equal(got, want)


def test_eight_large_pngs_on_eight_threads_grow_a_worker_by_its_budget_only(
    tmp_path: Path,
) -> None:
    # Budget: one 12 Mpx image. Without it (or with glibc keeping each thread's freed images)
    # the process grew by 550 MB here, against 170 MB with it.
    png = large_png(tmp_path / "large.png")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run(
        [sys.executable, "-m", "tests.support.decode_memory", str(png), "8", "8", "12"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    measured = json.loads(result.stdout)
    image_bytes = measured["image_pixels"] * 14  # measured: 14 bytes a pixel while decoding
    print(
        f"8 PNGs of {measured['image_pixels'] / 1e6:.0f} Mpx on 8 threads, budget 12 Mpx: "
        f"grew {measured['growth_bytes'] / 2**20:.0f} MiB"
    )
    assert measured["peak_pixels_held"] == measured["image_pixels"]
    assert measured["growth_bytes"] < 2 * image_bytes, measured
