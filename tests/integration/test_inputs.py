"""What input.uri may name beyond tables and plain folders: one web image, awkward listings."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import VIT
from tests.images import good_images
from tests.integration.jobs import read_manifest, read_output, run_cli, write_config
from tests.integration.test_pipeline import job


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
