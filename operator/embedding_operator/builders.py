"""Pure builders: an EmbeddingJob → the KubeRay RayJob that runs it. No API calls here."""

from __future__ import annotations

import json
import math
import shlex
from dataclasses import dataclass
from typing import Any

from embedding_job.api import (
    FROM_EMBEDDINGJOB_FLAG,
    JOB_NAME_ENV,
    JOB_NAMESPACE_ENV,
    JOB_UID_ENV,
    MODELS_VOLUME,
    TELEMETRY_OFF,
    TMP_PATH,
    TMP_VOLUME,
    EmbeddingJobSpec,
    HeadSpec,
    Toleration,
    VolumeSpec,
    quantity_value,
)
from embedding_operator.job_objects import Owner, job_service_account, labels, owner_reference

RAY_VERSION = "2.59.0"
#: Host memory a worker pod gets on top of its default for each model of a job beyond the
#: first, per embedding worker (model replica) in the pod: a model's weights pass through host
#: memory as they load (4 Gi holds a billion float32 parameters), and an image-text model
#: brings its text tower. Decoding is shared by the models, so CPUs and GPUs stay as they are.
MEMORY_PER_EXTRA_MODEL = 4 * 2**30
WORKER_GROUP = "gpu-workers"


@dataclass(frozen=True)
class Defaults:
    """Operator-wide settings (from the Helm chart) that a spec may leave empty."""

    job_image: str = "ghcr.io/embedding-operator/embedding-job:0.1.0"
    worker_gpus: int = 1
    worker_cpu: str = "8"
    worker_memory: str = "32Gi"
    #: Ray pods on their node's network (clusters without a pod network, e.g. one test node)
    host_network: bool = False


# On the host network a node's Ray pods share its ports. The head keeps KubeRay's defaults;
# workers take others (declared, so the scheduler's host-port check keeps two workers, or a
# second job's head, off a node where they would collide); every Ray node advertises the
# pod's address, which is the node's.
WORKER_METRICS_PORT = 8081
WORKER_AGENT_PORT = 52366
POD_IP_ENV = "EMBEDDING_JOB_POD_IP"


@dataclass(frozen=True)
class WorkerShape:
    """A worker pod's resources once the operator's defaults fill the gaps of the spec."""

    gpus: int
    cpu: str
    memory: str
    gpu_resource: str

    @classmethod
    def resolve(cls, spec: EmbeddingJobSpec, defaults: Defaults) -> WorkerShape:
        worker = spec.cluster.worker
        gpus = defaults.worker_gpus if worker.gpus is None else worker.gpus
        return cls(
            gpus=gpus,
            cpu=worker.cpu or defaults.worker_cpu,
            memory=worker.memory or default_memory(spec, gpus, defaults.worker_memory),
            gpu_resource=worker.gpu_resource,
        )


def default_memory(spec: EmbeddingJobSpec, gpus: int, base: str) -> str:
    """A worker pod's memory when the spec leaves it empty: the operator's default, and
    MEMORY_PER_EXTRA_MODEL for each further model in each of the pod's embedding workers
    (one per ``inference.gpusPerWorker`` of its GPUs)."""
    extra_models = len(spec.embedding_columns()) - 1
    if extra_models == 0:
        return base
    per_worker = spec.inference.gpus_per_worker
    workers = max(1, math.floor(gpus / per_worker)) if gpus and per_worker > 0 else 1
    total = quantity_value(base) + extra_models * workers * MEMORY_PER_EXTRA_MODEL
    return f"{math.ceil(total / 2**20)}Mi"


def entrypoint() -> str:
    """The driver command. It carries no config, which no command line is sure to hold: the job
    reads the spec of the EmbeddingJob its environment names, with its own ServiceAccount, and
    validates it with the same contract."""
    return shlex.join(["embedding-job", "run", "--runner", "ray", FROM_EMBEDDINGJOB_FLAG])


def job_identity_env(owner: Owner) -> dict[str, str]:
    """The job stamps its output with the uid, so a KubeRay retry replaces its own output
    instead of adding rows; name and namespace tell it which resource to report to."""
    return {
        JOB_UID_ENV: owner.uid,
        JOB_NAME_ENV: owner.name,
        JOB_NAMESPACE_ENV: owner.namespace,
    }


