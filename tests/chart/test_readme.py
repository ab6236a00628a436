"""The README's install commands must match the chart's real values, names and files."""

from __future__ import annotations

import re

import yaml

from tests.support.helm import CHART
from tests.support.tools import ROOT

README = (ROOT / "README.md").read_text()


def commands() -> list[str]:
    """Shell commands in the README's bash blocks, with continuation lines joined."""
    blocks = re.findall(r"```bash\n(.*?)```", README, flags=re.S)
    joined = "\n".join(blocks).replace("\\\n", " ")
    return [line.split("#")[0].strip() for line in joined.splitlines() if line.strip()]


def lookup(values: dict, dotted: str) -> bool:
    node = values
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def test_helm_install_uses_the_chart_path_and_real_values() -> None:
    installs = [c for c in commands() if c.startswith("helm install embedding-operator")]
    assert installs, "README must show how to helm install the chart"
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for command in installs:
        assert "charts/embedding-operator" in command
        for key in re.findall(r"--set ([\w.]+)=", command):
            assert lookup(values, key), f"README sets {key}, which values.yaml does not have"


def test_kubectl_commands_name_existing_files_and_resources() -> None:
    for command in commands():
        for path in re.findall(r"-f (\S+)", command):
            if command.startswith(("kubectl", "helm")) and not path.startswith("-"):
                assert (ROOT / path).exists(), f"README applies {path}, which does not exist"
    names = {
        yaml.safe_load(p.read_text())["metadata"]["name"]
        for p in (ROOT / "examples").glob("*.yaml")
    }
    for command in commands():
        match = re.match(r"kubectl get ej (\S+) ", command)
        if match and not match.group(1).startswith("-"):
            assert match.group(1) in names, (
                f"README reads EmbeddingJob {match.group(1)}, no example has it"
            )


def test_upgrade_note_applies_the_chart_crds_server_side() -> None:
    assert "kubectl apply --server-side -f charts/embedding-operator/crds/" in README
    assert (CHART / "crds" / "embeddingjobs.embedding.dev.yaml").is_file()
