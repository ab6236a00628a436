"""Where and how an EmbeddingJob runs on Kubernetes: the Ray cluster KubeRay creates for it."""

from __future__ import annotations

from enum import StrEnum

from pydantic import ConfigDict, Field, field_validator, model_validator

from embedding_job.api.base import Spec
from embedding_job.api.kube_names import (
    DNS_LABEL,
    AbsolutePath,
    DnsSubdomain,
    ExtendedResource,
    LabelValue,
    PositiveQuantity,
    QualifiedName,
    label_map_schema,
)

#: Tolerations per pod group: more than any real node pool needs.
MAX_TOLERATIONS = 64
#: Extra volumes per job (the chart's admission policy checks each one's claim on its own).
MAX_VOLUMES = 16
# The volumes the operator gives every Ray pod itself (their root filesystem is read-only):
# the models claim (or, for model.download without one, a scratch dir) and a writable /tmp
# for Ray's session dir, logs, spilled objects and caches.
MODELS_VOLUME = "models"
TMP_VOLUME = "tmp"
TMP_PATH = "/tmp"


class SubmissionMode(StrEnum):
    HTTP = "HTTPMode"
    K8S_JOB = "K8sJobMode"


class PullPolicy(StrEnum):
    IF_NOT_PRESENT = "IfNotPresent"
    ALWAYS = "Always"
    NEVER = "Never"


class TolerationOperator(StrEnum):
    EXISTS = "Exists"
    EQUAL = "Equal"


class TaintEffect(StrEnum):
    NO_SCHEDULE = "NoSchedule"
    PREFER_NO_SCHEDULE = "PreferNoSchedule"
    NO_EXECUTE = "NoExecute"


class Toleration(Spec):
    """A Kubernetes toleration."""

    model_config = ConfigDict(
        **Spec.model_config,
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.key) || self.key == '' ? self.operator == 'Exists' : true",
                    "message": "a toleration without a key must use operator Exists",
                },
                {
                    "rule": "self.operator != 'Exists' || !has(self.value) || self.value == ''",
                    "message": "operator Exists takes no value",
                },
                {
                    "rule": "!has(self.tolerationSeconds) "
                    "|| (has(self.effect) && self.effect == 'NoExecute')",
                    "message": "tolerationSeconds needs effect NoExecute",
                },
            ]
        },
    )

    key: QualifiedName | None = Field(
        None, description="Taint key to tolerate (empty with Exists: all)."
    )
    operator: TolerationOperator = Field(TolerationOperator.EQUAL, description="Exists | Equal.")
    value: LabelValue | None = Field(None, description="Taint value (with Equal).")
    effect: TaintEffect | None = Field(
        None, description="NoSchedule | PreferNoSchedule | NoExecute (empty: all)."
    )
    toleration_seconds: int | None = Field(
        None, ge=0, description="How long a NoExecute taint is tolerated."
    )

    @model_validator(mode="after")
    def _consistent(self) -> Toleration:
        # The rules the apiserver applies to a pod's tolerations: broken here, the pods would
        # never be created and the job would wait forever.
        if not self.key and self.operator is not TolerationOperator.EXISTS:
            raise ValueError("a toleration without a key must use operator Exists")
        if self.operator is TolerationOperator.EXISTS and self.value:
            raise ValueError("operator Exists takes no value")
        if self.toleration_seconds is not None and self.effect is not TaintEffect.NO_EXECUTE:
            raise ValueError("tolerationSeconds needs effect NoExecute")
        return self


class SecretRef(Spec):
    """A Secret in the job's namespace whose keys become environment variables."""

    name: DnsSubdomain = Field(..., description="Secret name.")


class HeadSpec(Spec):
    """The Ray head pod: schedules work, runs the driver; never uses a GPU."""

    cpu: PositiveQuantity = Field("2", description="CPU request and limit.")
    memory: PositiveQuantity = Field("8Gi", description="Memory request and limit.")
    node_selector: dict[QualifiedName, LabelValue] = Field(
        default_factory=dict,
        description="Node labels the head pod must match.",
        json_schema_extra=label_map_schema(),
    )
    tolerations: list[Toleration] = Field(
        default_factory=list,
        max_length=MAX_TOLERATIONS,
        description="Tolerations of the head pod.",
    )


class WorkerSpec(Spec):
    """The GPU worker group: the pods that embed."""

    replicas: int = Field(1, ge=1, le=1000, description="Number of worker pods.")
    gpus: int | None = Field(
        None,
        ge=0,
        le=16,
        description="GPUs per worker pod (0: CPU-only workers); empty: the operator's default.",
    )
    gpu_resource: ExtendedResource = Field(
        "nvidia.com/gpu", description="Extended resource name of a GPU."
    )
    cpu: PositiveQuantity | None = Field(
        None, description="CPU request and limit per worker; empty: the operator's default."
    )
    memory: PositiveQuantity | None = Field(
        None, description="Memory request and limit per worker; empty: the operator's default."
    )
    node_selector: dict[QualifiedName, LabelValue] = Field(
        default_factory=dict,
        description="Node labels worker pods must match.",
        json_schema_extra=label_map_schema(),
    )
    tolerations: list[Toleration] = Field(
        default_factory=list,
        max_length=MAX_TOLERATIONS,
        description="Tolerations of worker pods (e.g. for GPU taints).",
    )


