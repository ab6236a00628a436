"""Images into the real node's containerd, with no registry: OCI image layouts streamed into
``ctr images import``.

* The pause image (every pod's sandbox) is made here from one static binary (hack/pause,
  built by hack/tools.sh): a one-layer OCI layout written byte for byte, so its digest only
  changes when the binary does.
* Our images are built by ``make images`` into containers-storage (image_build.py); skopeo
  copies one into an OCI layout directory with its layers left uncompressed (nothing to
  gzip, nothing for containerd to gunzip), which is streamed as a tar into ctr and deleted.

containerd keeps what it imported (its root outlives each run), so an image whose reference
containerd already has is not imported again; the reference's tag is the image's content key.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

LAYER = "application/vnd.oci.image.layer.v1.tar"
CONFIG = "application/vnd.oci.image.config.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"


def _blob(data: bytes, media_type: str) -> tuple[dict[str, Any], bytes]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    return {"mediaType": media_type, "digest": digest, "size": len(data)}, data


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _tar(files: Sequence[tuple[str, bytes, int]]) -> bytes:
    """A reproducible tar: fixed owner and time."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data, mode in files:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 0
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def single_binary_layout(ref: str, binary: bytes, user: str = "65535:65535") -> dict[str, bytes]:
    """The files of an OCI image layout (path -> bytes) holding one image: ``/pause`` as its
    only file and entrypoint, for linux/amd64, named ``ref``."""
    layer_desc, layer = _blob(_tar([("pause", binary, 0o755)]), LAYER)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": ["/pause"], "User": user},
        "rootfs": {"type": "layers", "diff_ids": [layer_desc["digest"]]},
    }
    config_desc, config_bytes = _blob(_canonical(config), CONFIG)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": config_desc,
        "layers": [layer_desc],
    }
    manifest_desc, manifest_bytes = _blob(_canonical(manifest), MANIFEST)
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                **manifest_desc,
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {REF_NAME: ref, CONTAINERD_NAME: ref},
            }
        ],
    }
    files = {"oci-layout": _canonical({"imageLayoutVersion": "1.0.0"})}
    files["index.json"] = _canonical(index)
    for desc, data in ((layer_desc, layer), (config_desc, config_bytes)):
        files[f"blobs/sha256/{desc['digest'].split(':', 1)[1]}"] = data
    files[f"blobs/sha256/{manifest_desc['digest'].split(':', 1)[1]}"] = manifest_bytes
    return files


class Containerd:
    """ctr bound to one containerd socket, in the CRI's namespace."""

    def __init__(self, ctr: str, socket: Path, namespace: str):
        self.argv = [ctr, "--address", str(socket), "--namespace", namespace]

    def run(self, *args: str, stdin: Any = None, timeout: float = 120) -> str:
        result = subprocess.run(
            [*self.argv, *args],
            stdin=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"ctr {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def images(self) -> set[str]:
        return set(self.run("images", "list", "--quiet").split())

    def import_layout(self, directory: Path, timeout: float = 1800) -> None:
        """Stream an OCI layout directory into ``ctr images import`` as a tar, unpacked for
        the CRI's snapshotter (the unpacked layers' blobs are then let go)."""
        argv = [*self.argv, "images", "import", "--snapshotter", "overlayfs", "--local"]
        # Unpacked into a snapshot, the layers themselves are not needed twice.
        argv += ["--discard-unpacked-layers", "-"]
        with tempfile.TemporaryFile() as errors:
            with subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errors
            ) as ctr:
                assert ctr.stdin is not None
                try:
                    with tarfile.open(fileobj=ctr.stdin, mode="w|") as tar:
                        for path in sorted(directory.rglob("*")):
                            arcname = str(path.relative_to(directory))
                            tar.add(path, arcname=arcname, recursive=False)
                except BrokenPipeError:
                    pass  # ctr gave up; its exit status and stderr say why
                finally:
                    ctr.stdin.close()
                try:
                    ctr.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    ctr.kill()  # else leaving the with block would wait for it without end
                    raise
            if ctr.returncode != 0:
                errors.seek(0)
                text = errors.read().decode(errors="replace")
                raise RuntimeError(f"ctr images import failed: {text}")

    def ensure_pause(self, ref: str, binary: Path) -> None:
        if ref in self.images():
            return
        with tempfile.TemporaryDirectory(prefix="embop-pause-") as tmp:
            for name, data in single_binary_layout(ref, binary.read_bytes()).items():
                path = Path(tmp) / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
            self.import_layout(Path(tmp))

    def ensure_from_storage(self, ref: str, scratch: Path) -> bool:
        """Import ``ref`` from containers-storage (built by make images) unless containerd
        has it, and drop the repository's other tags (older keys); returns whether it
        imported."""
        repository = ref.rsplit(":", 1)[0]
        older = [i for i in self.images() if i.rsplit(":", 1)[0] == repository and i != ref]
        if older:
            # --sync: collect their content and snapshots now. Without it, containerd's
            # collector waits for enough other changes, and every version stayed (21 GB).
            self.run("images", "remove", "--sync", *older)
        if ref in self.images():
            return False
        scratch.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="embop-oci-", dir=scratch) as tmp:
            layout = Path(tmp) / "layout"
            copy = ["skopeo", "copy", "--quiet", "--dest-oci-accept-uncompressed-layers"]
            copy += [f"containers-storage:{ref}", f"oci:{layout}:{ref}"]
            subprocess.run(copy, check=True, capture_output=True, timeout=1800)
            _name_for_containerd(layout / "index.json", ref)
            self.import_layout(layout)
            shutil.rmtree(layout, ignore_errors=True)
        return True


def _name_for_containerd(index_path: Path, ref: str) -> None:
    """skopeo names the manifest with the tag only ("<key>"); containerd takes the whole
    reference from its own annotation."""
    index = json.loads(index_path.read_text())
    for manifest in index["manifests"]:
        manifest.setdefault("annotations", {})[CONTAINERD_NAME] = ref
    index_path.write_text(json.dumps(index))
