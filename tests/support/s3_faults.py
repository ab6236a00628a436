"""Faults in front of the loopback S3 server: a reverse proxy on 127.0.0.1 that passes every
request to moto (the real S3 API answers) except the ones a test chose to fail first, with S3's
own 503 SlowDown or a reset connection. What moto cannot do by itself: fail some requests."""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import re
import socket
import struct
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from tests.support.s3_server import S3Server

SLOWDOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
#: Hop-by-hop headers the proxy sets itself.
_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}


@dataclasses.dataclass(frozen=True)
class Fault:
    """The first ``times`` requests of ``method`` to each path matching ``path`` fail as
    ``kind`` ("slowdown": 503 SlowDown; "reset": the connection is reset, nothing answered);
    ``times=None``: every one."""

    method: str
    path: str
    kind: str
    times: int | None = 1

    def applies(self, method: str, path: str, seen_before: int) -> bool:
        return (
            method == self.method
            and re.search(self.path, path) is not None
            and (self.times is None or seen_before < self.times)
        )


def decide(faults: Sequence[Fault], method: str, path: str, seen_before: int) -> str | None:
    """The fault for a request that is the ``seen_before``+1-th of its method and path."""
    return next((f.kind for f in faults if f.applies(method, path, seen_before)), None)


class FaultyS3:
    """The proxy; ``server`` is an S3Server whose env points jobs at it. ``requests`` counts
    every request by (method, path), ``failed`` the ones it failed."""

    def __init__(self, upstream: S3Server, faults: Sequence[Fault]):
        self.upstream = urlsplit(upstream.endpoint)
        self.faults = list(faults)
        self.requests: Counter[tuple[str, str]] = Counter()
        self.failed: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._http.daemon_threads = True
        self._http.proxy = self  # type: ignore[attr-defined]
        self.server = S3Server(endpoint=f"http://127.0.0.1:{self._http.server_address[1]}")
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)
        self._thread.start()

    def admit(self, method: str, path: str) -> str | None:
        with self._lock:
            kind = decide(self.faults, method, path, self.requests[(method, path)])
            self.requests[(method, path)] += 1
            if kind:
                self.failed[(method, path)] += 1
            return kind

    def forward(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=60)
        try:
            conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
            for name, value in headers:
                if name.lower() not in _HOP:
                    conn.putheader(name, value)
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            answer = conn.getresponse()
            return answer.status, answer.getheaders(), answer.read()
        finally:
            conn.close()

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(timeout=10)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base's name)
        pass

    def _relay(self) -> None:
        proxy: FaultyS3 = self.server.proxy  # type: ignore[attr-defined]
        body = self._body()
        kind = proxy.admit(self.command, urlsplit(self.path).path)
        if kind == "reset":  # RST, no answer: what a dropped connection looks like
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return
        if kind == "slowdown":
            status, headers, payload = 503, [("Content-Type", "application/xml")], SLOWDOWN
        else:
            status, headers, payload = proxy.forward(
                self.command, self.path, list(self.headers.items()), body
            )
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in _HOP:
                self.send_header(name, value)
        length = str(len(payload))
        if self.command == "HEAD":  # no body: the object's own length, as S3 answers it
            length = next((v for n, v in headers if n.lower() == "content-length"), length)
        self.send_header("Content-Length", length)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while size := int(self.rfile.readline().split(b";")[0].strip(), 16):
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                pass
            return b"".join(parts)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _relay


@contextlib.contextmanager
def faulty_s3(upstream: S3Server, faults: Sequence[Fault]) -> Iterator[FaultyS3]:
    proxy = FaultyS3(upstream, faults)
    try:
        yield proxy
    finally:
        proxy.close()