def runtime_env_yaml(owner: Owner) -> str:
    """The Ray job's runtime env: the identity travels with the submission too, so the
    driver knows its EmbeddingJob even on a Ray head that is not this job's own pod."""
    return json.dumps({"env_vars": job_identity_env(owner)}, sort_keys=True)


# Caches (Hugging Face, torch) go to the writable /tmp: HOME is on the read-only root.
CACHE_HOME = f"{TMP_PATH}/cache"


def _env(owner: Owner, spec: EmbeddingJobSpec, host_network: bool) -> list[dict[str, Any]]:
    env = dict(TELEMETRY_OFF)
    env.update(job_identity_env(owner))
    env["XDG_CACHE_HOME"] = CACHE_HOME
    if not any(model.download for model, _ in spec.embedding_columns()):
        env["HF_HUB_OFFLINE"] = "1"
    items: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in sorted(env.items())]
    if host_network:
        items.append({"name": POD_IP_ENV, "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}})
    return items


def _env_from(spec: EmbeddingJobSpec) -> list[dict[str, Any]]:
    refs = [spec.cluster.storage_secret_ref, spec.cluster.hf_token_secret_ref]
    return [{"secretRef": {"name": ref.name}} for ref in refs if ref is not None]


def _tolerations(items: list[Toleration]) -> list[dict[str, Any]]:
    return [t.model_dump(by_alias=True, exclude_none=True, mode="json") for t in items]


def _container(
    name: str,
    image: str,
    owner: Owner,
    spec: EmbeddingJobSpec,
    resources: dict[str, Any],
    host_network: bool,
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": name,
        "image": image,
        "imagePullPolicy": spec.cluster.image_pull_policy.value,
        "resources": resources,
        "env": _env(owner, spec, host_network),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
        },
    }
    env_from = _env_from(spec)
    if env_from:
        container["envFrom"] = env_from
    mounts = [
        {"name": v.name, "mountPath": v.mount_path, "readOnly": v.read_only}
        for v in spec.cluster.volumes
    ]
    models, paths = _models_source(spec)
    if models is not None:
        read_only = "persistentVolumeClaim" in models
        mounts[:0] = [
            {"name": MODELS_VOLUME, "mountPath": path, "readOnly": read_only} for path in paths
        ]
    mounts.append({"name": TMP_VOLUME, "mountPath": TMP_PATH})
    container["volumeMounts"] = mounts
    return container


def _models_source(spec: EmbeddingJobSpec) -> tuple[dict[str, Any] | None, list[str]]:
    """The models volume and where it is mounted: the models claim, read-only, at every
    model's path; for models to download without a claim (and without a volume of the user's
    at their path), an emptyDir at their paths, as the root filesystem is read-only."""
    if spec.cluster.models_volume_claim:
        claim = {"claimName": spec.cluster.models_volume_claim, "readOnly": True}
        return {"persistentVolumeClaim": claim}, spec.model_paths()
    mounted = {v.mount_path for v in spec.cluster.volumes}
    downloads = [model.path for model, _ in spec.embedding_columns() if model.download]
    scratch = [path for path in dict.fromkeys(downloads) if path not in mounted]
    return ({"emptyDir": {}}, scratch) if scratch else (None, [])


def _volume(volume: VolumeSpec) -> dict[str, Any]:
    if volume.claim_name is not None:
        source: dict[str, Any] = {
            "persistentVolumeClaim": {"claimName": volume.claim_name, "readOnly": volume.read_only}
        }
    elif volume.host_path is not None:
        source = {"hostPath": {"path": volume.host_path, "type": "Directory"}}
    else:
        assert volume.nfs is not None  # the spec allows exactly one source
        source = {
            "nfs": {
                "server": volume.nfs.server,
                "path": volume.nfs.path,
                "readOnly": volume.read_only,
            }
        }
    return {"name": volume.name, **source}


def _pod(
    container: dict[str, Any],
    owner: Owner,
    spec: EmbeddingJobSpec,
    node_selector: dict[str, str],
    tolerations: list[Toleration],
    host_network: bool,
) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "containers": [container],
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
    }
    if host_network:
        # Cluster DNS still resolves the head Service's name for the workers.
        pod["hostNetwork"] = True
        pod["dnsPolicy"] = "ClusterFirstWithHostNet"
    if node_selector:
        pod["nodeSelector"] = dict(sorted(node_selector.items()))
    if tolerations:
        pod["tolerations"] = _tolerations(tolerations)
    pod["serviceAccountName"] = job_service_account(owner, spec)
    volumes = [_volume(v) for v in spec.cluster.volumes]
    models, _ = _models_source(spec)
    if models is not None:
        volumes.insert(0, {"name": MODELS_VOLUME, **models})
    volumes.append({"name": TMP_VOLUME, "emptyDir": {}})
    pod["volumes"] = volumes
    return {"spec": pod}


