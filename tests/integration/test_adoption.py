"""A RayJob created by an earlier attempt (an operator that stopped before recording it) is
adopted as the spec says now: a ``spec.suspend`` changed in between is passed on at once, not
left to the resync (the update handler is not run for a job not yet handled)."""

from __future__ import annotations

from pathlib import Path

from embedding_job.api import parse_spec
from embedding_operator.builders import Defaults, build_rayjob
from embedding_operator.job_objects import Owner
from tests.support.kube import Cluster, Operator
from tests.support.operator_jobs import apply_job, wait_phase
from tests.support.waiting import wait_for

JOB_IMAGE = "example.invalid/embedding-job:test"


def test_an_adopted_rayjob_is_suspended_as_the_spec_says_now(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    # No operator runs yet: the RayJob an earlier attempt created, with the spec of then.
    ej = apply_job(cluster, namespace, "adopted")
    owner = Owner("adopted", namespace, ej["metadata"]["uid"])
    earlier = build_rayjob(owner, parse_spec(ej["spec"]), Defaults(job_image=JOB_IMAGE))
    assert earlier["spec"].get("suspend") is not True
    cluster.apply(earlier, namespace=namespace)
    created = cluster.get("rayjob", "adopted", namespace)
    assert created is not None
    cluster.kubectl(
        "patch", "ej", "adopted", "-n", namespace, "--type", "merge",
        "-p", '{"spec": {"suspend": true}}',
    )  # fmt: skip
    operator = Operator(cluster, tmp_path / "operator.log", job_image=JOB_IMAGE)
    operator.env["EMBEDDING_OPERATOR_RESYNC_SECONDS"] = "3600"  # no resync within the test
    cluster.logs["operator"] = operator.output
    operator.start()
    try:
        wait_phase(cluster, namespace, "adopted", "Submitted")
        rayjobs = cluster.items("rayjob", namespace)
        assert [r["metadata"]["uid"] for r in rayjobs] == [created["metadata"]["uid"]]
        wait_for(
            lambda: (cluster.get("rayjob", "adopted", namespace) or {})["spec"].get("suspend"),
            message="the adopted RayJob suspended",
        )
    finally:
        operator.stop()
