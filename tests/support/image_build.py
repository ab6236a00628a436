"""`make images`: the operator and job images built from the repository's own Dockerfiles
with buildah, on a machine with no Docker engine and no registry.

No base image can be pulled here, so the bases are assembled locally: a Debian bookworm
rootfs (Python 3.11) from Debian's packages with mmdebstrap, then hack/images/'s
Containerfiles turn it into stand-ins for ``python:3.11-slim-bookworm`` (the operator's base)
and ``rayproject/ray:<ray>-py311-gpu`` (the job's), passed to the Dockerfiles as build
arguments. Users build the same Dockerfiles on the official bases.

Python wheels come from a wheelhouse downloaded once per dependency set: the versions of
this checkout's venv (``pip freeze``), so the images hold what the tests ran. The builds see
it read-only, with pip pointed at it and at no index (``PIP_CONFIG_FILE``).

Every image is tagged ``localhost/<name>:<key>``, the key a hash of all that goes into it:
its Containerfile, its base's key, the files its COPYs take, the wheelhouse's key. A tag
that exists is not rebuilt; a warm run builds nothing. Images live in containers-storage
(podman and buildah see them); ``archive`` exports one as an OCI archive, cached by key too,
for containerd. Older tags of an image and older archives and wheelhouses are deleted.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tests.support.dockerfile import copy_sources, parse

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(
    os.environ.get("EMBEDDING_OPERATOR_CACHE", Path.home() / ".cache" / "embedding-operator")
)
IMAGES_DIR = ROOT / "hack" / "images"
REGISTRY = "localhost"
KEY_LENGTH = 16

# The rootfs: Debian bookworm's Python 3.11 with venv; wget and procps because KubeRay's Ray
# pod probes and scripts call wget, ps and grep, as the official Ray image allows.
SUITE = "bookworm"
ROOTFS_PACKAGES = (
    "python3",
    "python3-venv",
    "python-is-python3",
    "ca-certificates",
    "wget",
    "procps",
)
APT_SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))
# What the wheelhouse holds: both packages with every extra the images install, and the
# build backend pip needs for the local projects (builds run with no index).
WHEEL_REQUIREMENTS = ("./job_image[pipeline]", "./operator", "setuptools>=69")
WHEEL_INPUTS = ("job_image/pyproject.toml", "operator/pyproject.toml")
WHEELS_IN_BUILD = "/tmp/wheels"
TOOLS = {
    "buildah": "buildah",
    "podman": "podman",
    "skopeo": "skopeo",
    "mmdebstrap": "mmdebstrap",
    "runc": "runc",
}


class ImageBuildError(RuntimeError):
    """A build step failed; the message says which and how to fix it."""


@dataclass(frozen=True)
class Recipe:
    """One image: its Containerfile, build context and what it builds on."""

    name: str
    containerfile: str  # relative to ROOT
    context: str  # relative to ROOT; "" for the rootfs directory of the base
    base: str | None = None  # the recipe whose image is passed as base_arg
    base_arg: str | None = None
    wheels: bool = False


RECIPES: dict[str, Recipe] = {
    recipe.name: recipe
    for recipe in (
        Recipe("embedding-operator-local-python", "hack/images/python.Containerfile", ""),
        Recipe(
            "embedding-operator-local-ray",
            "hack/images/ray.Containerfile",
            "hack/images",
            base="embedding-operator-local-python",
            base_arg="PYTHON_IMAGE",
        ),
        Recipe(
            "embedding-operator",
            "operator/Dockerfile",
            ".",
            base="embedding-operator-local-python",
            base_arg="PYTHON_IMAGE",
            wheels=True,
        ),
        Recipe(
            "embedding-job",
            "job_image/Dockerfile",
            ".",
            base="embedding-operator-local-ray",
            base_arg="RAY_IMAGE",
            wheels=True,
        ),
    )
}
# What `make images` builds (the bases come with them) and the names tests ask for.
OPERATOR_IMAGE, JOB_IMAGE = "embedding-operator", "embedding-job"
PRODUCTS = (OPERATOR_IMAGE, JOB_IMAGE)


# --- pure: keys and tags --------------------------------------------------------------------


def digest(parts: Iterable[bytes | str]) -> str:
    """A hash of the parts in order, each length-prefixed so that boundaries count."""
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()[:KEY_LENGTH]


def tag(name: str, key: str) -> str:
    return f"{REGISTRY}/{name}:{key}"


def pip_conf() -> str:
    """pip's configuration in the build: the wheelhouse only, never an index."""
    return f"[global]\nno-index = true\nfind-links = {WHEELS_IN_BUILD}\n"


def rootfs_key(sources: bytes) -> str:
    return digest(["rootfs", SUITE, *ROOTFS_PACKAGES, sources])


def wheels_key(constraints: str, inputs: Iterable[bytes]) -> str:
    return digest(["wheels", *WHEEL_REQUIREMENTS, constraints, pip_conf(), *inputs])


# --- reading the checkout -------------------------------------------------------------------


