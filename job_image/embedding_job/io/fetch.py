"""Remote images, read by the embedding worker itself on its data path's threads.

http(s) URLs go through the job's own HTTP client (urllib3: one GET per try, typed errors, a
deadline checked while the body arrives); ``s3://``, ``gs://`` and the other object stores
through Daft's IO, as one ranged GET per try. What one row may cost is bounded by
``input.download``: ``retries + 1`` tries of ``timeoutSeconds`` each, within the row's deadline.
What one host may cost is bounded by a circuit breaker (:class:`HostBreaker`): a host that failed
``retries + 1`` times in a row is not dialled again by this worker for a while.
"""

from __future__ import annotations

import os
import re
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    LocationValueError,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ProxyError,
    ReadTimeoutError,
    ResponseError,
    SSLError,
)

from embedding_job.api import RETRY_PAUSE_SECONDS, DownloadSpec
from embedding_job.errors import RowError
from embedding_job.io.io_config import HTTP_BEARER_TOKEN_ENV, io_config

#: A byte range past any image's end: Daft then reads an object with one ranged GET (its plain
#: open asks the store for the size first).
_WHOLE_OBJECT = 1 << 40
_CHUNK = 256 * 1024
#: How long a breaker's cooldown may grow to.
MAX_COOLDOWN = 3600.0
#: Daft IO errors that say the store did not answer, or refused.
_UNREACHABLE = re.compile(
    r"timed? ?out|timeout|connect|reset|refused|socket|dns|resolve|broken pipe", re.IGNORECASE
)
_NOT_FOUND = re.compile(r"not found|nosuchkey|nosuchbucket|does not exist|\b404\b", re.IGNORECASE)
_DENIED = re.compile(r"access ?denied|forbidden|unauthori[sz]ed|permission|\b40[13]\b", re.I)
#: ... and that retrying cannot help (an unknown scheme, a malformed key).
_PERMANENT = re.compile(r"permanent|unsupported|not supported|unrecognized|invalid", re.I)


class HostDown(Exception):
    """The host did not answer (timeout, refused, reset, TLS, DNS): counts against the host."""


class Transient(Exception):
    """The host answered, but not with the image (HTTP 5xx, 429, throttling): worth a retry."""


def host_of(url: str) -> str:
    """What a breaker keys on: ``scheme://host:port`` for the web, ``scheme://bucket`` for
    object stores."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


@dataclass
class _HostState:
    failures: int = 0
    reason: str = ""
    open_until: float | None = None
    cooldown: float = 0.0
    probing: bool = False


class HostBreaker:
    """Which hosts a worker stops dialling, and until when.

    A host that failed ``threshold`` times in a row (no answer between) is skipped for
    ``cooldown`` seconds; then one request tries it. If that fails too, the host is skipped
    twice as long (at most :data:`MAX_COOLDOWN`); any answer closes the breaker.
    """

    def __init__(
        self, threshold: int, cooldown: float, clock: Callable[[], float] = time.monotonic
    ):
        self.threshold = max(1, threshold)
        self.cooldown = cooldown
        self.clock = clock
        self._hosts: dict[str, _HostState] = {}
        self._lock = threading.Lock()

    def admit(self, host: str) -> str | None:
        """None when ``host`` may be dialled now; otherwise why it is skipped."""
        with self._lock:
            state = self._hosts.get(host)
            if state is None or state.open_until is None:
                return None
            if self.clock() >= state.open_until and not state.probing:
                state.probing = True  # this caller tries the host again; the others wait
                return None
            return (
                f"host {host} skipped: it failed {state.failures} times in a row "
                f"(last: {state.reason})"
            )

    def failed(self, host: str, reason: str) -> None:
        """A request to ``host`` got no answer."""
        with self._lock:
            state = self._hosts.setdefault(host, _HostState())
            state.failures += 1
            state.reason = reason
            if state.probing:
                state.cooldown = min(2 * state.cooldown, MAX_COOLDOWN)
            elif state.open_until is None and state.failures >= self.threshold:
                state.cooldown = self.cooldown
            else:
                return
            state.probing = False
            state.open_until = self.clock() + state.cooldown

    def answered(self, host: str) -> None:
        """``host`` answered (with the image or not): it is reachable."""
        with self._lock:
            self._hosts.pop(host, None)


@dataclass(frozen=True)
class FetchSettings:
    """What a worker's Fetcher needs: plain values, so that it pickles to the workers with the
    credentials read where the job started (as Daft's IOConfig does)."""

    download: DownloadSpec
    #: Daft's, for object stores, with one try per read (the Fetcher retries).
    io_config: Any = None
    #: never in a repr (the settings travel in the UDF's arguments, which logs may show)
    bearer_token: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, download: DownloadSpec, env: dict[str, str] | None = None) -> FetchSettings:
        """Settings for ``download`` with the credentials in ``env`` (default: os.environ)."""
        env = dict(os.environ) if env is None else env
        once = io_config(download.model_copy(update={"retries": 0}), env)
        return cls(download, once, env.get(HTTP_BEARER_TOKEN_ENV) or None)


