"""The job image, built here by `make images`, run as a real container (podman + runc) with
exactly the settings the operator's builder gives the Ray pods: the image's non-root user,
a read-only root filesystem with only the pod's volumes writable, no capabilities, no
privilege escalation, the pod's env. No network: the job reads and writes mounted dirs."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from embedding_job.api import FROM_EMBEDDINGJOB_FLAG, config_of, parse_spec
from embedding_operator.builders import Defaults, build_rayjob, entrypoint
from embedding_operator.job_objects import Owner
from tests.support import image_build
from tests.support.containers import PODMAN, image_user, run_args
from tests.support.images import bad_images, good_images
from tests.support.jobs import read_manifest, read_output, run_cli
from tests.support.models import VIT

OWNER = Owner(name="smoke", namespace="team-a", uid="smoke-uid")
DATA = "/data"
CONTAINER_TIMEOUT = 600


@pytest.fixture(scope="module")
def job_image() -> str:
    (built,) = image_build.ensure(image_build.JOB_IMAGE)
    return built.ref


def spec(data: str, models: str) -> dict[str, Any]:
    return {
        "input": {"uri": f"{data}/in/", "format": "images-glob"},
        "model": {"name": VIT, "path": models},
        "inference": {"batchSize": 4},
        "output": {"uri": f"{data}/out"},
        "errors": {"maxFailedFraction": 0.5},
        "cluster": {
            "modelsVolumeClaim": "models",
            "volumes": [{"name": "data", "mountPath": data, "claimName": "data"}],
        },
    }


def head_pod(image: str, models: str = "/models") -> tuple[dict[str, Any], dict[str, Any], str]:
    """The head pod and container the operator builds, and the driver command it submits,
    with the config passed inline: the container has no apiserver to read its EmbeddingJob
    from (that route is tested in tests/integration/test_progress.py)."""
    rayjob = build_rayjob(OWNER, parse_spec(spec(DATA, models)), Defaults(job_image=image))
    pod = rayjob["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    driver = shlex.split(entrypoint())
    at = driver.index(FROM_EMBEDDINGJOB_FLAG)
    driver[at : at + 1] = ["--config-json", config_json(spec(DATA, models))]
    return pod, pod["containers"][0], shlex.join(driver)


def config_json(job_spec: dict[str, Any]) -> str:
    """The job config an EmbeddingJob of this spec gives its job."""
    return config_of({"kind": "EmbeddingJob", "spec": job_spec}).to_json()


def readable_by_all(root: Path) -> Path:
    """pytest's temp dirs are 0700 and root's: the container's user must read (and, for
    the data dir, write) what is mounted, as it would a volume."""
    for path in [root, *root.rglob("*")]:
        path.chmod(0o777 if path.is_dir() else 0o644)
    return root


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    (data / "in").mkdir(parents=True)
    for name, blob in {**good_images(), **bad_images()}.items():
        (data / "in" / f"{name}.jpg").write_bytes(blob)
    return readable_by_all(data)


def podman_run(args: list[str], image: str, command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PODMAN, "run", *args, image, *command],
        capture_output=True,
        text=True,
        timeout=CONTAINER_TIMEOUT,
        check=False,
    )


def container_args(image: str, data: Path, models_root: Path) -> list[str]:
    pod, container, _ = head_pod(image)
    hosts = {"models": readable_by_all(models_root), "data": data}
    return run_args(pod, container, image_user=image_user(image), host_paths=hosts)


def by_name(out: dict[str, list[Any]]) -> dict[str, Any]:
    return {Path(p).name: v for p, v in zip(out["path"], out["embedding"], strict=True)}


def assert_output_matches_a_host_run(
    data: Path, models_root: Path, tmp_path: Path, logs: str
) -> None:
    """Rows in = rows out, the bad images null, and the vectors the host's venv computes."""
    out, manifest = read_output(data / "out"), read_manifest(data / "out")
    n_good, n_bad = len(good_images()), len(bad_images())
    assert (manifest["status"], manifest["rowsIn"]) == ("succeeded", n_good + n_bad), logs
    assert (manifest["rowsEmbedded"], manifest["rowsFailed"]) == (n_good, n_bad)
    assert (data / "out" / "_SUCCESS").exists()
    host_spec = spec(str(data), str(models_root))
    host_spec["output"]["uri"] = str(tmp_path / "host-out")
    host = run_cli("run", "--config-json", config_json(host_spec), "--runner", "native")
    assert host.returncode == 0, host.stderr[-4000:]
    ours, theirs = by_name(out), by_name(read_output(tmp_path / "host-out"))
    assert ours.keys() == theirs.keys() == {f"{n}.jpg" for n in {**good_images(), **bad_images()}}
    for name, vector in ours.items():
        assert (vector is None) == (name.removesuffix(".jpg") in bad_images()), name
        if vector is not None:
            np.testing.assert_allclose(vector, theirs[name], atol=1e-5)


def test_embedding_job_runs_in_the_image_as_the_ray_pods_run(
    job_image: str, data_dir: Path, models_root: Path, tmp_path: Path
) -> None:
    _, _, driver = head_pod(job_image)
    command = shlex.split(driver)
    command[command.index("--runner") + 1] = "native"
    args = container_args(job_image, data_dir, models_root)
    assert "--read-only" in args and "--cap-drop=ALL" in args
    result = podman_run(args, job_image, command)
    logs = result.stdout + result.stderr
    assert result.returncode == 0, logs[-6000:]
    assert_output_matches_a_host_run(data_dir, models_root, tmp_path, logs[-6000:])


def test_a_ray_head_starts_in_the_image_and_runs_the_operators_driver(
    job_image: str, data_dir: Path, models_root: Path, tmp_path: Path
) -> None:
    _, _, driver = head_pod(job_image)
    params = build_rayjob(OWNER, parse_spec(spec(DATA, "/models")), Defaults(job_image=job_image))[
        "spec"
    ]["rayClusterSpec"]["headGroupSpec"]["rayStartParams"]
    # What KubeRay runs in the head container, with the pod's IP (here: loopback only).
    start = ["ray", "start", "--head", "--node-ip-address=127.0.0.1", "--num-cpus=2"]
    start += [f"--{key}={value}" for key, value in sorted(params.items())]
    script = (
        f"{shlex.join(start)} && ray status && {driver}; rc=$?; ray stop --force >/dev/null; "
        "exit $rc"
    )
    args = container_args(job_image, data_dir, models_root)
    # KubeRay gives every Ray container a /dev/shm emptyDir in memory for the object store.
    result = podman_run([*args, "--shm-size=1g"], job_image, ["bash", "-c", script])
    logs = result.stdout + result.stderr
    assert result.returncode == 0, logs[-6000:]
    assert "Ray runtime started" in logs, logs[-6000:]
    assert_output_matches_a_host_run(data_dir, models_root, tmp_path, logs[-6000:])