def run(args: list[str], *, cwd: Path = ROOT, timeout: float = 3600) -> str:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise ImageBuildError(
            f"{' '.join(args[:4])} … failed ({result.returncode}):\n"
            f"{(result.stdout + result.stderr)[-4000:]}"
        )
    return result.stdout


def tracked_files(paths: Iterable[str]) -> list[Path]:
    """The files git sees (tracked or not ignored) under the given context paths (none for
    no paths: git would list the whole checkout)."""
    paths = list(paths)
    if not paths:
        return []
    out = run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *paths])
    return sorted({ROOT / name for name in out.split("\0") if name and (ROOT / name).is_file()})


def source_parts(recipe: Recipe) -> list[bytes]:
    """The Containerfile and every file its COPY/ADD instructions take from the context."""
    containerfile = ROOT / recipe.containerfile
    parts = [containerfile.read_bytes()]
    if recipe.context:
        context = ROOT / recipe.context
        rel = [str((context / src).relative_to(ROOT)) for src in copy_sources(parse(containerfile))]
        for path in tracked_files(rel):
            parts += [str(path.relative_to(ROOT)).encode(), path.read_bytes()]
    return parts


def apt_sources() -> bytes:
    files = [
        p for root in APT_SOURCES for p in ([root] if root.is_file() else sorted(root.glob("*")))
    ]
    return b"".join(p.read_bytes() for p in files if p.is_file())


#: The images' own packages (installed editable here): their dependencies are pinned, not them.
LOCAL_PROJECTS = ("embedding-job", "embedding-operator")
#: What the wheelhouse holds: the local projects with the extras the images install.
IMAGE_REQUIREMENTS = ("embedding-job[pipeline]", "embedding-operator", "setuptools")


def constraints() -> str:
    """The venv's versions of what the images install (the dependency closure of their
    requirements, not the whole venv: a dev tool added to the venv changes no image)."""
    return "".join(f"{name}=={version}\n" for name, version in closure(IMAGE_REQUIREMENTS))