class LifecycleSpec(Spec):
    """Deadlines, retries and clean-up."""

    active_deadline_seconds: int | None = Field(
        None, ge=1, description="Fail the job when it runs longer than this."
    )
    backoff_limit: int = Field(
        0, ge=0, le=100, description="Retries of a failed job, each on a fresh Ray cluster."
    )
    ttl_seconds_after_finished: int = Field(
        600,
        ge=0,
        description="Seconds the finished Ray cluster is kept (for logs) before it is deleted.",
    )
    queue_name: LabelValue | None = Field(
        None,
        description="Kueue LocalQueue; sets the kueue.x-k8s.io/queue-name label on the RayJob.",
    )


class NfsSource(Spec):
    """An NFS export."""

    server: str = Field(
        ...,
        min_length=1,
        max_length=253,
        pattern=r"^[^\s/]+$",
        description="NFS server host name or address.",
    )
    path: AbsolutePath = Field(..., description="Exported path on the server.")


class VolumeSpec(Spec):
    """A volume mounted at the same path in the head and every worker: shared storage for
    input, output or models (a ReadWriteMany PVC, NFS, or a node's directory)."""

    name: str = Field(..., pattern=DNS_LABEL.pattern, max_length=63, description="Volume name.")
    mount_path: AbsolutePath = Field(..., description="Where the pods see it.")
    read_only: bool = Field(False, description="Mount read-only.")
    claim_name: DnsSubdomain | None = Field(
        None, description="Source: a PersistentVolumeClaim in the job's namespace."
    )
    host_path: AbsolutePath | None = Field(
        None, description="Source: a directory on the node (single-node clusters)."
    )
    nfs: NfsSource | None = Field(None, description="Source: an NFS export.")

    model_config = ConfigDict(
        **Spec.model_config,
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "[has(self.claimName), has(self.hostPath), has(self.nfs)]"
                    ".filter(x, x).size() == 1",
                    "message": "set exactly one source: claimName, hostPath or nfs",
                }
            ]
        },
    )

    @model_validator(mode="after")
    def _one_source(self) -> VolumeSpec:
        sources = [s for s in (self.claim_name, self.host_path, self.nfs) if s is not None]
        if len(sources) != 1:
            raise ValueError("set exactly one source: claimName, hostPath or nfs")
        return self


class ClusterSpec(Spec):
    """Where the job runs: the Ray cluster KubeRay creates for it."""

    image: str | None = Field(
        None,
        max_length=512,
        pattern=r"^[^\s]+$",
        description="Job image (Ray + embedding_job); empty: the operator's default.",
    )
    image_pull_policy: PullPolicy = Field(
        PullPolicy.IF_NOT_PRESENT, description="IfNotPresent | Always | Never."
    )
    head: HeadSpec = Field(default_factory=HeadSpec, description="The Ray head pod.")
    worker: WorkerSpec = Field(default_factory=WorkerSpec, description="The GPU worker group.")
    service_account_name: DnsSubdomain | None = Field(
        None, description="ServiceAccount of the Ray pods."
    )
    storage_secret_ref: SecretRef | None = Field(
        None,
        description="Secret with object-store credentials (e.g. AWS_ACCESS_KEY_ID), as env vars.",
    )
    hf_token_secret_ref: SecretRef | None = Field(
        None, description="Secret with HF_TOKEN, for model.download from the Hugging Face hub."
    )
    models_volume_claim: DnsSubdomain | None = Field(
        None,
        description="PersistentVolumeClaim holding the models, mounted read-only at model.path.",
    )
    volumes: list[VolumeSpec] = Field(
        default_factory=list,
        max_length=MAX_VOLUMES,
        description="Extra volumes mounted in the head and every worker (shared storage).",
    )
    lifecycle: LifecycleSpec = Field(
        default_factory=LifecycleSpec, description="Deadlines, retries and clean-up."
    )

    @field_validator("volumes")
    @classmethod
    def _distinct_volumes(cls, volumes: list[VolumeSpec]) -> list[VolumeSpec]:
        for what, values in (
            ("name", [v.name for v in volumes]),
            ("mountPath", [v.mount_path for v in volumes]),
        ):
            repeated = sorted({x for x in values if values.count(x) > 1})
            if repeated:
                raise ValueError(f"volume {what}s must be distinct; repeated: {repeated}")
        reserved = sorted({MODELS_VOLUME, TMP_VOLUME} & {v.name for v in volumes})
        if reserved:
            raise ValueError(
                f"volume names {reserved} are reserved: the operator mounts 'models' (the "
                "models claim) and 'tmp' (the pods' writable /tmp) itself"
            )
        if TMP_PATH in (v.mount_path for v in volumes):
            raise ValueError(f"mountPath {TMP_PATH} is reserved for the pods' writable scratch dir")
        return volumes

    submission_mode: SubmissionMode = Field(
        SubmissionMode.HTTP,
        description=(
            "How KubeRay submits the job: HTTPMode (no submitter pod; the default) or K8sJobMode."
        ),
    )