class Fetcher:
    """Reads remote images under one worker's download policy; thread-safe."""

    def __init__(self, settings: FetchSettings):
        spec = settings.download
        self.spec = spec
        self.io_config = settings.io_config
        self.breaker = HostBreaker(spec.retries + 1, spec.host_cooldown_seconds)
        headers = {"User-Agent": "embedding-job"}
        if settings.bearer_token:
            headers["Authorization"] = f"Bearer {settings.bearer_token}"
        pools: dict[str, Any] = {"num_pools": 100, "maxsize": spec.max_connections}
        self._direct = urllib3.PoolManager(headers=headers, **pools)
        # As curl and Daft's own client: HTTP(S)_PROXY unless NO_PROXY names the host.
        self._via_proxy = {
            scheme: urllib3.ProxyManager(url, headers=headers, **pools)
            for scheme, url in urllib.request.getproxies_environment().items()
            if scheme in ("http", "https") and url
        }
        # Redirects are followed; every other retry is ours (counted, bounded by the deadline).
        self._redirects = urllib3.Retry(
            total=None, connect=0, read=0, redirect=5, status=0, other=0, raise_on_status=False
        )

    def fetch(self, url: str) -> bytes:
        """The bytes at ``url``; RowError with a short reason (naming the host when it did not
        answer) after at most ``retries + 1`` tries, within the row's deadline."""
        try:
            host = host_of(url)
        except ValueError as exc:  # e.g. a malformed IPv6 address
            raise RowError(f"download failed: bad URL: {exc}") from None
        clock = self.breaker.clock
        deadline = clock() + self.spec.deadline_seconds
        problem = "no try left before the deadline"
        tries = 0
        for attempt in range(self.spec.retries + 1):
            if attempt:
                pause = RETRY_PAUSE_SECONDS * 2 ** (attempt - 1)
                if clock() + pause >= deadline:
                    break
                time.sleep(pause)
            timeout = min(self.spec.timeout_seconds, deadline - clock())
            if timeout <= 0:
                break
            # Once admitted, a try always reports to the breaker (it may be the host's probe).
            skipped = self.breaker.admit(host)
            if skipped is not None:
                raise RowError(f"download failed: {skipped}")
            tries += 1
            try:
                data = self._read(url, timeout, deadline)
            except HostDown as exc:
                self.breaker.failed(host, str(exc))
                problem = str(exc)
            except Transient as exc:
                self.breaker.answered(host)
                problem = str(exc)
            except RowError:
                self.breaker.answered(host)
                raise
            except Exception as exc:  # noqa: BLE001 - unforeseen: this row's error, not the host's
                self.breaker.answered(host)
                raise RowError(f"download failed: {type(exc).__name__}: {exc}") from None
            else:
                self.breaker.answered(host)
                return data
        plural = "try" if tries == 1 else "tries"
        raise RowError(f"download failed: {problem} (host {host}, {tries} {plural})")

    def _read(self, url: str, timeout: float, deadline: float) -> bytes:
        scheme = urlsplit(url).scheme.lower()
        data = (
            self._read_http(url, timeout, deadline)
            if scheme in ("http", "https")
            else self._read_store(url)
        )
        if not data:
            raise RowError("download failed: empty response")
        return data

    def _pool(self, url: str) -> Any:
        parts = urlsplit(url)
        proxy = self._via_proxy.get(parts.scheme.lower())
        if proxy is None or urllib.request.proxy_bypass(parts.hostname or ""):
            return self._direct
        return proxy

    def _read_http(self, url: str, timeout: float, deadline: float) -> bytes:
        try:
            response = self._pool(url).request(
                "GET",
                url,
                timeout=urllib3.Timeout(connect=timeout, read=timeout),
                retries=self._redirects,
                preload_content=False,
            )
        except MaxRetryError as exc:
            raise _http_problem(exc.reason or exc, self.spec.timeout_seconds) from None
        except HTTPError as exc:
            raise _http_problem(exc, self.spec.timeout_seconds) from None
        try:
            status = response.status
            if status == 429 or status >= 500:
                raise Transient(f"HTTP {status} {response.reason or ''}".rstrip())
            if not 200 <= status < 300:
                raise RowError(f"download failed: HTTP {status} {response.reason or ''}".rstrip())
            chunks = []
            # Each read takes what has arrived, waiting at most ``timeout`` for it; the
            # deadline stops a host that trickles.
            while chunk := response.read1(_CHUNK):
                chunks.append(chunk)
                if self.breaker.clock() > deadline:
                    raise HostDown(f"too slow: not sent within {self.spec.deadline_seconds:g} s")
            data = b"".join(chunks)
        except HTTPError as exc:
            response.close()
            raise _http_problem(exc, self.spec.timeout_seconds) from None
        except BaseException:
            response.close()  # the rest of the body is not wanted: do not reuse the connection
            raise
        response.release_conn()
        return data

    def _read_store(self, url: str) -> bytes:
        import daft

        try:
            with daft.File(url, self.io_config, position=0, size=_WHOLE_OBJECT).open() as handle:
                data: bytes = handle.read(-1)
        except Exception as exc:  # noqa: BLE001 - Daft's IO errors are classified by message
            reason = short_error(exc)
            if _NOT_FOUND.search(reason):
                raise RowError(f"download failed: not found: {reason}") from None
            if _DENIED.search(reason):
                raise RowError(f"download failed: access denied: {reason}") from None
            if _UNREACHABLE.search(reason):
                raise HostDown(reason) from None
            if _PERMANENT.search(reason):
                raise RowError(f"download failed: {reason}") from None
            raise Transient(reason) from None
        return data


