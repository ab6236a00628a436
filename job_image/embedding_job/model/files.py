"""Find a model on disk (or fetch it when asked) without importing torch."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from embedding_job.api import ModelSpec
from embedding_job.errors import ModelNotFoundError

log = logging.getLogger(__name__)

_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
_REQUIRED = ("config.json", "preprocessor_config.json")
_HUB_FILES = ["*.json", "*.safetensors"]


def model_dir(spec: ModelSpec) -> Path:
    """Where the model must be: ``<path>/<name>``, as in the original component."""
    return Path(spec.path) / spec.name


def missing_files(directory: Path) -> list[str]:
    """Files a loadable model directory lacks (empty when complete)."""
    missing = [name for name in _REQUIRED if not (directory / name).is_file()]
    if not any((directory / name).is_file() for name in _WEIGHTS):
        missing.append(" or ".join(_WEIGHTS))
    return missing


def locate_model(spec: ModelSpec) -> Path:
    """Return the model directory, downloading it first when ``spec.download`` allows.

    Raises ModelNotFoundError saying where it looked and how to provide the model.
    """
    directory = model_dir(spec)
    missing = missing_files(directory)
    if not missing:
        return directory
    hub_error = None
    if spec.download:
        try:
            _download(spec.name, directory)
        except Exception as exc:  # noqa: BLE001 - any hub failure ends in the same advice
            hub_error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        else:
            missing = missing_files(directory)
            if not missing:
                return directory
            hub_error = f"the download lacks {', '.join(missing)}"
    raise ModelNotFoundError(_not_found_message(spec, directory, missing, hub_error))


def _download(name: str, directory: Path) -> None:
    from huggingface_hub import snapshot_download

    log.info("downloading model %s into %s", name, directory)
    directory.mkdir(parents=True, exist_ok=True)
    snapshot_download(
        repo_id=name,
        local_dir=str(directory),
        allow_patterns=_HUB_FILES,
        token=os.environ.get("HF_TOKEN") or None,
    )


def _not_found_message(
    spec: ModelSpec, directory: Path, missing: list[str], hub_error: str | None
) -> str:
    if not directory.exists():
        looked = f"{directory} does not exist"
    else:
        looked = f"{directory} lacks {', '.join(missing)}"
    lines = [f"model {spec.name!r} not found: {looked} (model.path={spec.path})."]
    if hub_error:
        lines.append(f"Downloading it from the Hugging Face hub failed: {hub_error}")
    lines += [
        "Provide it in one of these ways:",
        f"  - put a Hugging Face checkpoint (config.json, preprocessor_config.json, "
        f"model.safetensors) in {directory}, e.g. "
        f"`hf download {spec.name} --local-dir {directory}` on a machine "
        "with hub access, or mount a volume holding it at model.path;",
        "  - or set model.download=true (and HF_TOKEN for gated models) where the hub is "
        "reachable.",
    ]
    return "\n".join(lines)
