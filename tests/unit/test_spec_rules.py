"""Values that would only fail later (at RayJob creation or pod start) are refused when read."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml

from embedding_job.api import (
    API_VERSION,
    KIND,
    MAX_COLUMNS,
    MAX_PATH,
    MAX_URI,
    ConfigError,
    check_name,
    parse_spec,
    quantity_value,
)
from embedding_operator.builders import Defaults, build_rayjob, entrypoint
from embedding_operator.job_objects import Owner
from embedding_operator.settings import configure
from tests.support.specs import largest_spec

BASE: dict[str, Any] = {"input": {"uri": "s3://b/in/"}, "output": {"uri": "s3://b/out/"}}


def problems(**spec: Any) -> str:
    with pytest.raises(ConfigError) as err:
        parse_spec({**BASE, **spec})
    return str(err.value)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("2", Decimal(2)),
        ("500m", Decimal("0.5")),
        ("1.5Gi", Decimal(3 * 2**29)),
        ("8Gi", Decimal(8 * 2**30)),
        ("1e3", Decimal(1000)),
        ("+4k", Decimal(4000)),
        (".5", Decimal("0.5")),
    ],
)
def test_quantities_read_as_kubernetes_does(text: str, value: Decimal) -> None:
    assert quantity_value(text) == value


@pytest.mark.parametrize("bad", ["-1", "1eeeK", "1.2.3", "", "2 Gi", "1Kb", "0", "0m", "0.0Gi"])
def test_cpu_and_memory_must_be_quantities_above_zero(bad: str) -> None:
    assert "spec.cluster.head.cpu" in problems(cluster={"head": {"cpu": bad}})
    assert "spec.cluster.worker.memory" in problems(cluster={"worker": {"memory": bad}})


@pytest.mark.parametrize(
    "key", ["-bad", "a/b/c", "UPPER.example.com/x", "x" * 64, f"{'a' * 254}/x", "sp ace"]
)
def test_node_selector_keys_are_label_keys(key: str) -> None:
    assert "nodeSelector" in problems(cluster={"worker": {"nodeSelector": {key: "v"}}})


@pytest.mark.parametrize("value", ["-x", "a" * 64, "a b", "x/y"])
def test_node_selector_values_are_label_values(value: str) -> None:
    assert "nodeSelector" in problems(cluster={"head": {"nodeSelector": {"pool": value}}})


def test_good_labels_tolerations_and_names_are_accepted() -> None:
    spec = parse_spec(
        {
            **BASE,
            "cluster": {
                "serviceAccountName": "embed.er-1",
                "storageSecretRef": {"name": "s3-creds"},
                "modelsVolumeClaim": "models",
                "worker": {
                    "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100", "pool": ""},
                    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
                    "gpuResource": "amd.com/gpu",
                },
                "lifecycle": {"queueName": "gpu-queue"},
            },
        }
    )
    assert spec.cluster.worker.node_selector["pool"] == ""


@pytest.mark.parametrize(
    ("cluster", "field"),
    [
        ({"serviceAccountName": "Bad_Name"}, "serviceAccountName"),
        ({"storageSecretRef": {"name": "no spaces"}}, "storageSecretRef.name"),
        ({"modelsVolumeClaim": "UPPER"}, "modelsVolumeClaim"),
        ({"lifecycle": {"queueName": "not a label"}}, "queueName"),
        ({"worker": {"gpuResource": "nvidia.com/"}}, "gpuResource"),
        ({"worker": {"tolerations": [{"key": "a b"}]}}, "tolerations.0.key"),
        ({"image": "registry/job image:1"}, "cluster.image"),
        ({"volumes": [{"name": "v", "mountPath": "data", "claimName": "c"}]}, "mountPath"),
    ],
)
def test_names_and_paths_follow_kubernetes_rules(cluster: dict[str, Any], field: str) -> None:
    assert field in problems(cluster=cluster)


def test_an_embeddingjobs_model_path_is_absolute() -> None:
    assert "spec.model.path" in problems(model={"path": "models"})
    # The job run by hand may use a relative models root: only the pods need it absolute.
    from embedding_job.api import parse_config

    assert parse_config({**BASE, "model": {"path": "models"}}).model.path == "models"


def test_sizes_are_bounded() -> None:
    assert "spec.input.uri" in problems(input={"uri": "s3://b/" + "x" * MAX_URI})
    assert "spec.model.path" in problems(model={"path": "/" + "m" * MAX_PATH})
    columns = [f"c{i}" for i in range(MAX_COLUMNS + 1)]
    assert "spec.input.columns" in problems(input={"uri": "s3://b/in.parquet", "columns": columns})


def test_the_largest_admitted_spec_leaves_the_driver_command_alone() -> None:
    # The driver's command line (one `sh -c` argument, at most 128 KiB on Linux) carries no
    # config: the job reads it from its EmbeddingJob.
    spec = parse_spec(largest_spec())
    manifest = build_rayjob(Owner("big", "team-a", "uid-1"), spec, Defaults())
    assert manifest["spec"]["entrypoint"] == entrypoint()
    assert len(entrypoint()) < 100 and len(json.dumps(largest_spec())) > 300_000
    # What the bounds still guard: every object made from a spec stays far below what etcd
    # stores (1.5 MiB); the RayJob holds the pods' volumes, selectors and tolerations twice.
    assert len(json.dumps(manifest)) < 1024 * 1024


def test_kopf_remembers_only_what_can_change_of_the_largest_spec() -> None:
    # kopf keeps its last-handled state in the status: a copy of the largest spec there would
    # double an object etcd stores whole (1.5 MiB at most); it keeps spec.suspend only.
    settings = kopf.OperatorSettings()
    configure(settings)
    body = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": "big", "labels": {"team": "a"}, "annotations": {"note": "x" * 1000}},
        "spec": {**largest_spec(), "suspend": False},
    }
    essence = settings.persistence.diffbase_storage.build(body=kopf.Body(body))  # type: ignore[arg-type]
    assert essence == {"spec": {"suspend": False}}


def test_the_contract_package_exports_every_public_name_of_its_modules() -> None:
    # Callers import from embedding_job.api only: a name added to a module must be exported.
    import ast

    import embedding_job.api as api

    for path in sorted(Path(api.__file__).parent.glob("[!_]*.py")):
        defined = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef | ast.FunctionDef):
                defined.add(node.name)
            elif isinstance(node, ast.Assign):
                defined |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        public = {name for name in defined if not name.startswith("_")}
        missing = public - set(api.__all__)
        assert public and not missing, f"embedding_job.api lacks {sorted(missing)} of {path.name}"


INVALID = sorted((Path(__file__).parents[1] / "integration" / "invalid").glob("*.yaml"))


@pytest.mark.parametrize("bad", INVALID, ids=lambda p: p.stem)
def test_the_contract_refuses_what_the_apiserver_refuses(bad: Path) -> None:
    # tests/integration/test_api.py applies the same files to a real kube-apiserver.
    expected_text = bad.read_text().splitlines()[0].removeprefix("# expect: ").strip()
    expected = expected_text.split()[0]
    manifest = yaml.safe_load(bad.read_text())
    found = check_name(manifest["metadata"]["name"])
    try:
        parse_spec(manifest["spec"])
    except ConfigError as exc:
        found += exc.problems
    # The same message, the same field, or its parent naming the offending key.
    assert any(expected_text in problem for problem in found) or any(
        expected.startswith(loc) and expected.removeprefix(loc).strip(".") in message
        for loc, _, message in (problem.partition(": ") for problem in found)
    ), found


@pytest.mark.parametrize(
    ("cluster", "field"),
    [
        ({"serviceAccountName": "abc\n"}, "serviceAccountName"),
        ({"head": {"cpu": "1\n"}}, "head.cpu"),
        ({"worker": {"gpuResource": "memory"}}, "gpuResource"),
        (
            {
                "worker": {
                    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "value": "x"}]
                }
            },
            "tolerations.0",
        ),
        (
            {"worker": {"tolerations": [{"key": "k", "value": "v", "tolerationSeconds": 5}]}},
            "tolerations.0",
        ),
        ({"worker": {"tolerations": [{"operator": "Equal", "value": "v"}]}}, "tolerations.0"),
    ],
)
def test_what_the_apiserver_refuses_in_a_pod_is_refused_in_the_spec(
    cluster: dict[str, Any], field: str
) -> None:
    assert field in problems(cluster=cluster)


def test_a_no_execute_toleration_may_have_seconds() -> None:
    toleration = {"key": "k", "effect": "NoExecute", "tolerationSeconds": 30}
    spec = parse_spec({**BASE, "cluster": {"worker": {"tolerations": [toleration]}}})
    assert spec.cluster.worker.tolerations[0].toleration_seconds == 30


# ---- several models: the spec, its refusals, the job config the operator hands on ----

OUT = {"uri": "s3://b/o/"}
TABLE = {"uri": "s3://b/in.parquet"}
TWO_MODELS = [
    {"name": "openai/clip-vit-base-patch32", "pooling": "projected", "alias": "clip"},
    {"name": "facebook/dinov2-base", "dtype": "bfloat16", "batchSize": 64},
]


def job_config_of(spec: dict[str, Any]) -> Any:
    """The job config of an EmbeddingJob spec as the apiserver stores it, read the way the
    job reads its own EmbeddingJob."""
    from embedding_job.api import config_of

    stored = parse_spec(spec).model_dump(mode="json", by_alias=True)
    return config_of({"kind": "EmbeddingJob", "spec": stored})


def test_a_spec_field_the_job_does_not_know_is_refused_not_dropped() -> None:
    """A spec written for a newer job image (say, models) must not run as something else
    on an older one."""
    from embedding_job.api import ConfigError, config_of

    stored = parse_spec(BASE).model_dump(mode="json", by_alias=True)
    with pytest.raises(ConfigError, match="fromTheFuture"):
        config_of({"kind": "EmbeddingJob", "spec": {**stored, "fromTheFuture": [1]}})


def test_a_spec_with_a_clip_and_a_dinov2_model_parses_and_its_job_config_round_trips() -> None:
    from embedding_job.api import Pooling, load_config

    config = job_config_of({**BASE, "models": TWO_MODELS})
    assert load_config(config.to_json()) == config
    assert [(m.name, m.path, column) for m, column in config.embedding_columns()] == [
        ("openai/clip-vit-base-patch32", "/models", "embedding_clip"),
        ("facebook/dinov2-base", "/models", "embedding_dinov2_base"),
    ]
    assert config.models[0].pooling is Pooling.PROJECTED and config.models[1].batch_size == 64
    # The single-model wire form stays what it was: one column, named by output.
    single = job_config_of({**BASE, "model": {"name": "facebook/dinov2-base"}})
    assert [column for _, column in single.embedding_columns()] == ["embedding"]
    assert load_config(single.to_json()) == single


def test_a_job_is_named_by_the_models_it_embeds_with() -> None:
    from embedding_job.api import DEFAULT_MODEL, EmbeddingJobSpec, named_models

    # As stored: the apiserver's defaulting gives model its defaults even next to models.
    defaulted = EmbeddingJobSpec.model_validate({**BASE, "models": TWO_MODELS})
    stored = defaulted.model_dump(mode="json", by_alias=True)
    assert stored["model"]["name"] == DEFAULT_MODEL
    assert named_models(stored) == "openai/clip-vit-base-patch32, facebook/dinov2-base"
    assert named_models({**BASE, "model": {"name": "facebook/dinov2-base"}}) == (
        "facebook/dinov2-base"
    )
    assert named_models(BASE) == named_models({**BASE, "models": []}) == DEFAULT_MODEL


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"model": {"dtype": "float32"}, "models": TWO_MODELS}, "give either model or models"),
        ({"models": [TWO_MODELS[1], {**TWO_MODELS[1], "dtype": "float32"}]}, "aliases"),
        ({"models": [TWO_MODELS[0], {**TWO_MODELS[1], "alias": "clip"}]}, "aliases"),
        ({"models": [{"name": "a/b", "alias": "no-dash"}]}, "models.0.alias"),
        ({"models": [{"name": f"a/m{i}"} for i in range(5)]}, "spec.models"),
        ({"model": {"alias": "x"}}, "model.alias"),
        ({"models": TWO_MODELS, "output": {**OUT, "errorColumn": "embedding_clip"}},
         "repeat a name"),
        ({"models": TWO_MODELS, "input": {**TABLE, "idColumn": "embedding_clip"}},
         "clash with output columns"),
    ],
)  # fmt: skip
def test_bad_model_lists_are_refused_naming_why(spec: dict[str, Any], message: str) -> None:
    assert message in problems(**spec)


def test_the_crd_refuses_model_and_models_together_as_the_contract_does() -> None:
    from embedding_operator.crd import spec_schema

    rules = [r["rule"] for r in spec_schema()["x-kubernetes-validations"]]
    (both,) = [r for r in rules if "self.models.size() == 0" in r]
    # Every field of model is pinned to its default: the rule follows the contract's defaults.
    for field in ("name", "path", "download", "dtype", "pooling", "normalize"):
        assert f"self.model.{field} ==" in both
    assert "!has(self.model.alias)" in both and "!has(self.model.batchSize)" in both


@pytest.mark.parametrize(
    "spec",
    [
        {"model": {"path": "/tmp", "download": True}},
        {"models": [{"name": "facebook/dinov2-base", "path": "/tmp"}]},
        # Other spellings of the same directory.
        {"model": {"path": "/tmp/", "download": True}},
        {"model": {"path": "//tmp/.", "download": True}},
    ],
)
def test_a_model_path_may_not_be_the_pods_scratch_dir(spec: dict[str, Any]) -> None:
    """Both would be mounted at /tmp: a pod Kubernetes refuses, a job that waits for ever."""
    with pytest.raises(ConfigError, match="may not be /tmp"):
        parse_spec({**BASE, **spec})
