"""How a pod spec becomes podman flags (tests/support/containers.py) and how `make images`
keys its images (tests/support/image_build.py): the pure parts, no container started."""

from __future__ import annotations

from pathlib import Path

import pytest

from embedding_job.api import parse_spec
from embedding_operator.builders import Defaults, build_rayjob
from embedding_operator.job_objects import Owner
from tests.support import image_build
from tests.support.containers import PodSpecError, memory_flag, run_args
from tests.support.dockerfile import copy_sources, parse

ROOT = Path(__file__).resolve().parents[2]


def head(spec: dict) -> tuple[dict, dict]:
    rayjob = build_rayjob(Owner("j", "ns", "uid"), parse_spec(spec), Defaults(job_image="img:1"))
    pod = rayjob["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    return pod, pod["containers"][0]


SPEC = {
    "input": {"uri": "/data/in/", "format": "images-glob"},
    "model": {"name": "facebook/dinov2-base", "path": "/models"},
    "output": {"uri": "/data/out"},
    "cluster": {
        "modelsVolumeClaim": "models",
        "volumes": [{"name": "data", "mountPath": "/data", "claimName": "data"}],
    },
}


def test_the_ray_pods_settings_become_podman_flags() -> None:
    pod, container = head(SPEC)
    args = run_args(
        pod, container, image_user="1000:100", host_paths={"models": Path("/m"), "data": Path("/d")}
    )
    assert args[args.index("--user") + 1] == "1000:100"
    assert {"--read-only", "--read-only-tmpfs=false", "--cap-drop=ALL"} <= set(args)
    assert args[args.index("--security-opt") + 1] == "no-new-privileges"
    volumes = [args[i + 1] for i, a in enumerate(args) if a == "--volume"]
    assert volumes == ["/m:/models:ro", "/d:/data"]
    tmpfs = [args[i + 1] for i, a in enumerate(args) if a == "--mount"]
    assert tmpfs == ["type=tmpfs,destination=/tmp,tmpfs-mode=1777"]
    assert "XDG_CACHE_HOME=/tmp/cache" in args
    assert "--network=none" in args and "--memory" in args


def test_a_volume_without_a_stand_in_or_a_root_user_is_refused() -> None:
    pod, container = head(SPEC)
    with pytest.raises(PodSpecError, match="'data' needs a host directory"):
        run_args(pod, container, image_user="1000:100", host_paths={"models": Path("/m")})
    hosts = {"models": Path("/m"), "data": Path("/d")}
    for user in ("0", "root", "ray"):
        with pytest.raises(PodSpecError, match="runAsNonRoot"):
            run_args(pod, container, image_user=user, host_paths=hosts)


@pytest.mark.parametrize(
    ("quantity", "flag"), [("8Gi", "8g"), ("512Mi", "512m"), ("1G", "1000000000"), ("100", "100")]
)
def test_memory_quantities(quantity: str, flag: str) -> None:
    assert memory_flag(quantity) == flag


def test_image_keys_change_with_any_part_and_its_boundaries() -> None:
    assert image_build.digest(["ab", "c"]) != image_build.digest(["a", "bc"])
    assert image_build.digest(["a"]) == image_build.digest([b"a"])
    assert len(image_build.digest(["x"])) == image_build.KEY_LENGTH
    assert image_build.tag("embedding-job", "k") == "localhost/embedding-job:k"
    assert image_build.wheels_key("a==1", [b"p"]) != image_build.wheels_key("a==2", [b"p"])


def test_the_images_are_keyed_by_the_files_their_copies_take() -> None:
    operator = copy_sources(parse(ROOT / "operator" / "Dockerfile"))
    assert "job_image/embedding_job/api/" in operator and "operator/" in operator
    assert "job_image/" not in operator  # the operator image takes only the contract
    job = copy_sources(parse(ROOT / "job_image" / "Dockerfile"))
    assert "job_image/pyproject.toml" in job and "job_image/" in job
    # Every recipe builds on a local base and the products get the wheelhouse.
    for name in image_build.PRODUCTS:
        recipe = image_build.RECIPES[name]
        assert recipe.wheels and recipe.base in image_build.RECIPES
        assert (ROOT / recipe.containerfile).is_file()
    assert "pip.conf" not in image_build.pip_conf() and "no-index = true" in image_build.pip_conf()


def test_a_containerfile_that_copies_nothing_is_keyed_by_itself_alone() -> None:
    """The local Ray base COPYs nothing: no file of the checkout may change its key."""
    recipe = image_build.RECIPES["embedding-operator-local-ray"]
    assert image_build.source_parts(recipe) == [(ROOT / recipe.containerfile).read_bytes()]


def test_the_wheelhouse_pins_what_the_images_install_and_no_dev_tool() -> None:
    names = {name for name, _ in image_build.closure(image_build.IMAGE_REQUIREMENTS)}
    assert {"torch", "daft", "ray", "transformers", "kopf", "pydantic"} <= names
    assert not {"pytest", "ruff", "mypy", "moto", "embedding-job"} & names
