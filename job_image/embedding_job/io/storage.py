"""Small file-system operations on local paths and object stores (through pyarrow.fs)."""

from __future__ import annotations

import glob
import json
import os
from typing import Any

import pyarrow.fs as pafs


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path) for a local path or an s3:// / gs:// URI."""
    if "://" not in uri:
        return pafs.LocalFileSystem(), uri
    return pafs.FileSystem.from_uri(uri)


def list_files(uri: str) -> list[str]:
    """Paths of the files under ``uri`` (recursively); empty when it does not exist."""
    fs, path = filesystem(uri)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        return []
    if info.type == pafs.FileType.File:
        return [path]
    entries = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    return [e.path for e in entries if e.type == pafs.FileType.File]


def write_json(uri: str, name: str, payload: dict[str, Any]) -> str:
    """Write ``payload`` as ``<uri>/<name>``; returns the written path."""
    fs, path = filesystem(uri)
    fs.create_dir(path, recursive=True)
    target = f"{path.rstrip('/')}/{name}"
    with fs.open_output_stream(target) as out:
        out.write(json.dumps(payload, indent=2, sort_keys=True).encode() + b"\n")
    return target


def read_json(uri: str, name: str) -> dict[str, Any] | None:
    """``<uri>/<name>`` parsed, or None when absent or not JSON."""
    fs, path = filesystem(uri)
    target = f"{path.rstrip('/')}/{name}"
    if fs.get_file_info(target).type != pafs.FileType.File:
        return None
    with fs.open_input_stream(target) as handle:
        try:
            data = json.loads(handle.read())
        except ValueError:
            return None
    return data if isinstance(data, dict) else None


def delete_path(path: str) -> None:
    """Remove one file given by its full path or URI."""
    fs, local = filesystem(path)
    fs.delete_file(local)


def delete_file(uri: str, name: str) -> None:
    """Remove ``<uri>/<name>`` if present."""
    fs, path = filesystem(uri)
    target = f"{path.rstrip('/')}/{name}"
    if fs.get_file_info(target).type == pafs.FileType.File:
        fs.delete_file(target)


def exists(uri: str) -> bool:
    """True when ``uri`` names an existing file or directory (or object-store prefix)."""
    fs, path = filesystem(uri)
    return bool(fs.get_file_info(path).type != pafs.FileType.NotFound)


def is_file(uri: str) -> bool:
    """True when ``uri`` names a single file."""
    fs, path = filesystem(uri)
    return bool(fs.get_file_info(path).type == pafs.FileType.File)


def has_files(uri: str, extensions: tuple[str, ...] | None = None) -> bool:
    """Whether ``uri`` (a file, a directory or a local glob) holds at least one matching file.

    Local inputs are walked until the first match. Object-store prefixes are only checked for
    existence: listing millions of keys up front would cost more than the job's own listing.
    """
    if "://" in uri and not uri.startswith("file://"):
        fs, path = filesystem(uri)
        return bool(fs.get_file_info(path).type != pafs.FileType.NotFound)
    local = uri.removeprefix("file://")
    if any(ch in local for ch in "*?["):
        return next(glob.iglob(local, recursive=True), None) is not None
    if os.path.isfile(local):
        return True
    for _, _, files in os.walk(local):
        for name in files:
            if extensions is None or name.lower().endswith(extensions):
                return True
    return False
