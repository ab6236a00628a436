"""Retries on s3://, against the real S3 API (moto on loopback) with faults in front of it
(tests/support/s3_faults.py): reads that S3 answers with 503 SlowDown, or whose connection is
reset, are tried again and embedded; a key that never answers costs its own tries and is one
error row; the first write of each output file fails and the write is retried. And a retried
attempt of the same job (same uid) replaces its own output on s3:// as on local paths."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tests.support.images import good_images
from tests.support.jobs import job, table
from tests.support.object_store_jobs import manifest, read_parquet_output, run
from tests.support.s3_faults import Fault, faulty_s3
from tests.support.s3_server import Bucket, S3Server, new_bucket

TRIES = 3
IMAGES = good_images()


def test_reads_and_writes_on_s3_are_retried_and_a_dead_key_costs_only_its_tries(
    tmp_path: Path, models_root: Path, s3_server: S3Server
) -> None:
    bucket = new_bucket(s3_server)
    names = [*IMAGES, "dead"]
    urls = [bucket.put(f"img/{name}.img", IMAGES.get(name, IMAGES["jpeg"])) for name in names]
    source = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": names, "image": urls}), source)
    faults = [
        Fault("GET", r"/img/dead\.img$", "slowdown", times=None),  # never answers with it
        Fault("GET", r"/img/jpeg\.img$", "reset", times=TRIES - 1),  # the last try gets it
        Fault("GET", r"/img/", "slowdown", times=1),  # every other image: its first read
        Fault("PUT", r"/out/[^_][^/]*\.parquet$", "slowdown", times=1),  # each data file
    ]
    config = job(
        models_root,
        source,
        f"{bucket.uri}/out",
        input={"download": {"retries": TRIES - 1, "timeoutSeconds": 5}},
    )
    with faulty_s3(s3_server, faults) as proxy:
        result = run(tmp_path, Bucket(proxy.server, bucket.name), config)
    assert result.returncode == 0, result.stderr[-4000:]

    out = read_parquet_output(bucket, "out")
    errors = dict(zip(out["id"], out["embedding_error"], strict=True))
    assert Counter(out["id"]) == Counter(names)
    assert {name for name, error in errors.items() if error} == {"dead"}, errors
    assert errors["dead"] == (  # S3's SlowDown, as Daft's client names it
        f"download failed: Throttled when trying to read path `{urls[-1]}` "
        f"(host s3://{bucket.name}, {TRIES} tries)"
    )
    gets = {path: n for (method, path), n in proxy.requests.items() if method == "GET"}
    reads = {name: gets[f"/{bucket.name}/img/{name}.img"] for name in names}
    # Each image read until it came back, none more: the dead key exactly its tries.
    assert reads == {**dict.fromkeys(IMAGES, 2), "jpeg": TRIES, "dead": TRIES}, reads
    put_failed = [path for (method, path) in proxy.failed if method == "PUT"]
    assert put_failed, "no output write was failed: the fault missed the writer's requests"
    written = manifest(bucket, "out")
    assert (written["rowsIn"], written["rowsEmbedded"], written["rowsFailed"]) == (
        len(names),
        len(IMAGES),
        1,
    )
    keys = bucket.keys("out/")
    assert "out/_SUCCESS" in keys and all(f"out/{f}" in keys for f in written["files"])
    assert {f"/{bucket.name}/{k}" for k in keys} >= set(put_failed)


def test_a_retry_of_the_same_job_on_s3_replaces_its_own_output(
    tmp_path: Path, models_root: Path, s3_bucket: Bucket
) -> None:
    ids = [f"img-{i:02d}" for i in range(8)]
    source = table(tmp_path / "in.parquet", ids)
    config = job(models_root, source, f"{s3_bucket.uri}/out", input={"srcType": "image_binary"})
    same = {"EMBEDDING_JOB_UID": "uid-1"}
    first = run(tmp_path, s3_bucket, config, env=same)
    assert first.returncode == 0, first.stderr[-4000:]
    # What a crash mid-write of an earlier attempt leaves: a data file without its footer.
    torn = "out/torn-by-a-crash-0.parquet"
    s3_bucket.put(torn, b"PAR1" + bytes(256))

    # KubeRay retries the same RayJob (same EmbeddingJob uid): mode error must not block it.
    retry = run(tmp_path, s3_bucket, config, env=same)
    assert retry.returncode == 0, retry.stderr[-4000:]
    assert Counter(read_parquet_output(s3_bucket, "out")["id"]) == Counter(ids)
    assert torn not in s3_bucket.keys("out/")
    kept = s3_bucket.keys("out/")
    other = run(tmp_path, s3_bucket, config, env={"EMBEDDING_JOB_UID": "uid-2"})
    assert other.returncode == 3 and "already holds" in other.stderr, other.stderr[-2000:]
    assert s3_bucket.keys("out/") == kept  # another job's refusal touches nothing
