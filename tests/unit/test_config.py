from __future__ import annotations

import json
from pathlib import Path

import pytest

from embedding_job.api import (
    ConfigError,
    DType,
    InputFormat,
    Pooling,
    SrcType,
    json_schema,
    load_config,
    parse_config,
)

MINIMAL = {"input": {"uri": "/data/images"}, "output": {"uri": "/data/out"}}


def test_defaults_match_the_original_component() -> None:
    cfg = parse_config(MINIMAL)
    assert cfg.model.name == "facebook/dinov2-large"
    assert cfg.model.dtype is DType.FLOAT16
    # auto is the CLS token for ViT and DINOv2 (tests/unit/test_families.py), as in the original.
    assert cfg.model.pooling is Pooling.AUTO
    assert cfg.model.normalize is True
    assert cfg.inference.batch_size == 32
    assert cfg.input.src_type is SrcType.IMAGE_URL
    assert cfg.input.image_column == "image"
    assert cfg.output.embedding_column == "embedding"
    assert cfg.output.mode.value == "error"


def test_wire_form_is_camel_case_json_and_round_trips() -> None:
    cfg = parse_config(MINIMAL)
    wire = json.loads(cfg.to_json())
    assert wire["inference"]["batchSize"] == 32
    assert wire["input"]["srcType"] == "image_url"
    assert parse_config(wire) == cfg


def test_snake_case_keys_are_accepted() -> None:
    cfg = parse_config({**MINIMAL, "inference": {"batch_size": 4}})
    assert cfg.inference.batch_size == 4


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"inference": {"batchSize": -1}}, "inference.batchSize"),
        ({"model": {"dtype": "int8"}}, "model.dtype"),
        ({"input": {"uri": "/x", "srcType": "image_path"}}, "input.srcType"),
        ({"model": {"pooling": "max"}}, "model.pooling"),
        ({"output": {"uri": "/o", "mode": "append"}}, "output.mode"),
        ({"errors": {"maxFailedFraction": 1.5}}, "errors.maxFailedFraction"),
        ({"model": {"nmae": "x"}}, "model.nmae"),
        ({"model": {"name": "/abs/path"}}, "model.name"),
        ({"output": {"uri": "https://example.invalid/out"}}, "output.uri"),
        ({"input": {"uri": "/x", "imageColumn": "bad name!"}}, "input.imageColumn"),
    ],
)
def test_errors_name_the_field(patch: dict, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({**MINIMAL, **patch})
    assert any(problem.startswith(field + ":") for problem in info.value.problems), (
        info.value.problems
    )


def test_missing_sections_are_reported_together() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({})
    assert {p.split(":")[0] for p in info.value.problems} == {"input", "output"}


def test_format_is_inferred_from_the_uri() -> None:
    assert parse_config(MINIMAL).input.resolved_format is InputFormat.IMAGES_GLOB
    table = {**MINIMAL, "input": {"uri": "s3://b/rows.parquet"}}
    assert parse_config(table).input.resolved_format is InputFormat.PARQUET
    csv = {**MINIMAL, "input": {"uri": "gs://b/rows.csv"}}
    assert parse_config(csv).input.resolved_format is InputFormat.CSV


def test_images_glob_requires_url_sources() -> None:
    with pytest.raises(ConfigError, match="input: images-glob"):
        parse_config({**MINIMAL, "input": {"uri": "/x", "srcType": "image_base64"}})


def test_output_columns_must_not_clash_with_kept_input_columns() -> None:
    with pytest.raises(ConfigError, match="clash"):
        parse_config(
            {"input": {"uri": "/t.parquet", "idColumn": "embedding"}, "output": {"uri": "/o"}}
        )


def test_overrides_parse_yaml_scalars_and_snake_keys() -> None:
    text = "input: {uri: /x}\noutput: {uri: /o}\n"
    cfg = load_config(
        text, ["model.dtype=float32", "inference.batch_size=8", "model.normalize=false"]
    )
    assert cfg.model.dtype is DType.FLOAT32
    assert cfg.inference.batch_size == 8
    assert cfg.model.normalize is False


def test_bad_override_and_bad_yaml_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"expected key\.path=value"):
        load_config("input: {uri: /x}\noutput: {uri: /o}", ["novalue"])
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config("input: [unclosed")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config("- a list")


def test_an_embeddingjob_manifest_is_accepted_as_config() -> None:
    manifest = """
apiVersion: embedding.dev/v1alpha1
kind: EmbeddingJob
metadata: {name: demo}
spec:
  input: {uri: s3://bucket/images/}
  model: {name: facebook/dinov2-large, dtype: float16}
  output: {uri: s3://bucket/out/}
  cluster: {image: example/job:1}
"""
    cfg = load_config(manifest)
    assert cfg.input.uri == "s3://bucket/images/"


def test_json_schema_describes_every_field() -> None:
    schema = json_schema()
    json.dumps(schema)
    defs = schema["$defs"]
    for definition in defs.values():
        for name, prop in definition.get("properties", {}).items():
            assert prop.get("description"), f"{definition['title']}.{name} has no description"
    assert defs["InferenceSpec"]["properties"]["batchSize"]["minimum"] == 1


