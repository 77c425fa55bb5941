"""`wasmlet up` of an app with no HTTP trigger: no "Serving" line and no port to wait for,
so the tests wait for the broker to see the subscription instead."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis

from .env import IN_CI


def redis_client(db: int = 0, timeout: float = 5) -> redis.Redis:
    """A client of the machine's Redis (127.0.0.1:6379): the test is skipped when it is not
    running, and fails under CI=true."""
    client = redis.Redis(host="127.0.0.1", port=6379, db=db, socket_timeout=timeout)
    try:
        client.ping()
    except redis.RedisError as e:
        client.close()
        if IN_CI:
            pytest.fail(f"Redis is not running on 127.0.0.1:6379 ({e}); required under CI=true")
        pytest.skip(f"Redis is not running on 127.0.0.1:6379 ({e})")
    return client


class Replies:
    """Subscribed to a reply channel before anything is published."""

    def __init__(self, client: redis.Redis, channel: str) -> None:
        self.pubsub = client.pubsub()
        self.pubsub.subscribe(channel)
        assert self.pubsub.get_message(timeout=5)["type"] == "subscribe"  # type: ignore[index]

    def next(self, timeout: float = 30) -> bytes:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self.pubsub.get_message(timeout=1)
            if message and message["type"] == "message":
                return bytes(message["data"])
        raise AssertionError("no reply")

    def close(self) -> None:
        self.pubsub.close()


class Up:
    """`wasmlet up` of an app with no HTTP trigger (so no "Serving" line to wait for)."""

    def __init__(
        self, app: Path, cache: Path, env: dict[str, str] | None = None, args: tuple[str, ...] = ()
    ) -> None:
        cmd = [sys.executable, "-m", "wasmlet.cli", "up", "-f", str(app), "--cache-dir", str(cache)]
        cmd += args
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        self.lines: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def logged(self, text: str, timeout: float = 10) -> bool:
        deadline = time.monotonic() + timeout
        while text not in self.log:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=20)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


class TcpProxy:
    """A loopback TCP proxy to `port`: `drop()` cuts every connection through it, as a
    broker restart would, while the proxy keeps accepting new ones."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            with self.lock:
                self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def drop(self) -> None:
        with self.lock:
            conns, self.conns = self.conns, []
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
                s.close()

    def close(self) -> None:
        self.sock.close()
        self.drop()
