"""Small file-system operations on local paths and object stores (through pyarrow.fs)."""

from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass
from typing import Any

import pyarrow.fs as pafs

from embedding_job.io.cells import display_path


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path) for a local path or an s3:// / gs:// URI.

    The path has no scheme (``bucket/key`` for object stores): turn it back into something
    Daft or a later call can open with :func:`as_uri`.
    """
    if "://" not in uri:
        return pafs.LocalFileSystem(), uri
    return pafs.FileSystem.from_uri(uri)


def is_remote(uri: str) -> bool:
    """True for object-store and other URIs that are not local paths or file:// URLs."""
    return "://" in uri and not uri.startswith("file://")


def as_uri(base: str, path: str) -> str:
    """``path`` (as pyarrow.fs or Daft's writers return it, without a scheme) as a URI on the
    same store as ``base``: ``s3://bucket/key`` for an s3:// base, the local path otherwise."""
    if "://" in path or not is_remote(base):
        return path
    return f"{base.split('://', 1)[0]}://{path.lstrip('/')}"


def relative(base: str, uri: str) -> str:
    """``uri`` relative to the directory ``base`` (both URIs or paths on the same store)."""
    prefix = base.removeprefix("file://").rstrip("/") + "/"
    return uri.removeprefix("file://").removeprefix(prefix)


def list_files(uri: str) -> list[str]:
    """The files under ``uri`` (recursively), as URIs on its store; empty when it does not
    exist."""
    fs, path = filesystem(uri)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        return []
    if info.type == pafs.FileType.File:
        return [as_uri(uri, path)]
    entries = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    return [as_uri(uri, e.path) for e in entries if e.type == pafs.FileType.File]


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
    if is_remote(uri):
        # A glob is checked by the prefix before its first wildcard: the listing matches it.
        fixed = min((i for i, ch in enumerate(uri) if ch in "*?["), default=len(uri))
        fs, path = filesystem(uri[:fixed].rsplit("/", 1)[0] if fixed < len(uri) else uri)
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


@dataclass(frozen=True)
class ListedFile:
    """One entry of a local listing: its exact name (bytes) and why it cannot be an image, if
    the listing already knows (a symlink loop, a directory it may not read)."""

    raw: bytes
    problem: str | None = None

    @property
    def path(self) -> str:
        return display_path(self.raw)


def walk_local(root: str, extensions: tuple[str, ...]) -> list[ListedFile]:
    """Every entry under the local directory ``root`` that could be an image, recursively.

    Files whose name ends in one of ``extensions`` (case-insensitive) are listed whether or not
    they can be read: a dangling symlink is listed (reading it fails later, as its row's
    error). Symlinked directories are followed, except one that leads back to a directory
    being walked (a loop), and a directory that cannot be listed: each of those is listed as
    one entry with its problem, wherever its name ends. A directory reached by several names
    (symlinks) is listed under each: every entry is a row, as a symlinked file is. Names are
    bytes: nothing is lost to decoding.
    """
    found: list[ListedFile] = []
    lowered = tuple(ext.encode() for ext in extensions)

    def walk(directory: bytes, ancestors: frozenset[tuple[int, int]]) -> None:
        try:
            with os.scandir(directory) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as exc:
            found.append(ListedFile(directory, f"cannot list directory: {exc.strerror}"))
            return
        for entry in entries:
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            if not is_dir:
                if entry.name.lower().endswith(lowered):
                    found.append(ListedFile(entry.path))
                continue
            try:
                info = os.stat(entry.path)
            except OSError as exc:
                found.append(ListedFile(entry.path, f"cannot read directory: {exc.strerror}"))
                continue
            key = (info.st_dev, info.st_ino)
            if key in ancestors:
                found.append(ListedFile(entry.path, "symlink loop: leads back to a parent"))
                continue
            walk(entry.path, ancestors | {key})

    start = os.path.abspath(os.fsencode(root.removeprefix("file://")))
    info = os.stat(start)
    walk(start.rstrip(b"/") or b"/", frozenset({(info.st_dev, info.st_ino)}))
    return found
