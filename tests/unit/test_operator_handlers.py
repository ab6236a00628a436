"""Which RayJob events take a handler thread (handlers.rayjob_has_news, kopf's ``when=``)."""

from __future__ import annotations

import inspect

import kopf

from embedding_operator.handlers import follow, rayjob_has_news


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


def test_kopf_asks_it_and_follows_jobs_on_its_loop() -> None:
    handlers = kopf.get_default_registry()._watching.get_all_handlers()
    by_name = {h.fn.__name__: h for h in handlers}  # type: ignore[union-attr]
    assert by_name["rayjob_changed"].when is rayjob_has_news
    # Async: a sync wrapper (metrics.timed) would send it back to a handler thread.
    assert inspect.iscoroutinefunction(follow)
    assert by_name["follow"].fn is follow
