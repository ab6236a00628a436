"""The operator-wide tenancy policy: what a spec may ask of the cluster."""

from __future__ import annotations

from typing import Any

import pytest

from embedding_job.api import parse_spec
from embedding_operator.policy import Policy, image_prefix, violations, within

DEFAULT_IMAGE = "ghcr.io/embedding-operator/embedding-job:0.1.0"
POLICY = Policy(
    default_image=DEFAULT_IMAGE,
    allowed_images=("registry.example.com/ml/",),
    allowed_host_paths=("/data/",),
    allowed_nfs=("nfs.example.com:/exports/ml",),
)


def spec(**cluster: Any) -> Any:
    return parse_spec(
        {"input": {"uri": "s3://b/in/"}, "output": {"uri": "s3://b/out/"}, "cluster": cluster}
    )


def volume(path: str) -> dict[str, Any]:
    return {"name": "v", "mountPath": "/mnt/v", "hostPath": path}


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/data", True),
        ("/data/images", True),
        ("/data/../etc", False),
        ("/database", False),
        ("/", False),
        ("/etc", False),
    ],
)
def test_host_paths_must_lie_within_an_allowed_directory(path: str, allowed: bool) -> None:
    assert within(path, "/data/") is allowed
    problems = violations(spec(volumes=[volume(path)]), POLICY)
    assert (problems == []) is allowed
    if not allowed:
        assert "spec.cluster.volumes[0].hostPath" in problems[0]


def test_host_paths_are_off_by_default() -> None:
    problems = violations(spec(volumes=[volume("/data")]), Policy(default_image=DEFAULT_IMAGE))
    assert "hostPath is off" in problems[0]
    claim = {"name": "v", "mountPath": "/mnt/v", "claimName": "shared"}
    assert violations(spec(volumes=[claim]), Policy(default_image=DEFAULT_IMAGE)) == []


@pytest.mark.parametrize(
    ("image", "allowed"),
    [
        (None, True),
        (DEFAULT_IMAGE, True),
        ("registry.example.com/ml/embedding-job:2", True),
        ("registry.example.com/other/embedding-job:2", False),
        ("docker.io/library/busybox", False),
    ],
)
def test_only_allowed_job_images(image: str | None, allowed: bool) -> None:
    problems = violations(spec(image=image) if image else spec(), POLICY)
    assert (problems == []) is allowed
    if not allowed:
        assert problems[0].startswith("spec.cluster.image")


def test_tolerations_name_an_allowed_taint_and_never_all() -> None:
    gpu = {"key": "nvidia.com/gpu", "operator": "Exists"}
    assert violations(spec(worker={"tolerations": [gpu]}), POLICY) == []
    everything = {"operator": "Exists"}
    control_plane = {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}
    problems = violations(spec(head={"tolerations": [everything, control_plane]}), POLICY)
    assert len(problems) == 2
    assert "spec.cluster.head.tolerations[0]" in problems[0] and "every taint" in problems[0]
    assert "spec.cluster.head.tolerations[1].key" in problems[1]


def test_control_plane_nodes_cannot_be_selected() -> None:
    problems = violations(
        spec(worker={"nodeSelector": {"node-role.kubernetes.io/control-plane": ""}}), POLICY
    )
    assert "spec.cluster.worker.nodeSelector" in problems[0]
    assert violations(spec(worker={"nodeSelector": {"pool": "gpu"}}), POLICY) == []


def test_policy_from_the_charts_environment() -> None:
    env = {
        "EMBEDDING_OPERATOR_ALLOWED_IMAGES": "a/,b/",
        "EMBEDDING_OPERATOR_ALLOWED_HOST_PATHS": "",
        "EMBEDDING_OPERATOR_ALLOWED_TOLERATION_KEYS": "x, y",
    }
    policy = Policy.from_env("d:1", env)
    assert policy.allowed_images == ("a/", "b/") and policy.allowed_host_paths == ()
    assert policy.allowed_toleration_keys == ("x", "y")
    assert policy.denied_node_selector_keys == ("node-role.kubernetes.io/",)  # unset: default


@pytest.mark.parametrize(
    ("server", "path", "allowed"),
    [
        ("nfs.example.com", "/exports/ml", True),
        ("nfs.example.com", "/exports/ml/photos", True),
        ("nfs.example.com", "/exports/ml/../hr", False),
        ("nfs.example.com", "/exports/mlx", False),
        ("other.example", "/exports/ml", False),
    ],
)
def test_nfs_only_allowed_exports(server: str, path: str, allowed: bool) -> None:
    nfs = {"name": "n", "mountPath": "/n", "nfs": {"server": server, "path": path}}
    problems = violations(spec(volumes=[nfs]), POLICY)
    assert (problems == []) is allowed
    if not allowed:
        assert "spec.cluster.volumes[0].nfs" in problems[0]
    assert violations(spec(volumes=[nfs]), Policy(default_image=DEFAULT_IMAGE))  # off by default


def test_an_image_prefix_ends_at_a_boundary() -> None:
    assert image_prefix("registry.example.com/ml") == "registry.example.com/ml/"
    assert image_prefix("registry.example.com/ml:") == "registry.example.com/ml:"
    policy = Policy.from_env(DEFAULT_IMAGE, {"EMBEDDING_OPERATOR_ALLOWED_IMAGES": "r.io/ml"})
    assert violations(spec(image="r.io/ml-evil/x:1"), policy)
    assert violations(spec(image="r.io/ml/job:1"), policy) == []
