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


def test_bad_hosts_cost_their_own_rows_a_bounded_number_of_reads(
    tmp_path: Path,
    models_root: Path,
    web_root: tuple[Path, str],
    hanging_host: BadHost,
    resetting_host: BadHost,
) -> None:
    www, base = web_root
    (www / "good.jpg").write_bytes(good_images()["jpeg"])
    # 60 good images, 20 on a host that never answers, 10 on one that resets: interleaved.
    urls = {f"good-{n}": f"{base}/good.jpg" for n in range(60)}
    urls |= {f"hang-{n}": f"{hanging_host.base}/{n}.jpg" for n in range(20)}
    urls |= {f"reset-{n}": f"{resetting_host.base}/{n}.jpg" for n in range(10)}
    ids = sorted(urls, key=lambda row: (int(row.rsplit("-", 1)[1]), row))
    table = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": ids, "image": [urls[i] for i in ids]}), table)
    download = {"timeoutSeconds": 1, "retries": 2, "maxConnections": 8}
    config = job(models_root, table, tmp_path / "out", input={"download": download})

    result = run_cli("run", "--config", str(write_config(tmp_path / "job.yaml", config)))
    assert result.returncode == 0, result.stderr[-4000:]
    rows = read_output(tmp_path / "out")
    errors = dict(zip(rows["id"], rows["embedding_error"], strict=True))
    assert all(errors[f"good-{n}"] is None for n in range(60))
    hung = [errors[f"hang-{n}"] or "" for n in range(20)]
    assert all(f"host {hanging_host.base}" in e for e in hung), hung
    assert all("no answer within 1 s" in e for e in hung), hung
    reset = [errors[f"reset-{n}"] or "" for n in range(10)]
    assert all(f"host {resetting_host.base}" in e and "reset" in e for e in reset), reset
    # Each bad host: at most the reads in flight when it was given up, and the 3 tries that
    # gave it up; not 3 per row (60 and 30), and not Daft's retries on top.
    assert hanging_host.connections <= 8 + 3 - 1, hanging_host.connections
    assert resetting_host.connections <= 8 + 3 - 1, resetting_host.connections
    assert sum("skipped" in e for e in hung) >= 20 - (8 + 3 - 1)
