"""The Helm chart, rendered by real helm and asserted on as data."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.helm import CHART, KUBE_VERSION, by_kind, helm, render
from tests.support.tools import ROOT

CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))
OPERATOR_RULES = {
    ("embedding.dev", "embeddingjobs"): {"get", "list", "watch", "patch", "update"},
    ("embedding.dev", "embeddingjobs/status"): {"get", "patch", "update"},
    ("embedding.dev", "embeddingjobs/finalizers"): {"update"},
    ("ray.io", "rayjobs"): {"get", "list", "watch", "create", "patch"},
    ("", "serviceaccounts"): {"get", "create"},
    ("", "pods"): {"list"},
    ("rbac.authorization.k8s.io", "roles"): {"get", "create"},
    ("rbac.authorization.k8s.io", "rolebindings"): {"get", "create"},
    ("", "events"): {"create", "patch"},
    ("events.k8s.io", "events"): {"create", "patch"},
}
DISCOVERY_RULES = {("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"}}


def rules_of(role: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    rules: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                rules[(group, resource)] = set(rule["verbs"])
    return rules


def assert_hardened(deployment: dict[str, Any]) -> None:
    spec = deployment["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    ctx = container["securityContext"]
    assert ctx["readOnlyRootFilesystem"] is True and ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["limits"] and container["resources"]["requests"]


@pytest.mark.parametrize("values", [None, *CI_VALUES], ids=lambda p: p.stem if p else "default")
def test_lint_strict(values: Path | None) -> None:
    args = ["lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION]
    helm(*args, *(["-f", str(values)] if values else []))


def test_default_install_is_cluster_wide_least_privilege_and_hardened() -> None:
    docs = render()
    (deployment,) = by_kind(docs, "Deployment")
    assert_hardened(deployment)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "ghcr.io/embedding-operator/operator:0.1.0"
    assert "--all-namespaces" in container["args"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["EMBEDDING_OPERATOR_JOB_IMAGE"] == "ghcr.io/embedding-operator/embedding-job:0.1.0"
    worker_shape = [env[f"EMBEDDING_OPERATOR_WORKER_{k}"] for k in ("GPUS", "CPU", "MEMORY")]
    assert worker_shape == ["1", "8", "32Gi"]
    (role,) = by_kind(docs, "ClusterRole")
    assert rules_of(role) == OPERATOR_RULES | DISCOVERY_RULES
    (binding,) = by_kind(docs, "ClusterRoleBinding")
    assert (
        binding["subjects"][0]["name"]
        == deployment["spec"]["template"]["spec"]["serviceAccountName"]
    )
    assert not by_kind(docs, "Role")


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.stem)
def test_every_ci_values_file_renders_hardened_with_explicit_verbs(values: Path) -> None:
    docs = render(values)
    (deployment,) = by_kind(docs, "Deployment")
    assert_hardened(deployment)
    for role in by_kind(docs, "ClusterRole") + by_kind(docs, "Role"):
        for rule in role["rules"]:
            assert (
                "*" not in rule["verbs"]
                and "*" not in rule["resources"]
                and "*" not in rule["apiGroups"]
            )


def test_namespaced_install_has_roles_only_in_watched_namespaces() -> None:
    docs = render(CHART / "ci" / "namespaced-values.yaml")
    # Cluster-wide: only read access to CRDs, which kopf needs to discover resources.
    (discovery,) = by_kind(docs, "ClusterRole")
    assert rules_of(discovery) == DISCOVERY_RULES
    assert len(by_kind(docs, "ClusterRoleBinding")) == 1
    assert sorted(r["metadata"]["namespace"] for r in by_kind(docs, "Role")) == ["team-a", "team-b"]
    assert all(rules_of(r) == OPERATOR_RULES for r in by_kind(docs, "Role"))
    args = by_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:3] == ["--namespace=team-a", "--namespace=team-b", "--debug"]


@pytest.mark.parametrize(
    ("level", "flags"), [("debug", ["--debug"]), ("info", []), ("warning", ["--quiet"])]
)
def test_log_level_is_kopfs_own(level: str, flags: list[str]) -> None:
    """kopf logs at INFO without a flag: its --verbose would log every API response body."""
    docs = render(extra=["--set", f"logLevel={level}"])
    args = by_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert [a for a in args if a in ("--debug", "--verbose", "--quiet")] == flags


def test_custom_images_and_service_account() -> None:
    docs = render(CHART / "ci" / "custom-images-values.yaml")
    pod = by_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "embedder-operator"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["containers"][0]["image"] == "registry.example.com/ml/embedding-operator:0.1.0-rc1"
    (account,) = by_kind(docs, "ServiceAccount")
    assert account["metadata"]["annotations"] == {"iam.example.com/role": "embedder"}


def test_chart_crd_is_identical_to_the_root_copy() -> None:
    chart_crd = CHART / "crds" / "embeddingjobs.embedding.dev.yaml"
    assert (
        chart_crd.read_text() == (ROOT / "crds" / "embeddingjobs.embedding.dev.yaml").read_text()
    ), "run `make sync-crds`"


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        ({"watch": {"allNamespaces": "yes"}}, "/watch/allNamespaces"),
        ({"image": {"repo": "x"}}, "'repo' not allowed"),
        ({"logLevel": "loud"}, "/logLevel"),
        ({"replicas": 3}, "'replicas' not allowed"),
    ],
)
def test_schema_rejects_bad_values_naming_the_key(
    tmp_path: Path, bad: dict[str, Any], named: str
) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(bad))
    result = helm(
        "template", "eo", str(CHART), "--kube-version", KUBE_VERSION, "-f", str(values), check=False
    )
    assert result.returncode != 0
    assert named in result.stderr, result.stderr


def uncommented_keys(text: str) -> list[str]:
    """Every key of a values file, nested ones too, whose line is not preceded by a comment
    (list items are documented by their key)."""
    lines = text.splitlines()
    missing = []
    for index, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "-")) or ":" not in stripped:
            continue
        previous = lines[index - 1].strip() if index else ""
        if not previous.startswith("#"):
            missing.append(f"values.yaml:{index + 1} {stripped}")
    return missing


def test_every_values_key_is_commented() -> None:
    assert uncommented_keys((CHART / "values.yaml").read_text()) == []


def test_an_uncommented_nested_key_is_found() -> None:
    text = "# -- Resources.\nresources:\n  # -- Requests.\n  requests:\n    cpu: 50m\n"
    assert uncommented_keys(text) == ["values.yaml:5 cpu: 50m"]


def test_tenancy_admission_policy_is_on_by_default_and_scoped_like_the_operator() -> None:
    docs = render()
    (policy,) = by_kind(docs, "ValidatingAdmissionPolicy")
    (binding,) = by_kind(docs, "ValidatingAdmissionPolicyBinding")
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert (
        binding["spec"]["validationActions"] == ["Deny"] and "matchResources" not in binding["spec"]
    )
    rules = " ".join(v["expression"] for v in policy["spec"]["validations"])
    assert "resource('secrets')" in rules and "check('create')" in rules
    env = {
        e["name"]: e["value"]
        for e in by_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["EMBEDDING_OPERATOR_ALLOWED_HOST_PATHS"] == ""  # hostPath off by default
    assert env["EMBEDDING_OPERATOR_ALLOWED_TOLERATION_KEYS"] == "nvidia.com/gpu,amd.com/gpu"
    namespaced = render(CHART / "ci" / "namespaced-values.yaml")
    (scoped,) = by_kind(namespaced, "ValidatingAdmissionPolicyBinding")
    (selector,) = scoped["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"]
    assert selector["values"] == ["team-a", "team-b"]
    assert (
        by_kind(
            render(extra=["--set", "tenancy.admissionPolicy=false"]), "ValidatingAdmissionPolicy"
        )
        == []
    )


def test_the_policy_checks_the_claim_of_every_volume_the_contract_allows() -> None:
    from embedding_job.api import MAX_VOLUMES

    (policy,) = by_kind(render(), "ValidatingAdmissionPolicy")
    claims = [v for v in policy["spec"]["validations"] if "volumes[" in v["expression"]]
    assert len(claims) == MAX_VOLUMES
    assert f"volumes[{MAX_VOLUMES - 1}].claimName" in claims[-1]["expression"]


def test_host_network_values_reach_the_operator_pod_and_its_settings() -> None:
    """A cluster without a pod network (the node e2e): the operator on the host network with
    cluster DNS and its probe on the given port, and the job pods' settings passed on."""
    extra = ["--set", "hostNetwork=true", "--set", "probePort=18080"]
    extra += ["--set", "jobPods.hostNetwork=true", "--set", "jobPods.imagePullGraceSeconds=30"]
    extra += ["--set", "resyncSeconds=5"]
    (deployment,) = by_kind(render(extra=extra), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert (pod["hostNetwork"], pod["dnsPolicy"]) == (True, "ClusterFirstWithHostNet")
    (container,) = pod["containers"]
    assert container["args"][-1] == "--liveness=http://0.0.0.0:18080/healthz"
    assert {"name": "probe", "containerPort": 18080} in container["ports"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["EMBEDDING_OPERATOR_JOB_HOST_NETWORK"] == "true"
    assert env["EMBEDDING_OPERATOR_IMAGE_PULL_GRACE_SECONDS"] == "30"
    assert env["EMBEDDING_OPERATOR_RESYNC_SECONDS"] == "5"
    (default,) = by_kind(render(), "Deployment")
    assert "hostNetwork" not in default["spec"]["template"]["spec"]


def test_metrics_are_served_always_and_monitored_only_when_asked() -> None:
    docs = render()
    pod = by_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert {p["name"]: p["containerPort"] for p in container["ports"]}["metrics"] == 9090
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["EMBEDDING_OPERATOR_METRICS_PORT"] == "9090"
    assert not by_kind(docs, "ServiceMonitor") and not by_kind(docs, "Service")
    monitored = render(
        extra=[
            "--set", "metrics.serviceMonitor.enabled=true",
            "--set", "metrics.serviceMonitor.labels.release=prometheus",
            "--set", "metrics.port=9100",
        ]
    )  # fmt: skip
    (service,) = by_kind(monitored, "Service")
    (monitor,) = by_kind(monitored, "ServiceMonitor")
    pod_labels = by_kind(monitored, "Deployment")[0]["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 9100, "targetPort": "metrics"}]
    selected = monitor["spec"]["selector"]["matchLabels"]
    assert selected.items() <= service["metadata"]["labels"].items()
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("metrics", "/metrics")
    assert endpoint["interval"] == "30s"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["embedding-system"]}


def exported_metric_names() -> set[str]:
    """Every sample name Prometheus can see from us: the operator's registry, the job's Ray
    metrics (with Ray's prefix), and the Ray node GPU gauge the dashboard reads."""
    from embedding_job.run import metrics as job_metrics
    from embedding_operator import metrics as operator_metrics

    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}
    names = {
        family.name + suffix
        for family in operator_metrics.REGISTRY.collect()
        if family.name.startswith("embedding_operator_")
        for suffix in suffixes[family.type]
    }
    for name, kind in [
        (job_metrics.ROWS, "counter"),
        (job_metrics.STAGE_SECONDS, "counter"),
        (job_metrics.BATCH_SECONDS, "histogram"),
    ]:
        names |= {f"ray_{name}{suffix}" for suffix in suffixes[kind]}
    return names | {"ray_node_gpus_utilization"}


def test_the_dashboard_only_queries_metrics_that_are_exported() -> None:
    assert not by_kind(render(), "ConfigMap")
    docs = render(extra=["--set", "metrics.grafanaDashboard.enabled=true"])
    (config_map,) = by_kind(docs, "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(config_map["data"]["embedding-jobs.json"])
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    queries += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    used = set(re.findall(r"\b(ray_[a-z_]+|embedding_operator_[a-z_]+)\b", " ".join(queries)))
    assert used and used <= exported_metric_names(), used - exported_metric_names()
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    for topic in ("images/s", "failed", "queue", "gpu", "latency", "decode"):
        assert topic in titles
