"""What the e2e providers hand to the chart and the API, checked without starting them
(the kind provider cannot run on machines without a Docker engine)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from embedding_job.api import parse_spec
from embedding_operator.builders import Defaults, build_rayjob
from embedding_operator.job_objects import Owner
from tests.support.helm import by_kind, render
from tests.support.providers import KindProvider, LocalProvider, Provider


@pytest.fixture(params=[LocalProvider, KindProvider], ids=["local", "kind"])
def provider(request: pytest.FixtureRequest) -> Iterator[Provider]:
    made: Provider = request.param()
    yield made
    shutil.rmtree(made.workdir, ignore_errors=True)


def test_e2e_jobs_mount_the_shared_workdir_at_its_own_path(provider: Provider) -> None:
    spec = parse_spec(
        {
            "input": {"uri": f"{provider.workdir}/in/"},
            "output": {"uri": f"{provider.workdir}/out/"},
            "cluster": provider.cluster_overrides(),
        }
    )
    rayjob = build_rayjob(Owner("j", "ns", "uid"), spec, Defaults())
    cluster = rayjob["spec"]["rayClusterSpec"]
    for group in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:
        pod = group["template"]["spec"]
        assert {
            "name": "e2e",
            "hostPath": {"path": str(provider.workdir), "type": "Directory"},
        } in pod["volumes"]
        mounts = pod["containers"][0]["volumeMounts"]
        assert {"name": "e2e", "mountPath": str(provider.workdir), "readOnly": False} in mounts
    worker = cluster["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    gpus = worker["resources"]["limits"].get("nvidia.com/gpu", 0)
    assert gpus == (1 if provider.fake_gpus else 0)


def test_kind_installs_the_chart_with_the_images_it_loaded() -> None:
    kind = KindProvider()
    try:
        docs = render(extra=kind.chart_args())
    finally:
        shutil.rmtree(kind.workdir, ignore_errors=True)
    (deployment,) = by_kind(docs, "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert (container["image"], container["imagePullPolicy"]) == (kind.operator_image, "Never")
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["EMBEDDING_OPERATOR_JOB_IMAGE"] == kind.job_image
