"""Operator-wide policy (from the chart's values): what a spec may ask of the cluster.

An EmbeddingJob must never give its creator a power that RBAC does not already give them. What
Kubernetes can check with the requesting user's own rights (may they read this Secret, this
claim, create pods that run as this ServiceAccount?) the chart's ValidatingAdmissionPolicy
checks at ``kubectl apply``. What only the platform team can decide is here, checked again by
the operator before it creates anything, so that it holds even where the admission policy is
not installed: which job images, which host directories and NFS exports, which taints and
which nodes.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from embedding_job.api import EmbeddingJobSpec, Toleration

#: Taints GPU nodes carry: tolerating them is what GPU workers are for.
DEFAULT_TOLERATION_KEYS = ("nvidia.com/gpu", "amd.com/gpu")
#: Node labels that pick control-plane nodes.
DEFAULT_DENIED_NODE_LABELS = ("node-role.kubernetes.io/",)


@dataclass(frozen=True)
class Policy:
    """What specs may name. Prefixes: images as strings, host paths as directories."""

    default_image: str
    allowed_images: tuple[str, ...] = ()
    allowed_host_paths: tuple[str, ...] = ()
    #: NFS exports as "server:/path" (that path and below it on that server).
    allowed_nfs: tuple[str, ...] = ()
    allowed_toleration_keys: tuple[str, ...] = DEFAULT_TOLERATION_KEYS
    denied_node_selector_keys: tuple[str, ...] = DEFAULT_DENIED_NODE_LABELS

    @classmethod
    def from_env(cls, default_image: str, env: Mapping[str, str] | None = None) -> Policy:
        """The policy the chart passes as comma-separated EMBEDDING_OPERATOR_* variables."""
        env = os.environ if env is None else env

        def listed(name: str, default: tuple[str, ...]) -> tuple[str, ...]:
            if name not in env:
                return default
            return tuple(item.strip() for item in env[name].split(",") if item.strip())

        return cls(
            default_image=default_image,
            allowed_images=tuple(
                image_prefix(p) for p in listed("EMBEDDING_OPERATOR_ALLOWED_IMAGES", ())
            ),
            allowed_nfs=listed("EMBEDDING_OPERATOR_ALLOWED_NFS", ()),
            allowed_host_paths=listed("EMBEDDING_OPERATOR_ALLOWED_HOST_PATHS", ()),
            allowed_toleration_keys=listed(
                "EMBEDDING_OPERATOR_ALLOWED_TOLERATION_KEYS", DEFAULT_TOLERATION_KEYS
            ),
            denied_node_selector_keys=listed(
                "EMBEDDING_OPERATOR_DENIED_NODE_SELECTOR_KEYS", DEFAULT_DENIED_NODE_LABELS
            ),
        )


def image_prefix(prefix: str) -> str:
    """An allowed-image prefix that ends at a boundary: ``registry.example.com/ml`` would also
    allow ``registry.example.com/ml-other/x``, so it means ``registry.example.com/ml/``."""
    return prefix if prefix.endswith(("/", ":", "@")) else prefix + "/"


def within(path: str, directory: str) -> bool:
    """True when ``path`` is ``directory`` or below it (no '..' escapes, no sibling prefix)."""
    if ".." in path.split("/"):
        return False
    root = directory.rstrip("/") or "/"
    clean = posixpath.normpath(path)
    return root == "/" or clean == root or clean.startswith(root + "/")


def violations(spec: EmbeddingJobSpec, policy: Policy) -> list[str]:
    """Every way the spec steps outside the policy, each naming the field (empty: allowed)."""
    problems: list[str] = []
    cluster = spec.cluster
    image = cluster.image
    if image and image != policy.default_image and not image.startswith(policy.allowed_images):
        allowed = ", ".join(policy.allowed_images) or "none besides the default"
        problems.append(
            f"spec.cluster.image: {image} is not an allowed job image (allowed prefixes: "
            f"{allowed}; ask your platform team to add it to the chart's tenancy.allowedImages)"
        )
    for index, volume in enumerate(cluster.volumes):
        path = volume.host_path
        if path is not None and not any(within(path, d) for d in policy.allowed_host_paths):
            allowed = ", ".join(policy.allowed_host_paths) or "none: hostPath is off"
            problems.append(
                f"spec.cluster.volumes[{index}].hostPath: {path} is not under an allowed "
                f"directory ({allowed}; the chart's tenancy.allowedHostPaths)"
            )
        if volume.nfs is not None and not _nfs_allowed(volume.nfs.server, volume.nfs.path, policy):
            allowed = ", ".join(policy.allowed_nfs) or "none: NFS volumes are off"
            problems.append(
                f"spec.cluster.volumes[{index}].nfs: {volume.nfs.server}:{volume.nfs.path} is "
                f"not an allowed export ({allowed}; the chart's tenancy.allowedNfs)"
            )
    for group, pods in (("head", cluster.head), ("worker", cluster.worker)):
        problems += _toleration_problems(f"spec.cluster.{group}", pods.tolerations, policy)
        for key in pods.node_selector:
            if key.startswith(policy.denied_node_selector_keys):
                problems.append(
                    f"spec.cluster.{group}.nodeSelector: {key} selects nodes that jobs may not "
                    "use (the chart's tenancy.deniedNodeSelectorKeys)"
                )
    return problems


def _nfs_allowed(server: str, path: str, policy: Policy) -> bool:
    for export in policy.allowed_nfs:
        allowed_server, _, allowed_path = export.partition(":")
        if server == allowed_server and within(path, allowed_path or "/"):
            return True
    return False


def _toleration_problems(
    where: str, tolerations: Iterable[Toleration], policy: Policy
) -> list[str]:
    problems = []
    for index, toleration in enumerate(tolerations):
        if toleration.key is None:
            problems.append(
                f"{where}.tolerations[{index}]: a toleration without a key tolerates every "
                "taint; name the taint (allowed keys: the chart's tenancy.allowedTolerationKeys)"
            )
        elif toleration.key not in policy.allowed_toleration_keys:
            problems.append(
                f"{where}.tolerations[{index}].key: {toleration.key} is not an allowed taint "
                f"(allowed: {', '.join(policy.allowed_toleration_keys) or 'none'})"
            )
    return problems
