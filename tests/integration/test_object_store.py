"""The job on s3:// inputs and outputs, against an S3-compatible server on loopback (moto).

gs:// is not covered: Daft's GCSConfig has no endpoint option, so its GCS client cannot be
pointed at a test server.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from tests.support.images import good_images
from tests.support.jobs import assert_exactly_bad_rows_null, job
from tests.support.models import VIT
from tests.support.object_store_jobs import manifest, parquet_table, read_parquet_output, run
from tests.support.s3_server import Bucket

IMAGES = good_images()


def test_images_on_s3_to_parquet_on_s3_with_manifest_and_success(
    tmp_path: Path, models_root: Path, s3_bucket: Bucket
) -> None:
    for name, data in IMAGES.items():
        s3_bucket.put(f"images/{name}.jpg", data)
    s3_bucket.put("images/nested/deep.png", IMAGES["png"])
    s3_bucket.put("images/README.txt", b"not an image")
    config = job(
        models_root, f"{s3_bucket.uri}/images/", f"{s3_bucket.uri}/out", model={"name": VIT}
    )
    config["input"].pop("idColumn")

    result = run(tmp_path, s3_bucket, config)
    assert result.returncode == 0, result.stderr[-4000:]
    keys = s3_bucket.keys("out/")
    assert {"out/_manifest.json", "out/_SUCCESS", "out/_job.json"} <= set(keys)
    out = read_parquet_output(s3_bucket, "out")
    expected = {f"{s3_bucket.uri}/images/{n}.jpg" for n in IMAGES} | {
        f"{s3_bucket.uri}/images/nested/deep.png"
    }
    assert set(out["path"]) == expected and len(out["path"]) == len(expected)
    assert all(e is None for e in out["embedding_error"])
    written = manifest(s3_bucket, "out")
    assert (written["status"], written["rowsIn"], written["rowsFailed"]) == (
        "succeeded",
        len(expected),
        0,
    )
    assert written["files"] and all(f"out/{f}" in keys for f in written["files"])

    # mode: error refuses the finished output and leaves it exactly as it was.
    refused = run(tmp_path, s3_bucket, config)
    assert refused.returncode == 3 and "already holds" in refused.stderr
    assert s3_bucket.keys("out/") == keys
    assert manifest(s3_bucket, "out") == written

    # An explicit glob on s3:// takes every file it matches.
    config["input"]["uri"] = f"{s3_bucket.uri}/images/*.jpg"
    config["output"]["uri"] = f"{s3_bucket.uri}/globbed"
    result = run(tmp_path, s3_bucket, config)
    assert result.returncode == 0, result.stderr[-4000:]
    assert len(read_parquet_output(s3_bucket, "globbed")["path"]) == len(IMAGES)


def test_table_on_s3_of_s3_urls_to_lance_on_s3(
    tmp_path: Path, models_root: Path, s3_bucket: Bucket
) -> None:
    import daft_lance

    ids = [*IMAGES, "bad_missing", "bad_junk"]
    urls = [s3_bucket.put(f"img/{name}.img", data) for name, data in IMAGES.items()]
    urls += [f"{s3_bucket.uri}/img/missing.jpg", s3_bucket.put("img/junk.img", b"junk")]
    s3_bucket.put("tables/in.parquet", parquet_table({"id": ids, "image": urls}))
    config = job(
        models_root,
        f"{s3_bucket.uri}/tables/in.parquet",
        f"{s3_bucket.uri}/out.lance",
        output={"format": "lance"},
    )

    result = run(tmp_path, s3_bucket, config)
    assert result.returncode == 0, result.stderr[-4000:]
    out = daft_lance.read_lance(
        f"{s3_bucket.uri}/out.lance", io_config=s3_bucket.server.io_config()
    ).to_pydict()
    assert_exactly_bad_rows_null(out, ids, {"bad_missing", "bad_junk"}, dim=32)
    assert out["image"] == [urls[ids.index(i)] for i in out["id"]]
    written = manifest(s3_bucket, "out.lance")
    assert (written["status"], written["rowsIn"], written["rowsFailed"]) == (
        "succeeded",
        len(ids),
        2,
    )
    assert written["output"]["format"] == "lance" and written["files"]
    assert "out.lance/_SUCCESS" in s3_bucket.keys("out.lance/")


def test_resume_on_s3_embeds_only_the_missing_ids(
    tmp_path: Path, models_root: Path, s3_bucket: Bucket
) -> None:
    cells = list(IMAGES.values())
    first_ids = [f"img-{i:02d}" for i in range(6)]
    all_ids = [f"img-{i:02d}" for i in range(10)]

    def table(ids: list[str]) -> str:
        rows = {"id": ids, "image": pa.array([cells[i % len(cells)] for i in range(len(ids))])}
        return s3_bucket.put("in.parquet", parquet_table(rows))

    source = table(first_ids)
    config = job(
        models_root,
        source,
        f"{s3_bucket.uri}/out",
        input={"srcType": "image_binary"},
        output={"resume": True},
    )
    first = run(tmp_path, s3_bucket, config)
    assert first.returncode == 0, first.stderr[-4000:]
    assert sorted(read_parquet_output(s3_bucket, "out")["id"]) == first_ids

    table(all_ids)
    second = run(tmp_path, s3_bucket, config)
    assert second.returncode == 0, second.stderr[-4000:]
    assert sorted(read_parquet_output(s3_bucket, "out")["id"]) == all_ids
    written = manifest(s3_bucket, "out")
    assert (written["rowsIn"], written["rowsSkipped"], written["rowsEmbedded"]) == (10, 6, 4)
    assert written["rowsOut"] == 10
    assert all(f"out/{f}" in s3_bucket.keys("out/") for f in written["files"])
