"""A TCP connection's wasi:io streams, and the socket they share with their `tcp-socket`.

Reads take what the kernel has (at most 64 KiB each). Writes go to the kernel at once; what it
does not take yet waits in `Conn.pending` and is sent before the next `check-write`, `flush`
or `shutdown(send)`.
"""

from __future__ import annotations

import contextlib
import select
import socket

from .._calls import HostTrap
from ..io import (
    InputStream,
    IoError,
    OutputStream,
    Pollable,
    StreamClosed,
    StreamFailed,
    wait_any,
)
from .reactor import SocketPollable, forget
from .types import SocketError, error_code

READ_CHUNK = 64 * 1024


class Conn:
    """A socket shared by a `tcp-socket` and its streams; closed when the last one goes."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.pending = bytearray()  # written by the guest, not yet taken by the kernel
        self.read_shut = False
        self.write_shut = False
        self.write_error: IoError | None = None

    def close(self) -> None:
        if self.fd >= 0:
            forget(self.fd)
            self.fd = -1
            self.sock.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter shutdown
            self.close()

    def drain(self, block: bool) -> None:
        """Send what is pending; with `block`, wait (bounded by the deadline) until it is."""
        while self.pending:
            try:
                sent = self.sock.send(self.pending)
            except (BlockingIOError, InterruptedError):
                if not block:
                    return
                wait_any([SocketPollable(self, select.POLLOUT)])
                continue
            except OSError as e:
                self.pending.clear()
                self.write_error = IoError(f"TCP send failed: {e}", SocketError(error_code(e)))
                raise StreamFailed(self.write_error) from e
            del self.pending[:sent]


class TcpInputStream(InputStream):
    def __init__(self, conn: Conn) -> None:
        self.conn = conn
        self.eof = False

    def read(self, n: int) -> bytes:
        conn = self.conn
        if self.eof or conn.read_shut or conn.fd < 0:
            raise StreamClosed
        if n == 0:
            return b""
        try:
            data = conn.sock.recv(min(n, READ_CHUNK))
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError as e:
            self.eof = True
            raise StreamFailed(
                IoError(f"TCP receive failed: {e}", SocketError(error_code(e)))
            ) from e
        if not data:
            self.eof = True
            raise StreamClosed
        return data

    def blocking_read(self, n: int) -> bytes:
        while True:
            data = self.read(n)
            if data or n == 0:
                return data
            wait_any([self.pollable()])

    def pollable(self) -> Pollable:
        return SocketPollable(self.conn, select.POLLIN)


class TcpOutputStream(OutputStream):
    """Writes go to the kernel at once; what it does not take yet waits in `conn.pending`.

    `check-write` waits for the pending bytes to go before granting more (wasmlet's
    `output-stream.subscribe` is always ready, so a guest could not wait for it)."""

    budget = 64 * 1024

    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    def _usable(self) -> Conn:
        conn = self.conn
        if conn.write_error is not None:
            raise StreamClosed  # the failure was reported once
        if conn.write_shut or conn.fd < 0:
            raise StreamClosed
        return conn

    def check_write(self) -> int:
        conn = self._usable()
        conn.drain(block=True)
        return self.budget

    def write(self, data: bytes) -> None:
        conn = self._usable()
        conn.pending += data
        conn.drain(block=False)

    def flush(self) -> None:
        self._usable().drain(block=True)

    def close(self) -> None:
        conn = self.conn
        if conn.pending and conn.fd >= 0 and conn.write_error is None:
            with contextlib.suppress(StreamFailed, HostTrap):
                conn.drain(block=True)

    def pollable(self) -> Pollable:
        return SocketPollable(self.conn, select.POLLOUT)