def closure(requirements: Iterable[str]) -> list[tuple[str, str]]:
    """(name, installed version) of every distribution the requirements pull in, extras and
    environment markers evaluated as pip would, sorted; the local projects left out."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    seen: dict[str, str] = {}
    todo = [(Requirement(r), "") for r in requirements]
    done: set[tuple[str, frozenset[str]]] = set()
    while todo:
        req, extra = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(req.name)
        if (name, frozenset(req.extras)) in done:
            continue
        done.add((name, frozenset(req.extras)))
        dist = metadata.distribution(req.name)
        if name not in (canonicalize_name(p) for p in LOCAL_PROJECTS):
            seen[name] = dist.version
        for text in dist.requires or []:
            sub = Requirement(text)
            for wanted in ("", *req.extras):
                todo.append((sub, wanted))
    return sorted(seen.items())


# --- acting ---------------------------------------------------------------------------------


def log(message: str) -> None:
    print(f"[images {time.strftime('%H:%M:%S')}] {message}", flush=True)


def check_tools() -> None:
    missing = [pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None]
    if missing:
        raise ImageBuildError(
            f"missing {', '.join(missing)}: install the Debian packages "
            f"(apt-get install {' '.join(sorted(set(missing)))}); .ci/run does"
        )
    if os.geteuid() != 0:
        raise ImageBuildError("make images runs buildah as root (chroot isolation, no daemon)")


def replace_dir(build: Path, final: Path) -> None:
    """Move a finished build into place, dropping siblings that earlier keys left."""
    for old in final.parent.glob("*"):
        if old != build and old.name != final.name:
            shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()
    build.rename(final)


def ensure_rootfs() -> tuple[str, Path]:
    key = rootfs_key(apt_sources())
    final = CACHE / "rootfs" / key
    if not (final / "rootfs.tar").is_file():
        log(f"rootfs {SUITE} ({', '.join(ROOTFS_PACKAGES)}) with mmdebstrap")
        build = CACHE / "rootfs" / f".{key}.partial"
        shutil.rmtree(build, ignore_errors=True)
        build.mkdir(parents=True)
        run(
            [
                "mmdebstrap",
                "--variant=minbase",
                f"--include={','.join(ROOTFS_PACKAGES)}",
                "--quiet",
                SUITE,
                str(build / "rootfs.tar"),
            ]
        )
        replace_dir(build, final)
    return key, final


def ensure_wheels() -> tuple[str, Path]:
    pins = constraints()
    key = wheels_key(pins, [(ROOT / p).read_bytes() for p in WHEEL_INPUTS])
    final = CACHE / "wheels" / key
    if not (final / "pip.conf").is_file():
        log("wheelhouse: downloading the images' dependencies at the venv's versions")
        build = CACHE / "wheels" / f".{key}.partial"
        shutil.rmtree(build, ignore_errors=True)
        build.mkdir(parents=True)
        (build / "constraints.txt").write_text(pins)
        run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--dest",
                str(build),
                "--constraint",
                str(build / "constraints.txt"),
                *WHEEL_REQUIREMENTS,
            ]
        )
        (build / "pip.conf").write_text(pip_conf())
        replace_dir(build, final)
    return key, final


def image_exists(ref: str) -> bool:
    result = subprocess.run(["buildah", "inspect", "--type", "image", ref], capture_output=True)
    return result.returncode == 0


def drop_older_tags(name: str, keep: str) -> None:
    out = run(
        [
            "buildah",
            "images",
            "--format",
            "{{.Name}}:{{.Tag}}",
            "--filter",
            f"reference={REGISTRY}/{name}",
        ]
    )
    for ref in sorted(set(out.split())):
        if ref != keep and ref.startswith(f"{REGISTRY}/{name}:"):
            subprocess.run(["buildah", "rmi", ref], capture_output=True)


@dataclass(frozen=True)
class Built:
    name: str
    key: str
    ref: str


class Builder:
    """Builds recipes in dependency order, once per run, each only when its tag is missing."""

    def __init__(self) -> None:
        self.done: dict[str, Built] = {}
        self._rootfs: tuple[str, Path] | None = None
        self._wheels: tuple[str, Path] | None = None

    def rootfs(self) -> tuple[str, Path]:
        if self._rootfs is None:
            self._rootfs = ensure_rootfs()
        return self._rootfs

    def wheels(self) -> tuple[str, Path]:
        if self._wheels is None:
            self._wheels = ensure_wheels()
        return self._wheels

    def ensure(self, name: str) -> Built:
        if name in self.done:
            return self.done[name]
        recipe = RECIPES[name]
        parts = source_parts(recipe)
        args: dict[str, str] = {}
        volumes: list[str] = []
        if recipe.base is not None:
            assert recipe.base_arg is not None
            base = self.ensure(recipe.base)
            args[recipe.base_arg] = base.ref
            parts.append(base.key)
        if not recipe.context:
            rootfs_key_, rootfs_dir = self.rootfs()
            parts.append(rootfs_key_)
            context = rootfs_dir
            shutil.copyfile(ROOT / recipe.containerfile, rootfs_dir / "Containerfile")
            containerfile = rootfs_dir / "Containerfile"
        else:
            context, containerfile = ROOT / recipe.context, ROOT / recipe.containerfile
        if recipe.wheels:
            wheels_key_, wheels_dir = self.wheels()
            parts.append(wheels_key_)
            volumes.append(f"{wheels_dir}:{WHEELS_IN_BUILD}:ro")
            args["PIP_CONFIG_FILE"] = f"{WHEELS_IN_BUILD}/pip.conf"
            args["WHEELHOUSE_KEY"] = wheels_key_
        key = digest(parts)
        ref = tag(name, key)
        if image_exists(ref):
            log(f"{ref} (cached)")
        else:
            log(f"building {ref} from {recipe.containerfile}")
            started = time.monotonic()
            command = [
                "buildah",
                "bud",
                "--isolation",
                "chroot",
                "--layers",
                "--force-rm",
                "--quiet",
                "--file",
                str(containerfile),
                "--tag",
                ref,
            ]
            for arg, value in sorted(args.items()):
                command += ["--build-arg", f"{arg}={value}"]
            for volume in volumes:
                command += ["--volume", volume]
            run([*command, str(context)])
            log(f"built {ref} in {time.monotonic() - started:.0f}s")
        drop_older_tags(name, ref)
        self.done[name] = Built(name, key, ref)
        return self.done[name]


def ensure(*names: str) -> list[Built]:
    """The named images (all products by default), built where their tag is missing."""
    check_tools()
    builder = Builder()
    return [builder.ensure(name) for name in (names or PRODUCTS)]


def archive(name: str) -> Path:
    """The image as an OCI archive (what containerd imports), cached by the image's key."""
    (built,) = ensure(name)
    final = CACHE / "archives" / name / f"{built.key}.oci.tar"
    if not final.is_file():
        log(f"exporting {built.ref} to {final}")
        partial = final.with_suffix(".partial")
        final.parent.mkdir(parents=True, exist_ok=True)
        partial.unlink(missing_ok=True)
        run(
            [
                "skopeo",
                "copy",
                "--quiet",
                f"containers-storage:{built.ref}",
                f"oci-archive:{partial}:{built.ref}",
            ]
        )
        for old in final.parent.glob("*.oci.tar"):
            old.unlink()
        partial.rename(final)
    return final


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.image_build",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build the images (both products by default)")
    build.add_argument("names", nargs="*", metavar="NAME", help=f"of {', '.join(RECIPES)}")
    export = sub.add_parser("archive", help="export an image as an OCI archive; prints its path")
    export.add_argument("name", choices=list(RECIPES))
    args = parser.parse_args(argv)
    unknown = sorted(set(getattr(args, "names", [])) - set(RECIPES))
    if unknown:
        parser.error(f"unknown image {unknown}: choose from {', '.join(RECIPES)}")
    try:
        if args.command == "build":
            for built in ensure(*args.names):
                print(built.ref)
        else:
            print(archive(args.name))
    except ImageBuildError as err:
        print(f"make images: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
