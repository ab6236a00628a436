"""Pure builders: spec → RayJob manifest."""

from __future__ import annotations

import json
import shlex
from typing import Any

import pytest
import yaml

from embedding_job.api import ConfigError, check_name, parse_spec
from embedding_operator.builders import Defaults, build_rayjob, entrypoint
from embedding_operator.job_objects import Owner

OWNER = Owner(name="photos", namespace="team-a", uid="1234-uid")
SPEC: dict[str, Any] = {
    "input": {"uri": "s3://bucket/images/", "format": "images-glob"},
    "model": {"name": "facebook/dinov2-large", "path": "/models", "dtype": "float16"},
    "output": {"uri": "s3://bucket/out/"},
    "cluster": {
        "worker": {
            "replicas": 3,
            "gpus": 2,
            "nodeSelector": {"gpu": "h100"},
            "tolerations": [
                {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
            ],
        },
        "storageSecretRef": {"name": "s3-creds"},
        "hfTokenSecretRef": {"name": "hf"},
        "modelsVolumeClaim": "models-pvc",
        "serviceAccountName": "embedder",
        "lifecycle": {"activeDeadlineSeconds": 3600, "backoffLimit": 2, "queueName": "gpu-queue"},
    },
}


def rayjob(spec: dict[str, Any] | None = None) -> dict[str, Any]:
    return build_rayjob(OWNER, parse_spec(spec or SPEC), Defaults(job_image="registry/job:1"))


def test_worker_group_requests_the_gpus_ray_advertises() -> None:
    worker = rayjob()["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
    assert (worker["replicas"], worker["minReplicas"], worker["maxReplicas"]) == (3, 3, 3)
    assert worker["rayStartParams"]["num-gpus"] == "2"
    container = worker["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert container["image"] == "registry/job:1"
    assert worker["template"]["spec"]["nodeSelector"] == {"gpu": "h100"}
    assert worker["template"]["spec"]["tolerations"][0]["operator"] == "Exists"


def test_head_never_takes_gpus_and_runs_the_same_image() -> None:
    head = rayjob()["spec"]["rayClusterSpec"]["headGroupSpec"]
    assert head["rayStartParams"]["num-gpus"] == "0"
    container = head["template"]["spec"]["containers"][0]
    assert container["image"] == "registry/job:1"
    assert "nvidia.com/gpu" not in container["resources"]["limits"]


def test_secrets_by_reference_and_models_mounted_read_only() -> None:
    pod = rayjob()["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]
    container = pod["containers"][0]
    assert container["envFrom"] == [
        {"secretRef": {"name": "s3-creds"}},
        {"secretRef": {"name": "hf"}},
    ]
    assert container["volumeMounts"] == [
        {"name": "models", "mountPath": "/models", "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    assert pod["volumes"][0]["persistentVolumeClaim"] == {
        "claimName": "models-pvc",
        "readOnly": True,
    }
    assert pod["serviceAccountName"] == "embedder"
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert {"name": "HF_HUB_OFFLINE", "value": "1"} in container["env"]
    # The job stamps its output with the owner's uid: a retry replaces, never duplicates.
    assert {"name": "EMBEDDING_JOB_UID", "value": "1234-uid"} in container["env"]


def test_metadata_owner_reference_labels_and_lifecycle() -> None:
    manifest = rayjob()
    meta, spec = manifest["metadata"], manifest["spec"]
    assert (manifest["apiVersion"], manifest["kind"]) == ("ray.io/v1", "RayJob")
    assert (meta["name"], meta["namespace"]) == ("photos", "team-a")
    ref = meta["ownerReferences"][0]
    assert (ref["kind"], ref["uid"], ref["controller"]) == ("EmbeddingJob", "1234-uid", True)
    assert meta["labels"]["embedding.dev/job"] == "photos"
    assert meta["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-queue"
    assert spec["submissionMode"] == "HTTPMode"
    assert spec["shutdownAfterJobFinishes"] is True
    assert (
        spec["backoffLimit"],
        spec["activeDeadlineSeconds"],
        spec["ttlSecondsAfterFinished"],
    ) == (2, 3600, 600)
    assert spec["suspend"] is False
    assert spec["rayClusterSpec"]["authOptions"] == {"mode": "token"}


def test_the_driver_reads_its_config_from_its_embeddingjob() -> None:
    # No config on the command line (bounded): the job reads the spec the environment names.
    manifest = rayjob()
    argv = shlex.split(manifest["spec"]["entrypoint"])
    assert argv == ["embedding-job", "run", "--runner", "ray", "--from-embeddingjob"]
    assert argv == shlex.split(entrypoint())
    assert "s3://bucket" not in manifest["spec"]["entrypoint"]


def test_the_job_identity_travels_in_the_ray_runtime_env_too() -> None:
    # The driver reads its EmbeddingJob from env: from the head pod's container in a real
    # cluster, from the submission's runtime env wherever the head is not the job's own pod.
    manifest = rayjob()
    runtime_env = yaml.safe_load(manifest["spec"]["runtimeEnvYAML"])
    container_env = {
        e["name"]: e["value"]
        for e in manifest["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"][
            "containers"
        ][0]["env"]
    }
    assert runtime_env == {
        "env_vars": {
            "EMBEDDING_JOB_NAME": "photos",
            "EMBEDDING_JOB_NAMESPACE": "team-a",
            "EMBEDDING_JOB_UID": "1234-uid",
        }
    }
    assert runtime_env["env_vars"].items() <= container_env.items()


def test_output_does_not_depend_on_the_specs_key_order() -> None:
    # The RayJob is compared with the live one on every pass: a spec whose keys arrive in
    # another order (a re-apply, another client) must give the same manifest, byte for byte.
    shuffled = json.loads(json.dumps(SPEC), object_pairs_hook=lambda pairs: dict(pairs[::-1]))
    assert list(shuffled) != list(SPEC)
    assert json.dumps(rayjob(shuffled)) == json.dumps(rayjob())


def test_operator_defaults_fill_an_empty_worker_shape() -> None:
    spec = {**SPEC, "cluster": {"worker": {"replicas": 1}}}
    defaults = Defaults(job_image="d/job:1", worker_gpus=8, worker_cpu="64", worker_memory="512Gi")
    worker = build_rayjob(OWNER, parse_spec(spec), defaults)["spec"]["rayClusterSpec"][
        "workerGroupSpecs"
    ][0]
    limits = worker["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits == {"cpu": "64", "memory": "512Gi", "nvidia.com/gpu": 8}
    assert worker["rayStartParams"]["num-gpus"] == "8"


def test_default_image_and_cpu_workers() -> None:
    spec = {**SPEC, "cluster": {"worker": {"gpus": 0}}}
    manifest = build_rayjob(OWNER, parse_spec(spec), Defaults(job_image="default/job:2"))
    worker = manifest["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
    container = worker["template"]["spec"]["containers"][0]
    assert container["image"] == "default/job:2"
    assert "nvidia.com/gpu" not in container["resources"]["limits"]
    assert worker["rayStartParams"]["num-gpus"] == "0"


@pytest.mark.parametrize(
    ("cluster", "field"),
    [
        ({"awsSecretAccessKey": "AKIA..."}, "spec.cluster"),
        ({"worker": {"gpus": -1}}, "spec.cluster.worker.gpus"),
        ({"worker": {"memory": "lots"}}, "spec.cluster.worker.memory"),
        ({"submissionMode": "SidecarMode"}, "spec.cluster.submissionMode"),
    ],
)
def test_bad_cluster_specs_name_the_field(cluster: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_spec({**SPEC, "cluster": cluster})
    assert any(p.startswith(field + ":") for p in info.value.problems), info.value.problems


def test_names_longer_than_kuberay_allows_are_refused() -> None:
    assert check_name("a" * 47) == []
    assert "47" in check_name("a" * 48)[0]
    assert check_name("Bad_Name")


def test_each_job_gets_an_identity_that_can_only_patch_its_own_status() -> None:
    from embedding_operator.job_objects import build_job_identity

    spec = parse_spec({k: v for k, v in SPEC.items() if k != "cluster"})
    account, role, binding = build_job_identity(OWNER, spec)
    assert (
        account["kind"] == "ServiceAccount"
        and account["metadata"]["name"] == "photos-embedding-job"
    )
    assert role["rules"] == [
        {
            "apiGroups": ["embedding.dev"],
            "resources": ["embeddingjobs/status"],
            "resourceNames": ["photos"],
            "verbs": ["get", "patch"],
        }
    ]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "photos-embedding-job", "namespace": "team-a"}
    ]
    for obj in (account, role, binding):
        assert obj["metadata"]["ownerReferences"][0]["uid"] == "1234-uid"
    pod = build_rayjob(OWNER, spec, Defaults())["spec"]["rayClusterSpec"]["headGroupSpec"][
        "template"
    ]["spec"]
    assert pod["serviceAccountName"] == "photos-embedding-job"
    # A user's own ServiceAccount is bound instead of a new one.
    role_only = build_job_identity(OWNER, parse_spec(SPEC))
    assert [o["kind"] for o in role_only] == ["Role", "RoleBinding"]
    assert role_only[1]["subjects"][0]["name"] == "embedder"


def test_volumes_are_mounted_at_the_same_path_in_head_and_workers() -> None:
    spec = {
        **SPEC,
        "cluster": {
            **SPEC["cluster"],
            "volumes": [
                {"name": "shared", "mountPath": "/shared", "claimName": "rwx"},
                {"name": "scratch", "mountPath": "/scratch", "hostPath": "/mnt/nvme"},
                {
                    "name": "archive",
                    "mountPath": "/archive",
                    "readOnly": True,
                    "nfs": {"server": "nfs.example", "path": "/exports/a"},
                },
            ],
        },
    }
    cluster = rayjob(spec)["spec"]["rayClusterSpec"]
    pods = [cluster["headGroupSpec"]["template"]["spec"]] + [
        g["template"]["spec"] for g in cluster["workerGroupSpecs"]
    ]
    for pod in pods:
        assert pod["volumes"] == [
            {
                "name": "models",
                "persistentVolumeClaim": {"claimName": "models-pvc", "readOnly": True},
            },
            {"name": "shared", "persistentVolumeClaim": {"claimName": "rwx", "readOnly": False}},
            {"name": "scratch", "hostPath": {"path": "/mnt/nvme", "type": "Directory"}},
            {
                "name": "archive",
                "nfs": {"server": "nfs.example", "path": "/exports/a", "readOnly": True},
            },
            {"name": "tmp", "emptyDir": {}},
        ]
        assert pod["containers"][0]["volumeMounts"] == [
            {"name": "models", "mountPath": "/models", "readOnly": True},
            {"name": "shared", "mountPath": "/shared", "readOnly": False},
            {"name": "scratch", "mountPath": "/scratch", "readOnly": False},
            {"name": "archive", "mountPath": "/archive", "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ]


def ray_pods(spec: dict[str, Any]) -> list[dict[str, Any]]:
    cluster = rayjob(spec)["spec"]["rayClusterSpec"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    return [group["template"]["spec"] for group in groups]


def test_ray_pods_have_a_read_only_root_and_a_writable_tmp_for_ray_and_caches() -> None:
    for pod in ray_pods(SPEC):
        (container,) = pod["containers"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert {"name": "tmp", "emptyDir": {}} in pod["volumes"]
        assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
        # HOME is on the read-only root: the Hugging Face and torch caches follow XDG.
        assert {"name": "XDG_CACHE_HOME", "value": "/tmp/cache"} in container["env"]


def test_model_download_without_a_claim_gets_a_writable_models_dir() -> None:
    cluster = {k: v for k, v in SPEC["cluster"].items() if k != "modelsVolumeClaim"}
    spec = {**SPEC, "model": {**SPEC["model"], "download": True}, "cluster": cluster}
    for pod in ray_pods(spec):
        assert pod["volumes"][0] == {"name": "models", "emptyDir": {}}
        mounts = pod["containers"][0]["volumeMounts"]
        assert mounts[0] == {"name": "models", "mountPath": "/models", "readOnly": False}
    # A volume of the user's at model.path holds the download instead (e.g. a shared PVC).
    shared = [{"name": "shared", "mountPath": "/models", "claimName": "rwx"}]
    for pod in ray_pods({**spec, "cluster": {**cluster, "volumes": shared}}):
        assert [v["name"] for v in pod["volumes"]] == ["shared", "tmp"]
    # Without download and without a claim, the image's own model.path is used as is.
    offline = {**SPEC, "cluster": cluster}
    for pod in ray_pods(offline):
        assert [v["name"] for v in pod["volumes"]] == ["tmp"]


@pytest.mark.parametrize(
    ("volumes", "message"),
    [
        ([{"name": "a", "mountPath": "/a"}], "exactly one source"),
        ([{"name": "a", "mountPath": "/a", "claimName": "x", "hostPath": "/a"}], "exactly one"),
        (
            [
                {"name": "a", "mountPath": "/a", "claimName": "x"},
                {"name": "a", "mountPath": "/b", "claimName": "y"},
            ],
            "names must be distinct",
        ),
        (
            [
                {"name": "a", "mountPath": "/a", "claimName": "x"},
                {"name": "b", "mountPath": "/a", "claimName": "y"},
            ],
            "mountPaths must be distinct",
        ),
        ([{"name": "models", "mountPath": "/m", "claimName": "x"}], "reserved"),
        ([{"name": "tmp", "mountPath": "/m", "claimName": "x"}], "reserved"),
        ([{"name": "a", "mountPath": "/tmp", "claimName": "x"}], "mountPath /tmp is reserved"),
        ([{"name": "a", "mountPath": "relative", "claimName": "x"}], "mountPath"),
    ],
)
def test_bad_volumes_are_refused_naming_the_problem(
    volumes: list[dict[str, Any]], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        parse_spec({**SPEC, "cluster": {"volumes": volumes}})
    assert "spec.cluster.volumes" in str(err.value)


def test_a_volume_may_not_take_the_models_claims_mount_path() -> None:
    volumes = [{"name": "shared", "mountPath": "/models", "claimName": "rwx"}]
    with pytest.raises(ConfigError, match=r"mount at model.path \(/models\)"):
        parse_spec({**SPEC, "cluster": {**SPEC["cluster"], "volumes": volumes}})
    # Without a models claim, a volume may hold the models.
    cluster = {"volumes": volumes}
    assert parse_spec({**SPEC, "cluster": cluster}).cluster.volumes[0].mount_path == "/models"


def test_host_network_mode_gives_workers_their_own_ports_and_the_pods_address() -> None:
    """On the host network (a node without a pod network) head and worker share the node's
    ports: the worker's metrics and agent ports differ from the head's, the worker declares
    its metrics port (the scheduler then keeps a second worker off the node), and every Ray
    node advertises the pod's address."""
    cluster = build_rayjob(
        OWNER, parse_spec(SPEC), Defaults(job_image="registry/job:1", host_network=True)
    )["spec"]["rayClusterSpec"]
    head, worker = cluster["headGroupSpec"], cluster["workerGroupSpecs"][0]
    for group in (head, worker):
        pod = group["template"]["spec"]
        assert (pod["hostNetwork"], pod["dnsPolicy"]) == (True, "ClusterFirstWithHostNet")
        env = {e["name"]: e for e in pod["containers"][0]["env"]}
        pod_ip = env["EMBEDDING_JOB_POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"]
        assert pod_ip == "status.podIP"
        assert group["rayStartParams"]["node-ip-address"] == "$EMBEDDING_JOB_POD_IP"
    params = worker["rayStartParams"]
    assert (
        params["metrics-export-port"]
        == "8081"
        != head["rayStartParams"].get("metrics-export-port", "8080")
    )
    assert params["dashboard-agent-listen-port"] == "52366"
    assert head["rayStartParams"]["dashboard-host"] == "$EMBEDDING_JOB_POD_IP"
    ports = worker["template"]["spec"]["containers"][0]["ports"]
    assert ports == [{"name": "metrics", "containerPort": 8081}]


def test_pod_network_mode_is_the_default() -> None:
    cluster = rayjob()["spec"]["rayClusterSpec"]
    for group in (cluster["headGroupSpec"], *cluster["workerGroupSpecs"]):
        pod = group["template"]["spec"]
        assert "hostNetwork" not in pod and "dnsPolicy" not in pod
        assert "node-ip-address" not in group["rayStartParams"]


# ---- several models in one job ----

CLIP_AND_DINO: list[dict[str, Any]] = [
    {"name": "openai/clip-vit-large-patch14", "path": "/models", "pooling": "projected"},
    {"name": "facebook/dinov2-large", "path": "/models", "dtype": "bfloat16", "batchSize": 64},
]


def test_a_two_model_job_gets_memory_for_each_models_replicas_and_nothing_more() -> None:
    spec = {k: v for k, v in SPEC.items() if k != "model"}
    spec["models"] = CLIP_AND_DINO
    spec["inference"] = {"gpusPerWorker": 1}
    defaults = Defaults(job_image="d/job:1", worker_gpus=8, worker_cpu="64", worker_memory="512Gi")
    cluster = {**SPEC["cluster"], "worker": {"replicas": 1, "gpus": 2}}

    def limits(spec: dict[str, Any]) -> dict[str, Any]:
        built = build_rayjob(OWNER, parse_spec(spec), defaults)
        worker = built["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
        return dict(worker["template"]["spec"]["containers"][0]["resources"]["limits"])

    # 2 GPUs, one embedding worker each, one further model each: 512 Gi + 2 x 4 Gi.
    two = limits({**spec, "cluster": cluster})
    assert two == {"cpu": "64", "memory": f"{520 * 1024}Mi", "nvidia.com/gpu": 2}
    one_worker = limits({**spec, "cluster": cluster, "inference": {"gpusPerWorker": 2}})
    assert one_worker["memory"] == f"{516 * 1024}Mi"
    # One model: the default as before; a memory the spec gives: that, whatever the models.
    assert limits({**SPEC, "cluster": cluster})["memory"] == "512Gi"
    given = {**cluster, "worker": {"gpus": 2, "memory": "100Gi"}}
    assert limits({**spec, "cluster": given})["memory"] == "100Gi"


def test_the_models_claim_is_mounted_at_each_models_root_of_a_two_model_job() -> None:
    spec = {k: v for k, v in SPEC.items() if k != "model"}
    spec["models"] = [CLIP_AND_DINO[0], {**CLIP_AND_DINO[1], "path": "/weights"}]
    assert parse_spec(spec).model_paths() == ["/models", "/weights"]
    for pod in ray_pods(spec):
        mounts = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "models"]
        assert [(m["mountPath"], m["readOnly"]) for m in mounts] == [
            ("/models", True),
            ("/weights", True),
        ]
        assert [v["name"] for v in pod["volumes"]].count("models") == 1


def test_one_model_to_download_lifts_offline_mode_and_gets_a_writable_dir() -> None:
    cluster = {k: v for k, v in SPEC["cluster"].items() if k != "modelsVolumeClaim"}
    spec = {k: v for k, v in SPEC.items() if k != "model"}
    spec["models"] = [CLIP_AND_DINO[0], {**CLIP_AND_DINO[1], "download": True, "path": "/hub"}]
    for pod in ray_pods({**spec, "cluster": cluster}):
        container = pod["containers"][0]
        assert "HF_HUB_OFFLINE" not in {e["name"] for e in container["env"]}
        models = [m for m in container["volumeMounts"] if m["name"] == "models"]
        assert models == [{"name": "models", "mountPath": "/hub", "readOnly": False}]