def _http_problem(exc: BaseException, timeout: float) -> Exception:
    """A urllib3 failure as HostDown (no answer), Transient or RowError; ``timeout`` is the
    configured one (a last try may have had less, what was left of the row's deadline)."""
    if isinstance(exc, LocationValueError):
        return RowError(f"download failed: bad URL: {exc}")
    if isinstance(exc, NameResolutionError):
        return HostDown("cannot resolve the host name")
    if isinstance(exc, NewConnectionError):
        # "HTTPConnection(...): Failed to establish a new connection: [Errno 111] Connection
        # refused": the part after the colon says it.
        detail = re.sub(r"^.*new connection:\s*(\[Errno -?\d+\]\s*)?", "", str(exc))
        return HostDown(f"cannot connect: {detail}")
    if isinstance(exc, ConnectTimeoutError):
        return HostDown(f"no connection within {timeout:g} s")
    if isinstance(exc, ReadTimeoutError):
        return HostDown(f"no answer within {timeout:g} s")
    if isinstance(exc, ProtocolError):
        cause = exc.args[-1] if exc.args else exc
        detail = cause.strerror if isinstance(cause, OSError) and cause.strerror else str(cause)
        return HostDown(f"connection lost: {detail}")
    if isinstance(exc, (SSLError, ProxyError)):
        return HostDown(short_error(exc))
    if isinstance(exc, ResponseError):
        return RowError(f"download failed: {short_error(exc)}")
    return Transient(short_error(exc))


@dataclass(frozen=True)
class RemoteImage:
    """An image at a remote URL, read by ``fetcher`` on the data path's threads."""

    url: str
    fetcher: Fetcher

    def read(self) -> bytes:
        return self.fetcher.fetch(self.url)


def short_error(exc: BaseException, limit: int = 300) -> str:
    """First line and innermost cause of an exception message, bounded in length, without
    Daft's internal error kind (``DaftError::ComputeError``), which tells a user nothing."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    if not lines:
        return type(exc).__name__
    first = re.sub(r"^DaftError::\w+\s+", "", lines[0]) or lines[0]
    causes = [ln for ln in lines[1:] if re.match(r"^\d+:", ln)]
    text = first
    if causes:
        last = re.sub(r"^\d+:\s*", "", causes[-1])
        if last not in first:
            text = f"{first} ({last})"
    return text if len(text) <= limit else text[: limit - 1] + "…"
