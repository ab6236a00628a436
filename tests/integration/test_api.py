"""The EmbeddingJob API on a real kube-apiserver: schema, defaults, CEL rules, kubectl UX."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.support.jobs import examples
from tests.support.kube import Cluster

INVALID = sorted((Path(__file__).parent / "invalid").glob("*.yaml"))


def expected_field(path: Path) -> str:
    return path.read_text().splitlines()[0].removeprefix("# expect: ").strip()


@pytest.mark.parametrize("example", examples(), ids=lambda p: p.stem)
def test_every_example_is_accepted(cluster: Cluster, namespace: str, example: Path) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", str(example))
    name = yaml.safe_load(example.read_text())["metadata"]["name"]
    stored = cluster.get("ej", name, namespace)
    assert stored is not None
    assert stored["spec"]["model"]["name"]  # defaulted or given


@pytest.mark.parametrize("bad", INVALID, ids=lambda p: p.stem)
def test_invalid_specs_are_rejected_naming_the_field(
    cluster: Cluster, namespace: str, bad: Path
) -> None:
    result = cluster.kubectl("apply", "-n", namespace, "-f", str(bad), check=False)
    assert result.returncode != 0
    assert expected_field(bad) in result.stderr, result.stderr


def test_defaults_come_from_the_contract(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", str(examples()[0].parent / "minimal.yaml"))
    spec = cluster.get("ej", "photos-minimal", namespace)["spec"]  # type: ignore[index]
    assert spec["model"] == {
        "name": "facebook/dinov2-large",
        "path": "/models",
        "dtype": "float16",
        "pooling": "auto",  # cls for DINOv2, as the original component
        "normalize": True,
        "download": False,
    }
    assert spec["models"] == []
    assert spec["inference"]["batchSize"] == 32
    assert spec["cluster"]["submissionMode"] == "HTTPMode"
    assert spec["output"]["mode"] == "error"


def test_spec_is_immutable_but_suspend_is_not(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", str(examples()[0].parent / "minimal.yaml"))
    change = cluster.kubectl(
        "patch",
        "ej",
        "photos-minimal",
        "-n",
        namespace,
        "--type",
        "merge",
        "-p",
        '{"spec": {"model": {"dtype": "float32"}}}',
        check=False,
    )
    assert change.returncode != 0 and "immutable" in change.stderr
    cluster.kubectl(
        "patch",
        "ej",
        "photos-minimal",
        "-n",
        namespace,
        "--type",
        "merge",
        "-p",
        '{"spec": {"suspend": true}}',
    )


def test_explain_documents_fields(cluster: Cluster) -> None:
    out = cluster.kubectl("explain", "embeddingjobs.spec.input").stdout
    assert "srcType" in out and "How imageColumn encodes the image" in out
    out = cluster.kubectl("explain", "embeddingjobs.spec.model.dtype").stdout
    assert "float16" in out and "bfloat16" in out


def test_printer_columns(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", str(examples()[0].parent / "minimal.yaml"))
    header = cluster.kubectl("get", "ej", "-n", namespace).stdout.splitlines()[0].split()
    assert header == ["NAME", "PHASE", "MODEL", "ROWS", "OUTPUT", "AGE"]
    wide = (
        cluster.kubectl("get", "ej", "-n", namespace, "-o", "wide").stdout.splitlines()[0].split()
    )
    assert "RAYJOB" in wide and "MESSAGE" in wide
