"""What the job reports while it runs: rate, time left, the precision it used, its metrics."""

from __future__ import annotations

from typing import Any

import pytest

from embedding_job.api import EmbeddingJobStatus
from embedding_job.run.metrics import Call, job_labels
from embedding_job.run.row_counts import precision, precision_used
from embedding_job.run.status_report import (
    StatusReporter,
    Throughput,
    output_status,
    remaining_seconds,
)


def test_the_rate_is_over_the_last_minute_not_since_the_model_loaded() -> None:
    rate = Throughput(window=60)
    rate.add(0, 0)
    assert rate.rate() == 0
    rate.add(90, 0)  # the model loads for a minute and a half
    rate.add(100, 100)
    assert rate.rate() == 1  # from 0: the window reaches back to a sample at or before 40
    rate.add(160, 700)
    assert rate.rate() == 10  # from 100: the load is out of the window
    rate.add(170, 900)
    assert rate.rate() == pytest.approx(800 / 70)


def test_time_left_counts_the_rows_not_yet_done_nor_skipped() -> None:
    assert remaining_seconds(done=100, skipped=400, total=1000, rate=10) == 50
    assert remaining_seconds(done=101, skipped=0, total=1000, rate=10) == 90  # rounded up
    assert remaining_seconds(done=1000, skipped=0, total=1000, rate=10) == 0
    assert remaining_seconds(done=10, skipped=0, total=None, rate=10) is None
    assert remaining_seconds(done=0, skipped=0, total=1000, rate=0) is None


def test_the_precision_used_is_what_the_workers_counted_per_model() -> None:
    assert precision_used({}, 1) == [(None, None)]
    assert precision_used({precision(0, "cpu", "float32"): 12}, 1) == [("cpu", "float32")]
    mixed = {precision(0, "cuda", "float16"): 8, precision(0, "cpu", "float32"): 4}
    assert precision_used(mixed, 1) == [("cpu, cuda", "float32, float16")]
    assert precision_used({"0/cuda/float16": 0, "0/cpu/float32": 3}, 1) == [("cpu", "float32")]
    # Two models on one GPU worker, each at its own precision; a third never ran.
    two = {precision(0, "cuda", "bfloat16"): 5, precision(1, "cuda", "float32"): 5}
    assert precision_used(two, 3) == [("cuda", "bfloat16"), ("cuda", "float32"), (None, None)]


def test_the_output_status_carries_the_device_and_dtype_of_the_manifest() -> None:
    manifest = {"output": {"uri": "s3://b/o/"}, "device": "cpu", "dtype": "float32"}
    status = EmbeddingJobStatus(output=output_status(manifest)).to_patch()
    assert status["output"] == {"uri": "s3://b/o/", "device": "cpu", "dtype": "float32"}
    # No model ran (a resumed, complete output): the keys are left out, not nulled.
    none_ran = output_status({"output": {"uri": "x"}, "device": None, "dtype": None})
    assert EmbeddingJobStatus(output=none_ran).to_patch() == {"output": {"uri": "x"}}
    # Several models: each entry says how that model ran.
    entries = [
        {"column": "a", "model": "m", "device": "cuda", "dtype": "bfloat16"},
        {"column": "b", "model": "n", "device": None, "dtype": None},
    ]
    each = output_status({"output": {"uri": "x"}, "embeddings": entries}).to_patch()
    assert each["embeddings"] == [entries[0], {"column": "b", "model": "n"}]


def test_a_call_splits_its_time_between_the_models_and_decoding() -> None:
    assert Call(rows=8, failed=1, seconds=2.0, model_seconds=(1.5,)).decode_seconds == 0.5
    assert Call(rows=8, failed=0, seconds=2.0, model_seconds=(0.5, 1.0)).decode_seconds == 0.5
    # Timer granularity never makes decoding negative.
    assert Call(rows=8, failed=0, seconds=1.0, model_seconds=(1.0000001,)).decode_seconds == 0


def test_metric_labels_name_the_embeddingjob_and_its_models() -> None:
    env = {"EMBEDDING_JOB_NAME": "photos"}
    assert job_labels(["facebook/dinov2-large"], env).common() == {
        "embedding_job": "photos",
        "model": "facebook/dinov2-large",
    }
    # Rows are counted once for the job's models together, as the manifest names them.
    two = job_labels(["facebook/dinov2-base", "openai/clip-vit-base-patch32"], env)
    assert two.common()["model"] == "facebook/dinov2-base, openai/clip-vit-base-patch32"
    assert two.models == ("facebook/dinov2-base", "openai/clip-vit-base-patch32")
    assert job_labels(["m"], {}).common()["embedding_job"] == ""


class Recorder:
    """The two calls a reporter makes, recorded (a unit test of the reporter's own order)."""

    def __init__(self, uid: str) -> None:
        self.uid = uid
        self.written: list[dict[str, Any]] = []

    def get_namespaced_custom_object_status(self, *_: Any) -> dict[str, Any]:
        return {"metadata": {"uid": self.uid}}

    def patch_namespaced_custom_object_status(self, *args: Any) -> None:
        self.written.append(args[-1]["status"])


def test_no_progress_is_written_after_the_result() -> None:
    api = Recorder("u1")
    reporter = StatusReporter("ns", "job", api, uid="u1")
    assert reporter.progress(5, 0, 0, 10, 1.0)
    manifest = {"rowsEmbedded": 9, "rowsFailed": 1, "rowsSkipped": 0, "rowsIn": 10}
    assert reporter.result({**manifest, "output": {"uri": "x"}})
    assert not reporter.progress(7, 0, 0, 10, 1.0)  # a late sample of the progress loop
    assert [w["progress"]["rowsDone"] for w in api.written] == [5, 10]
    assert reporter.failed("JobFailed", "after the result, the job's error is still told")
    assert api.written[-1]["jobError"]["reason"] == "JobFailed"


def test_a_namesake_with_another_uid_is_never_written() -> None:
    api = Recorder("u2")
    reporter = StatusReporter("ns", "job", api, uid="u1")
    assert reporter.is_other_job({"metadata": {"uid": "u2"}})
    assert not reporter.is_other_job({"metadata": {"uid": "u1"}})
    assert not reporter.progress(1, 0, 0, 10, 1.0)
    api.uid = "u1"  # detached for good, even were it to read its own uid again
    assert not reporter.progress(2, 0, 0, 10, 1.0)
    assert api.written == []
