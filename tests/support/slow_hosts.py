"""Bad web hosts on loopback: one that accepts and never answers, one that resets every
connection. Each counts the connections it accepted."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest


@dataclass
class BadHost:
    """A listening socket on 127.0.0.1 misbehaving in one way (``hang`` or ``reset``)."""

    mode: str
    sock: socket.socket = field(default_factory=socket.socket)
    connections: int = 0
    _held: list[socket.socket] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(256)
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            if self.mode == "hang":
                self._held.append(conn)  # read nothing, answer nothing, keep it open
            else:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()

    def close(self) -> None:
        self.sock.close()
        for conn in self._held:
            conn.close()


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