def _head_resources(head: HeadSpec) -> dict[str, Any]:
    amounts = {"cpu": head.cpu, "memory": head.memory}
    return {"requests": dict(amounts), "limits": dict(amounts)}


def _worker_resources(shape: WorkerShape) -> dict[str, Any]:
    amounts: dict[str, Any] = {"cpu": shape.cpu, "memory": shape.memory}
    if shape.gpus:
        amounts[shape.gpu_resource] = shape.gpus
    return {"requests": dict(amounts), "limits": dict(amounts)}


def _host_network_params(worker: bool) -> dict[str, str]:
    params = {"node-ip-address": f"${POD_IP_ENV}"}
    if not worker:
        # The node's address only, not every interface of the node (0.0.0.0 in a pod).
        params["dashboard-host"] = f"${POD_IP_ENV}"
    if worker:
        params["metrics-export-port"] = str(WORKER_METRICS_PORT)
        params["dashboard-agent-listen-port"] = str(WORKER_AGENT_PORT)
    return params


def ray_cluster_spec(
    owner: Owner, spec: EmbeddingJobSpec, image: str, defaults: Defaults
) -> dict[str, Any]:
    """One CPU head (``num-gpus: 0``: GPUs are for workers only) and one GPU worker group."""
    head, worker = spec.cluster.head, spec.cluster.worker
    shape = WorkerShape.resolve(spec, defaults)
    host = defaults.host_network
    head_params = {"num-gpus": "0", "dashboard-host": "0.0.0.0"}
    worker_params = {"num-gpus": str(shape.gpus)}
    worker_container = _container("ray-worker", image, owner, spec, _worker_resources(shape), host)
    if host:
        head_params.update(_host_network_params(worker=False))
        worker_params.update(_host_network_params(worker=True))
        worker_container["ports"] = [{"name": "metrics", "containerPort": WORKER_METRICS_PORT}]
    return {
        "rayVersion": RAY_VERSION,
        # Token auth: an open dashboard would let anyone who reaches it run code on the cluster.
        "authOptions": {"mode": "token"},
        "headGroupSpec": {
            "rayStartParams": head_params,
            "template": _pod(
                _container("ray-head", image, owner, spec, _head_resources(head), host),
                owner,
                spec,
                head.node_selector,
                head.tolerations,
                host,
            ),
        },
        "workerGroupSpecs": [
            {
                "groupName": WORKER_GROUP,
                "replicas": worker.replicas,
                "minReplicas": worker.replicas,
                "maxReplicas": worker.replicas,
                "rayStartParams": worker_params,
                "template": _pod(
                    worker_container,
                    owner,
                    spec,
                    worker.node_selector,
                    worker.tolerations,
                    host,
                ),
            }
        ],
    }


def build_rayjob(owner: Owner, spec: EmbeddingJobSpec, defaults: Defaults) -> dict[str, Any]:
    """The RayJob manifest for an EmbeddingJob; deterministic for the same inputs."""
    lifecycle = spec.cluster.lifecycle
    image = spec.cluster.image or defaults.job_image
    rayjob_spec: dict[str, Any] = {
        "entrypoint": entrypoint(),
        "runtimeEnvYAML": runtime_env_yaml(owner),
        "submissionMode": spec.cluster.submission_mode.value,
        "shutdownAfterJobFinishes": True,
        "ttlSecondsAfterFinished": lifecycle.ttl_seconds_after_finished,
        "backoffLimit": lifecycle.backoff_limit,
        "suspend": spec.suspend,
        "rayClusterSpec": ray_cluster_spec(owner, spec, image, defaults),
    }
    if lifecycle.active_deadline_seconds is not None:
        rayjob_spec["activeDeadlineSeconds"] = lifecycle.active_deadline_seconds
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": {
            "name": owner.name,
            "namespace": owner.namespace,
            "labels": labels(owner, spec),
            "ownerReferences": [owner_reference(owner)],
        },
        "spec": rayjob_spec,
    }
