"""kopf's record of a handled EmbeddingJob (settings.SpecRecord)."""

from __future__ import annotations

import copy
from typing import Any

import kopf

from embedding_job.api import GROUP, KIND, PLURAL, VERSION
from embedding_operator import main  # noqa: F401 - registers the operator's handlers
from embedding_operator.crd import build_crd
from embedding_operator.settings import _UNWATCHED, SpecRecord, configure


def job(**spec: Any) -> dict[str, Any]:
    """An EmbeddingJob as a watch event brings it: managedFields, labels, annotations, status
    with kopf's own record."""
    return {
        "apiVersion": "embedding.dev/v1alpha1",
        "kind": "EmbeddingJob",
        "metadata": {
            "name": "j",
            "namespace": "ns",
            "labels": {"team": "a"},
            "annotations": {"kopf.zalando.org/x": "y", "note": "kept by kopf unless ignored"},
            "managedFields": [
                {"manager": "kopf", "fieldsV1": {"f:status": {"f:phase": {}, "f:kopf": {}}}}
            ],
        },
        "spec": {
            "input": {"uri": "s3://b/in/"},
            "output": {"uri": "s3://b/out/"},
            "cluster": {"workers": 2, "tolerations": [{"key": "gpu", "operator": "Exists"}]},
            **spec,
        },
        "status": {
            "phase": "Submitted",
            "output": {"uri": "s3://b/out/"},
            "kopf": {"last-handled-configuration": '{"spec":{"suspend":false}}'},
        },
    }


def kopfs_own(body: dict[str, Any], extra: Any = None) -> Any:
    return kopf.StatusDiffBaseStorage(ignored_fields=_UNWATCHED).build(
        body=kopf.Body(body), extra_fields=extra
    )


def test_the_record_is_kopfs_own_for_the_same_object() -> None:
    for body, extra in [
        (job(suspend=True), None),
        (job(suspend=False), {("spec", "suspend")}),
        (job(), {("spec", "suspend")}),  # no suspend at all
        (job(suspend=True), {("status", "phase")}),  # a field handler on the status
        (job(suspend=True), {("spec", "cluster", "workers"), ("spec", "absent", "x")}),
    ]:
        ours = SpecRecord().build(body=kopf.Body(body), extra_fields=extra)
        assert ours == kopfs_own(body, extra)
    assert SpecRecord().build(body=kopf.Body(job(suspend=True))) == {"spec": {"suspend": True}}


def test_the_record_shares_nothing_with_the_object() -> None:
    body = job(suspend=False)
    before = copy.deepcopy(body)
    record = SpecRecord().build(body=kopf.Body(body), extra_fields={("status", "output")})
    record["status"]["output"]["uri"] = "elsewhere"
    record["spec"]["suspend"] = True
    assert body == before


def test_a_field_given_as_text_is_a_path() -> None:
    body = job(suspend=True)
    assert SpecRecord().build(body=kopf.Body(body), extra_fields=["status.phase"]) == kopfs_own(
        body, ["status.phase"]
    )


def test_other_kinds_get_no_record() -> None:
    rayjob = {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": {"name": "j", "labels": {"embedding.dev/job": "j"}},
        "spec": {"suspend": False, "entrypoint": "embedding-job run", "backoffLimit": 0},
        "status": {"jobStatus": "RUNNING"},
    }
    for extra in (None, {("status", "jobStatus")}, {("spec", "suspend")}):
        assert SpecRecord().build(body=kopf.Body(rayjob), extra_fields=extra) == {}


def test_kopf_compares_records_of_the_recorded_kinds_only() -> None:
    """kopf reads a record only for the change handlers and daemons of its kind: those are
    the EmbeddingJob's alone, or a RayJob's empty record would hide its changes."""
    registry = kopf.get_default_registry()
    selectors = registry._changing.get_all_selectors() | registry._spawning.get_all_selectors()
    assert {(s.group, s.version, s.any_name) for s in selectors} == {(GROUP, VERSION, PLURAL)}
    names = build_crd()["spec"]["names"]  # the kind those handlers' resource is of
    assert (names["plural"], names["kind"]) == (PLURAL, KIND)
    assert SpecRecord.recorded_kinds == {names["kind"]}


def test_kopf_is_told_to_keep_this_record() -> None:
    settings = kopf.OperatorSettings()
    configure(settings)
    assert isinstance(settings.persistence.diffbase_storage, SpecRecord)
