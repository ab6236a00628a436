"""The operator's status writes against the real apiserver: one worked out from a stale copy
of a job is refused (the job changed since), one for a job that is gone says so."""

from __future__ import annotations

import pytest
from kubernetes import config

from embedding_operator import kube
from embedding_operator.kube import Patched
from tests.support.kube import Cluster
from tests.support.operator_jobs import apply_job, ej_status


def test_a_status_from_a_stale_copy_is_not_written_and_a_gone_job_is_said(
    cluster: Cluster, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    monkeypatch.setattr(kube, "_shared", [api])
    version = apply_job(cluster, namespace, "stale")["metadata"]["resourceVersion"]

    def patch(message: str, since: str | None = None) -> Patched:
        return kube.patch_embeddingjob_status(namespace, "stale", {"message": message}, since)

    assert patch("first", since=version) is Patched.APPLIED
    # The same copy again: the job changed since (the write above), so nothing is written.
    assert patch("from a stale copy", since=version) is Patched.CHANGED
    assert ej_status(cluster, namespace, "stale")["message"] == "first"
    assert patch("unconditional") is Patched.APPLIED
    assert ej_status(cluster, namespace, "stale")["message"] == "unconditional"
    cluster.kubectl("delete", "ej", "stale", "-n", namespace)
    assert patch("too late") is Patched.GONE
    assert patch("too late", since=version) is Patched.GONE
