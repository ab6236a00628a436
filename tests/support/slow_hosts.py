"""Bad web hosts on loopback, each misbehaving in one way, counting what reached it.

- ``hang``: accepts, never reads nor answers;
- ``reset``: accepts and resets the connection at once;
- ``slow``: answers with the image after ``delay`` seconds;
- ``drip``: sends the headers, then one byte of the body every ``delay`` seconds;
- ``status``: answers every request with HTTP ``status`` (a server error);
- ``refuse``: nothing listens on its port (the port was bound once, then closed).
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest

MODES = ("hang", "reset", "slow", "drip", "status", "refuse")


@dataclass
class BadHost:
    """A host on 127.0.0.1 misbehaving as ``mode`` says."""

    mode: str
    delay: float = 0.2
    body: bytes = b"\xff\xd8 not really a jpeg"
    status: int = 503
    sock: socket.socket = field(default_factory=socket.socket)
    connections: int = 0
    requests: int = 0
    _held: list[socket.socket] = field(default_factory=list)
    _closed: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode {self.mode!r}: one of {MODES}")
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        if self.mode == "refuse":
            self.sock.close()
            return
        self.sock.listen(256)
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            if self.mode == "hang":
                self._held.append(conn)  # read nothing, answer nothing, keep it open
            elif self.mode == "reset":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()
            else:
                threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            reader = conn.makefile("rb")
            while self._read_request(reader):
                self.requests += 1
                if self.mode == "status":
                    conn.sendall(
                        f"HTTP/1.1 {self.status} Busy\r\nContent-Length: 0\r\n\r\n".encode()
                    )
                    continue
                head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(self.body)}\r\n\r\n".encode()
                if self.mode == "slow":
                    self._closed.wait(self.delay)
                    conn.sendall(head + self.body)
                    continue
                conn.sendall(head)  # drip
                for byte in self.body:
                    if self._closed.wait(self.delay):
                        return
                    conn.sendall(bytes([byte]))

    @staticmethod
    def _read_request(reader: object) -> bool:
        lines = 0
        while True:
            try:
                line = reader.readline()  # type: ignore[attr-defined]
            except OSError:
                return False
            if not line:
                return False
            lines += 1
            if line in (b"\r\n", b"\n"):
                return lines > 1

    def close(self) -> None:
        self._closed.set()
        self.sock.close()
        for conn in self._held:
            conn.close()


@contextmanager
def bad_host(mode: str, **fields: object) -> Iterator[BadHost]:
    """A BadHost for the duration of the block."""
    host = BadHost(mode, **fields)  # type: ignore[arg-type]
    try:
        yield host
    finally:
        host.close()


@pytest.fixture
def hanging_host() -> Iterator[BadHost]:
    host = BadHost("hang")
    yield host
    host.close()


@pytest.fixture
def resetting_host() -> Iterator[BadHost]:
    host = BadHost("reset")
    yield host
    host.close()
