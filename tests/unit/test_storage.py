"""Paths and URIs on local and object stores; the S3 settings every reader and writer shares."""

from __future__ import annotations

import os
from pathlib import Path

from embedding_job.api import DownloadSpec
from embedding_job.io import storage
from embedding_job.io.io_config import io_config


def test_written_paths_keep_their_store() -> None:
    assert storage.as_uri("s3://bkt/out", "bkt/out/a-0.parquet") == "s3://bkt/out/a-0.parquet"
    assert storage.as_uri("s3://bkt/out", "s3://bkt/out/a.parquet") == "s3://bkt/out/a.parquet"
    assert storage.as_uri("/data/out", "/data/out/a.parquet") == "/data/out/a.parquet"
    assert storage.as_uri("file:///data/out", "/data/out/a.parquet") == "/data/out/a.parquet"


def test_manifest_names_files_relative_to_the_output(tmp_path: Path) -> None:
    assert storage.relative("s3://bkt/out/", "s3://bkt/out/x/a.parquet") == "x/a.parquet"
    assert storage.relative(str(tmp_path), f"{tmp_path}/a.parquet") == "a.parquet"
    assert storage.relative(tmp_path.as_uri(), f"file://{tmp_path}/a.parquet") == "a.parquet"


def test_list_files_returns_uris_that_open_again(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_text("a")
    assert storage.list_files(str(tmp_path)) == [f"{tmp_path}/d/a.txt"]
    assert storage.list_files(str(tmp_path / "missing")) == []


def test_an_http_endpoint_turns_tls_off_for_every_s3_client() -> None:
    plain = io_config(DownloadSpec(), env={"AWS_ENDPOINT_URL": "http://127.0.0.1:9000"})
    assert plain.s3.endpoint_url == "http://127.0.0.1:9000" and plain.s3.use_ssl is False
    scoped = io_config(DownloadSpec(), env={"AWS_ENDPOINT_URL_S3": "https://minio.example:9000"})
    assert scoped.s3.use_ssl is True
    assert io_config(DownloadSpec(), env={}).s3.use_ssl is True


def test_a_local_listing_keeps_every_entry_and_every_byte_of_its_names(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.JPG").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("skipped: not an image name")
    os.symlink(tmp_path / "gone.png", tmp_path / "dangling.png")
    os.symlink(tmp_path, tmp_path / "sub" / "back")
    # Not loops: followed. A directory reached by two names is listed under each of them,
    # as a symlinked file is its own row (every entry of the listing is one row).
    os.symlink(tmp_path / "sub", tmp_path / "again")
    os.symlink(tmp_path / "sub", tmp_path / "also")
    (tmp_path / "sub" / "b.png").write_bytes(b"x")
    raw = os.fsencode(tmp_path) + b"/\xff.jpg"
    open(raw, "wb").close()

    listed = {f.raw: f.problem for f in storage.walk_local(str(tmp_path), (".jpg", ".png"))}
    root = os.fsencode(tmp_path)
    assert listed == {
        root + b"/a.JPG": None,
        root + b"/again/b.png": None,
        root + b"/again/back": "symlink loop: leads back to a parent",
        root + b"/also/b.png": None,
        root + b"/also/back": "symlink loop: leads back to a parent",
        root + b"/dangling.png": None,
        root + b"/sub/b.png": None,
        root + b"/sub/back": "symlink loop: leads back to a parent",
        raw: None,
    }
    assert storage.ListedFile(raw).path == f"{tmp_path}/\\xff.jpg"
