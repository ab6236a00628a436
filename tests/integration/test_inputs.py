"""What input.uri may name beyond tables and plain folders: one web image, awkward listings."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tests.support.images import good_images
from tests.support.jobs import job, read_manifest, read_output, run_cli, write_config
from tests.support.models import VIT
from tests.support.slow_hosts import BadHost


def images_job(models_root: Path, uri: str | Path, out: Path, tmp_path: Path) -> Path:
    config = job(models_root, uri, out, model={"name": VIT})
    config["input"].pop("idColumn")
    return write_config(tmp_path / "job.yaml", config)


def test_one_http_image_is_one_row(
    tmp_path: Path, models_root: Path, web_root: tuple[Path, str]
) -> None:
    www, base = web_root
    (www / "photo.jpg").write_bytes(good_images()["jpeg"])
    for name, url in {
        "plain": f"{base}/photo.jpg",
        "query": f"{base}/photo.jpg?size=large",
    }.items():
        out = tmp_path / name
        result = run_cli("run", "--config", str(images_job(models_root, url, out, tmp_path)))
        assert result.returncode == 0, result.stderr[-4000:]
        rows = read_output(out)
        assert rows["path"] == [url] and rows["embedding_error"] == [None]
        assert len(rows["embedding"][0]) == 32
        assert read_manifest(out)["rowsIn"] == 1
        # A clean run logs no error (Daft's UDF worker used to outlast its 5 s teardown).
        assert '"level": "error"' not in result.stderr, result.stderr[-4000:]


def test_every_entry_of_a_listing_is_exactly_one_row(tmp_path: Path, models_root: Path) -> None:
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    (images / "good.jpg").write_bytes(good_images()["jpeg"])
    (images / "sub" / "deep.png").write_bytes(good_images()["png"])
    (images / "notes.txt").write_text("not an image, not a row")
    os.symlink(images / "nowhere.jpg", images / "dangling.jpg")
    os.symlink(images / "self.jpg", images / "self.jpg")
    os.symlink(images, images / "sub" / "loop")
    os.symlink(images / "good.jpg", images / "linked.jpg")
    latin1 = os.fsencode(images) + b"/caf\xe9.jpg"  # a valid image whose name is not UTF-8
    with open(latin1, "wb") as handle:
        handle.write(good_images()["png"])
    out = tmp_path / "out"

    result = run_cli("run", "--config", str(images_job(models_root, images, out, tmp_path)))
    assert result.returncode == 0, result.stderr[-4000:]
    rows = read_output(out)
    errors = dict(zip(rows["path"], rows["embedding_error"], strict=True))
    root = str(images)
    assert sorted(errors) == sorted(
        f"file://{root}/{name}"
        for name in (
            "good.jpg",
            "sub/deep.png",
            "dangling.jpg",
            "self.jpg",
            "sub/loop",
            "linked.jpg",
            "caf\\xe9.jpg",
        )
    )
    for name in ("good.jpg", "sub/deep.png", "linked.jpg", "caf\\xe9.jpg"):
        assert errors[f"file://{root}/{name}"] is None, name
    assert (
        errors[f"file://{root}/dangling.jpg"]
        == f"read failed: No such file or directory: {root}/dangling.jpg"
    )
    assert errors[f"file://{root}/self.jpg"].startswith(
        "read failed: Too many levels of symbolic links"
    )
    assert errors[f"file://{root}/sub/loop"] == "symlink loop: leads back to a parent"
    manifest = read_manifest(out)
    assert (manifest["rowsIn"], manifest["rowsEmbedded"], manifest["rowsFailed"]) == (7, 4, 3)


def test_a_hanging_host_costs_one_diagnosis_not_one_per_row(
    tmp_path: Path,
    models_root: Path,
    web_root: tuple[Path, str],
    hanging_host: BadHost,
    resetting_host: BadHost,
) -> None:
    www, base = web_root
    (www / "good.jpg").write_bytes(good_images()["jpeg"])
    urls = {f"hang-{n}": f"{hanging_host.base}/{n}.jpg" for n in "abcd"}
    urls |= {"reset": f"{resetting_host.base}/x.jpg", "good": f"{base}/good.jpg"}
    table = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": list(urls), "image": list(urls.values())}), table)
    config = job(
        models_root,
        table,
        tmp_path / "out",
        input={"download": {"timeoutSeconds": 1, "retries": 0}},
    )

    result = run_cli("run", "--config", str(write_config(tmp_path / "job.yaml", config)))
    assert result.returncode == 0, result.stderr[-4000:]
    rows = read_output(tmp_path / "out")
    errors = dict(zip(rows["id"], rows["embedding_error"], strict=True))
    assert errors["good"] is None
    assert errors["reset"] and errors["reset"].startswith("download failed:")
    hung = [errors[f"hang-{n}"] for n in "abcd"]
    assert all(e and "timed out" in e for e in hung), hung
    # One worker: the first failed row is read once more to say why, the other three are not.
    assert sum("failed earlier" in e for e in hung) == 3, hung
