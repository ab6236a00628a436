"""EmbeddingJob specs the tiers share."""

from __future__ import annotations

from typing import Any

from embedding_job.api import (
    MAX_COLUMNS,
    MAX_LABELS,
    MAX_PATH,
    MAX_TOLERATIONS,
    MAX_URI,
    MAX_VOLUMES,
)


def largest_spec() -> dict[str, Any]:
    """A spec at every size bound the schema sets (its JSON is about 320 KB)."""

    def key(i: int) -> str:
        return f"{'k' * 247}{i:03d}.io/{'n' * 63}"

    labels = {key(i): "v" * 63 for i in range(MAX_LABELS)}
    tolerations = [
        {"key": key(i), "operator": "Equal", "value": "v" * 63, "effect": "NoSchedule"}
        for i in range(MAX_TOLERATIONS)
    ]
    pod = {"nodeSelector": labels, "tolerations": tolerations}
    path = "/" + "p" * (MAX_PATH - 1)
    volumes = [
        {
            "name": f"v{i:02d}" + "x" * 60,
            "mountPath": f"/{i:02d}" + "m" * (MAX_PATH - 3),
            "nfs": {"server": "s" * 253, "path": path},
        }
        for i in range(MAX_VOLUMES)
    ]
    uri = "s3://b/" + "'" * (MAX_URI - len("s3://b/"))
    return {
        "input": {
            "uri": uri,
            "format": "parquet",
            "columns": [f"c{i:03d}" + "c" * 252 for i in range(MAX_COLUMNS)],
            "idColumn": "i" * 256,
        },
        "output": {"uri": uri},
        "model": {"path": path, "name": "n" * 256},
        "cluster": {"head": pod, "worker": pod, "volumes": volumes},
    }
