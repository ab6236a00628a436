"""Turn one input cell (URL/path, base64 text, raw bytes) into image bytes, or a row error."""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from embedding_job.api import SrcType
from embedding_job.errors import RowError

_DATA_URL = re.compile(r"^data:[\w/+.-]*;base64,", re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")


def decode_base64(text: Any) -> bytes:
    """Strict base64 (standard or URL-safe alphabet, optional ``data:`` prefix)."""
    if isinstance(text, bytes):
        text = text.decode("ascii", errors="replace")
    if not isinstance(text, str):
        raise RowError(f"invalid base64: expected text, got {type(text).__name__}")
    body = _WHITESPACE.sub("", _DATA_URL.sub("", text.strip(), count=1))
    if not body:
        raise RowError("empty image data")
    if "-" in body or "_" in body:
        body = body.replace("-", "+").replace("_", "/")
    body += "=" * (-len(body) % 4)
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RowError(f"invalid base64: {exc}") from None


def resolve_inline(value: Any, src_type: SrcType) -> bytes:
    """Bytes of an inline (base64 or binary) cell."""
    if value is None:
        raise RowError("missing image (null)")
    if src_type is SrcType.IMAGE_BASE64:
        return decode_base64(value)
    if isinstance(value, str):
        raise RowError("expected raw bytes for image_binary, got text (is srcType right?)")
    data = bytes(value)
    if not data:
        raise RowError("empty image data")
    return data


@dataclass(frozen=True)
class LocalFile:
    """An image on a local or mounted filesystem, read by the embedding worker itself.

    Its bytes then never cross Daft's process boundary (measured: about 1 ms per 300 KB image,
    during which the model waits), and decode threads, where there are any, read ahead.
    """

    path: str

    def read(self) -> bytes:
        try:
            with open(self.path, "rb") as handle:
                data = handle.read()
        except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
            reason = getattr(exc, "strerror", None) or f"{type(exc).__name__}: {exc}"
            raise RowError(f"read failed: {reason}: {display_path(self.path)}") from None
        if not data:
            raise RowError(f"empty file: {display_path(self.path)}")
        return data


def display_path(path: str | bytes) -> str:
    """A file name as valid UTF-8 text: bytes that are not UTF-8 (which a file system allows,
    and Python holds as surrogate escapes) appear as ``\\xNN``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


#: Image URLs that name a local file: absolute paths and ``file:///`` URLs. As in Daft's own
#: IO, a ``file://`` URL is a path as written (no percent-decoding).
LOCAL_PREFIXES = ("/", "file:///")


def local_file(url: Any) -> LocalFile | None:
    """The local file an image URL names, or None for remote (and relative) URLs."""
    if not isinstance(url, str) or not url.startswith(LOCAL_PREFIXES):
        return None
    return LocalFile(url.removeprefix("file://"))


#: Reasons that say a host did not answer at all (as opposed to answering "not found").
_UNREACHABLE = re.compile(r"timed out|timeout|connect|reset|refused|dns|resolve", re.IGNORECASE)


class DeadHosts:
    """Hosts (``scheme://netloc``) that did not answer a worker's diagnosis read, with why.

    A dead or hanging host costs one diagnosis timeout per worker, not one per row: its other
    failed rows get the first reason without another read.
    """

    def __init__(self) -> None:
        self._reasons: dict[str, str] = {}

    @staticmethod
    def host(url: str) -> str | None:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None

    def reason(self, url: str) -> str | None:
        host = self.host(url)
        return self._reasons.get(host) if host else None

    def record(self, url: str, reason: str) -> None:
        host = self.host(url)
        if host and _UNREACHABLE.search(reason):
            self._reasons.setdefault(host, reason)


def fetch_error(url: Any, io_config: Any, dead_hosts: DeadHosts | None = None) -> str:
    """Why fetching ``url`` fails: one more read through Daft's IO, reduced to a short reason.

    Called only for rows whose batched download came back empty, so its cost is per bad row,
    except on a host already in ``dead_hosts``, which is not read again.
    """
    if url is None:
        return "missing image (null)"
    if not isinstance(url, str) or not url.strip():
        return "missing image (empty URL)"
    earlier = dead_hosts.reason(url) if dead_hosts is not None else None
    if earlier is not None:
        return f"download failed: {earlier} (host {DeadHosts.host(url)} failed earlier)"
    import daft

    try:
        with daft.open_file(url, "rb", io_config=io_config) as handle:
            data = handle.read()
    except Exception as exc:  # noqa: BLE001 - any IO failure is this row's error
        reason = short_error(exc)
        if dead_hosts is not None:
            dead_hosts.record(url, reason)
        return "download failed: " + reason
    return "download failed: empty response" if not data else "download failed (transient)"


def short_error(exc: BaseException, limit: int = 300) -> str:
    """First line and innermost cause of an exception message, bounded in length."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    if not lines:
        return type(exc).__name__
    first = lines[0]
    causes = [ln for ln in lines[1:] if re.match(r"^\d+:", ln)]
    text = first
    if causes:
        last = re.sub(r"^\d+:\s*", "", causes[-1])
        if last not in first:
            text = f"{first} ({last})"
    return text if len(text) <= limit else text[: limit - 1] + "…"
