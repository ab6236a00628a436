"""Which RayJob events take a handler thread (handlers.rayjob_has_news, kopf's ``when=``)."""

from __future__ import annotations

import kopf

from embedding_operator.handlers import rayjob_has_news


def rayjob(status: dict[str, str] | None) -> kopf.Body:
    raw = {"metadata": {"name": "j", "namespace": "ns"}, "spec": {}}
    return kopf.Body({**raw, "status": status} if status is not None else raw)  # type: ignore[arg-type]


def test_a_rayjob_with_a_status_is_news_until_it_is_deleted() -> None:
    running = rayjob({"jobStatus": "RUNNING", "jobDeploymentStatus": "Running"})
    assert rayjob_has_news(body=running, type="MODIFIED")
    assert rayjob_has_news(body=running, type=None)  # the first listing after a restart
    assert not rayjob_has_news(body=running, type="DELETED")


def test_a_rayjob_kuberay_has_not_touched_is_not() -> None:
    assert not rayjob_has_news(body=rayjob(None), type="ADDED")
    assert not rayjob_has_news(body=rayjob({}), type="ADDED")
