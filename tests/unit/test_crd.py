"""The CRD is generated from the spec contract; the committed copy must not drift."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from embedding_operator.crd import build_crd, render

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "crds" / "embeddingjobs.embedding.dev.yaml"


def walk(schema: dict[str, Any], path: str = "spec"):
    for name, prop in schema.get("properties", {}).items():
        yield f"{path}.{name}", prop
        yield from walk(prop, f"{path}.{name}")
        if isinstance(prop.get("items"), dict):
            yield from walk(prop["items"], f"{path}.{name}[]")


def version() -> dict[str, Any]:
    return build_crd()["spec"]["versions"][0]


def test_committed_crd_matches_the_contract() -> None:
    assert COMMITTED.read_text() == render(), "run `make sync-crds` and commit crds/"


def test_names_scope_and_status_subresource() -> None:
    crd = build_crd()
    assert crd["metadata"]["name"] == "embeddingjobs.embedding.dev"
    assert crd["spec"]["scope"] == "Namespaced"
    assert crd["spec"]["names"]["shortNames"] == ["ej"]
    assert version()["name"] == "v1alpha1"
    assert version()["subresources"] == {"status": {}}


def test_every_spec_field_is_described_and_structural() -> None:
    spec = version()["schema"]["openAPIV3Schema"]["properties"]["spec"]
    for path, prop in walk(spec):
        assert prop.get("description"), f"{path} has no description"
        assert "type" in prop, f"{path} has no type (not structural)"
        assert "$ref" not in prop and "anyOf" not in prop, path


def test_enums_defaults_minimums_and_cel_rules() -> None:
    schema = version()["schema"]["openAPIV3Schema"]
    spec = schema["properties"]["spec"]["properties"]
    assert spec["model"]["properties"]["dtype"]["enum"] == ["float16", "bfloat16", "float32"]
    assert spec["model"]["properties"]["dtype"]["default"] == "float16"
    assert spec["inference"]["properties"]["batchSize"]["minimum"] == 1
    cpus = spec["inference"]["properties"]["cpusPerWorker"]
    assert (cpus["minimum"], cpus["exclusiveMinimum"], cpus["nullable"]) == (0, True, True)
    assert spec["inference"]["default"] == {}
    assert spec["cluster"]["properties"]["submissionMode"]["default"] == "HTTPMode"
    rules = [r["rule"] for r in schema["properties"]["spec"]["x-kubernetes-validations"]]
    assert "self.input == oldSelf.input" in rules[0] and "suspend" not in rules[0]
    assert schema["x-kubernetes-validations"][0]["rule"] == "self.metadata.name.size() <= 47"


def test_printer_columns() -> None:
    columns = {c["name"]: c for c in version()["additionalPrinterColumns"]}
    assert list(columns)[:5] == ["Phase", "Model", "Rows", "Output", "Age"]
    # The status's, not spec.model.name: with models, spec.model is an unused default.
    assert columns["Model"]["jsonPath"] == ".status.model"
    assert columns["RayJob"]["priority"] == 1
    # `kubectl get ej -o wide`: the rate and the time left, as the job reports them.
    assert columns["Images/s"]["jsonPath"] == ".status.progress.imagesPerSecond"
    assert columns["ETA-Seconds"]["jsonPath"] == ".status.progress.remainingSeconds"
    assert columns["Images/s"]["priority"] == columns["ETA-Seconds"]["priority"] == 1


def test_committed_file_is_valid_yaml() -> None:
    assert yaml.safe_load(COMMITTED.read_text())["kind"] == "CustomResourceDefinition"


def test_every_example_is_a_valid_spec() -> None:
    from embedding_job.api import check_name, parse_spec

    examples = sorted((ROOT / "examples").glob("*.yaml"))
    assert examples
    for path in examples:
        manifest = yaml.safe_load(path.read_text())
        assert check_name(manifest["metadata"]["name"]) == []
        parse_spec(manifest["spec"])


def test_every_spec_field_but_suspend_is_immutable_and_always_there_to_compare() -> None:
    """A field left out of the rule could change under a running job, whose every attempt
    reads its spec again; a field the rule compares must always be set (required or
    defaulted), or the comparison fails on an object without it."""
    schema = version()["schema"]["openAPIV3Schema"]
    spec = schema["properties"]["spec"]
    (rule,) = [r["rule"] for r in spec["x-kubernetes-validations"] if "oldSelf" in r["rule"]]
    for field, prop in spec["properties"].items():
        compared = f"self.{field} == oldSelf.{field}" in rule
        assert compared == (field != "suspend"), field
        if compared:
            assert field in spec["required"] or "default" in prop, field