def test_worker_plan_uses_every_gpu_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    from embedding_job.run.pipeline import RunOptions, plan_workers

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 64.0, "GPU": 8.0})
    ray_run = RunOptions(runner="ray")
    assert plan_workers(parse_config(MINIMAL), ray_run).concurrency == 8
    half = parse_config({**MINIMAL, "inference": {"gpusPerWorker": 2}})
    assert plan_workers(half, ray_run).concurrency == 4
    pinned = parse_config({**MINIMAL, "inference": {"concurrency": 3}})
    assert plan_workers(pinned, ray_run).concurrency == 3
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0})
    cpu_only = plan_workers(parse_config(MINIMAL), ray_run)
    assert (cpu_only.gpus, cpu_only.concurrency, cpu_only.in_process) == (0.0, 1, False)


def test_the_native_runners_one_worker_is_the_jobs_own_process() -> None:
    from embedding_job.run.pipeline import RunOptions, plan_workers

    native = RunOptions(runner="native")
    cpu = parse_config({**MINIMAL, "inference": {"device": "cpu"}})
    assert plan_workers(cpu, native).in_process
    # Several workers asked for: worker processes, each with its own share of the machine.
    several = parse_config({**MINIMAL, "inference": {"device": "cpu", "concurrency": 2}})
    assert not plan_workers(several, native).in_process


@pytest.mark.parametrize(("cpus", "asked"), [(1, 1.0), (2, 1.0), (3, 1.5), (16, 8.0)])
def test_the_in_process_udf_asks_for_two_of_dafts_threads(
    monkeypatch: pytest.MonkeyPatch, cpus: int, asked: float
) -> None:
    from embedding_job.run import pipeline

    monkeypatch.setattr(pipeline, "available_cpus", lambda: cpus)
    # Whatever cpusPerWorker says: it sets torch's threads, not how many calls Daft runs.
    assert pipeline.in_process_cpus() == asked


def test_the_cpus_a_process_may_use_count_its_cgroups_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from embedding_job.imaging import datapath
    from embedding_job.imaging.datapath import cgroup_cpu_limit

    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("250000 100000\n")
    assert cgroup_cpu_limit(str(v2)) == 2.5
    (v2 / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_limit(str(v2)) is None
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("150000\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_limit(str(v1)) == 1.5
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_limit(str(v1)) is None
    assert cgroup_cpu_limit(str(tmp_path / "none")) is None
    # Rounded down, and never more than the CPUs it may run on, nor fewer than one.
    monkeypatch.setattr(datapath.os, "sched_getaffinity", lambda _: set(range(8)))
    for limit, cpus in ((2.5, 2), (0.5, 1), (12.0, 8), (None, 8)):
        monkeypatch.setattr(datapath, "cgroup_cpu_limit", lambda limit=limit: limit)
        assert datapath.available_cpus() == cpus


def test_cpu_workers_get_torch_threads_for_the_cpus_they_may_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from embedding_job.api import InferenceSpec
    from embedding_job.run import pipeline
    from embedding_job.run.pipeline import Workers, cpu_threads

    monkeypatch.setattr(pipeline, "available_cpus", lambda: 12)
    default = InferenceSpec()
    one, three = Workers(gpus=0.0, concurrency=1), Workers(gpus=0.0, concurrency=3)
    # Ray would give a worker that reserves no CPUs one thread: 0 is all of its own node's.
    assert cpu_threads(default, one, "ray") == cpu_threads(default, three, "ray") == 0
    # Native: torch's default for one worker; a share of this machine for several.
    assert cpu_threads(default, one, "native") is None
    assert cpu_threads(default, three, "native") == 4
    # Reserved CPUs win on either runner, rounded down as Ray does.
    reserved = InferenceSpec.model_validate({"cpusPerWorker": 2.5})
    assert cpu_threads(reserved, three, "ray") == cpu_threads(reserved, one, "native") == 2
    # Workers with a GPU keep torch's default.
    assert cpu_threads(reserved, Workers(gpus=1.0, concurrency=8), "ray") is None


@pytest.mark.parametrize(
    ("batch", "call", "on_gpu", "rows"),
    [
        (32, None, True, 256),  # default on a GPU worker: 8 model batches per call
        (256, None, True, 1024),  # ... at most 1024 rows
        (2048, None, True, 2048),  # ... never below one model batch
        (32, None, False, 32),  # default on a CPU worker: one model batch
        (32, 100, True, 100),  # explicit
        (32, 100, False, 100),  # explicit, whatever the worker
        (32, 8, True, 32),  # explicit, but a call holds at least one model batch
    ],
)
def test_rows_per_embedding_call(batch: int, call: int | None, on_gpu: bool, rows: int) -> None:
    from embedding_job.api import InferenceSpec
    from embedding_job.run.pipeline import udf_batch_size

    spec = InferenceSpec.model_validate({"batchSize": batch, "callBatchSize": call})
    assert udf_batch_size(spec, on_gpu=on_gpu) == rows
