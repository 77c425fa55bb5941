"""Serve over HTTP: bind, build what is served, print a banner, run N worker processes.

What is served is a `Target`: one app (`wasmlet up`) or many (`wasmlet host`). Each worker is
an asyncio server (uvicorn, httptools parser) whose requests run Wasm on a thread pool
(wasmtime releases the GIL). With `workers > 1` the parent binds the socket once and spawned
workers share it, each building the target itself (a target is picklable data), so all cores
are used. SIGTERM/SIGINT stop accepting and drain the requests in flight.
"""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

import uvicorn

from ...errors import WasmletError
from ...locked import LockedApp
from ...logs import configure_logging
from ...running import AppOptions, RunningApp, build_app
from .app import route_infos
from .protocol import TrailerProtocol
from .router import RoutePattern

log = logging.getLogger("wasmlet.server")

DEFAULT_LISTEN = "127.0.0.1:3000"
_FAST_FAIL = 2.0  # seconds


@dataclass
class ServeOptions:
    listen: str = DEFAULT_LISTEN
    workers: int = 1
    log_level: str = "info"
    app: AppOptions = field(default_factory=AppOptions)


def parse_listen(addr: str) -> tuple[str, int]:
    """`127.0.0.1:3000`, `[::1]:3000`, `0.0.0.0:80` → (host, port)."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535 or not host:
        raise WasmletError(
            f"invalid listen address {addr!r}: expected HOST:PORT, e.g. {DEFAULT_LISTEN}"
        )
    return host.strip("[]"), int(port)


def bind(addr: str) -> socket.socket:
    host, port = parse_listen(addr)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise WasmletError(f"cannot listen on {addr}: {e.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def base_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def print_routes(app: LockedApp, url: str, out: TextIO) -> None:
    print(f"Serving {url}", file=out)
    print("Available Routes:", file=out)
    for info in route_infos(app):
        if info.private:
            continue
        pattern = RoutePattern.parse(info.route)
        label = info.component or info.trigger_id
        if pattern.wildcard:
            print(f"  {label}: {url}{pattern.prefix} (wildcard)", file=out)
        else:
            print(f"  {label}: {url}{pattern.prefix if pattern.segments else ''}", file=out)
    out.flush()


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown, so the process dies of
    the signal; wasmlet has drained its requests by then and exits with status 0 instead."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            self._captured_signals.clear()


class Served(Protocol):
    """What one server process runs: an ASGI app with a lifetime."""

    def asgi(self) -> Any:
        """The ASGI application."""

    def grace(self) -> float | None:
        """How long shutdown waits for requests in flight (None: as long as they take)."""

    def start(self) -> None:
        """Requests are about to run (start clocks and background work)."""

    def close(self) -> None:
        """Stop, once no request runs any more."""

    def banner(self, url: str, out: TextIO) -> None:
        """What to print once the server is listening on `url`."""


class Target(Protocol):
    """What to serve, as picklable data: each worker process builds its own `Served`."""

    def build(self, origin: str) -> Served:
        """Build it; `origin` is the server's own base URL. Raises WasmletError."""


@dataclass(frozen=True)
class AppTarget:
    """One app (`wasmlet up`)."""

    app_json: str
    opts: AppOptions

    def build(self, origin: str) -> Served:
        return _ServedApp(build_app(LockedApp.from_json(self.app_json), self.opts, origin))


@dataclass
class _ServedApp:
    running: RunningApp

    def asgi(self) -> Any:
        return self.running.trigger

    def grace(self) -> float | None:
        timeout = self.running.runtime.limits.request_timeout
        return timeout + 5 if timeout > 0 else None

    def start(self) -> None:
        self.running.start()

    def close(self) -> None:
        self.running.close()

    def banner(self, url: str, out: TextIO) -> None:
        print_routes(self.running.app, url, out)


def uvicorn_server(served: Served) -> _Server:
    """The uvicorn server for `served`, configured as every wasmlet server runs it. The
    containerd shim runs it on a thread of the task's process and stops it itself
    (`should_exit`), so it asks for the server rather than calling `serve`."""
    grace = served.grace()
    config = uvicorn.Config(
        served.asgi(),
        lifespan="on",  # a multi-app host starts its watcher at startup
        http=TrailerProtocol,  # uvicorn's httptools protocol plus trailer fields
        log_config=None,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=math.ceil(grace) if grace is not None else None,
        server_header=False,
        date_header=True,
        proxy_headers=False,  # wasmlet sees the client as connected; no X-Forwarded-* rewriting
    )
    return _Server(config)


def _run_uvicorn(served: Served, sock: socket.socket) -> None:
    served.start()
    server = uvicorn_server(served)
    try:
        server.run(sockets=[sock])
    finally:
        served.close()


def _worker_main(target: Target, log_level: str, sock: socket.socket) -> None:
    configure_logging(log_level)
    _run_uvicorn(target.build(base_url(sock)), sock)


def serve(app: LockedApp, opts: ServeOptions, out: TextIO = sys.stdout) -> None:
    """Serve one app until SIGTERM/SIGINT. Raises WasmletError for startup problems."""
    serve_target(AppTarget(app.to_json(), opts.app), opts, out)


def serve_target(target: Target, opts: ServeOptions, out: TextIO = sys.stdout) -> None:
    """Serve `target` until SIGTERM/SIGINT. Raises WasmletError for startup problems."""
    sock = bind(opts.listen)
    try:
        # Built in this process first, also with workers: errors surface before anything
        # is served, and the compile cache is warm for the workers.
        served = target.build(base_url(sock))
    except BaseException:
        sock.close()
        raise
    served.banner(base_url(sock), out)
    if opts.workers <= 1:
        _run_uvicorn(served, sock)
        return
    served.close()
    _supervise(target, opts, sock)


def _supervise(target: Target, opts: ServeOptions, sock: socket.socket) -> None:
    """Run `opts.workers` spawned workers on the shared socket; restart one that dies.

    A worker that dies within `_FAST_FAIL` seconds of starting stops the server: it would
    only die again."""
    ctx = multiprocessing.get_context("spawn")
    stopping = False

    def start(i: int) -> tuple[multiprocessing.process.BaseProcess, float]:
        p = ctx.Process(
            target=_worker_main, args=(target, opts.log_level, sock), name=f"wasmlet-worker-{i}"
        )
        p.start()
        return p, time.monotonic()

    workers = [start(i) for i in range(opts.workers)]
    log.info("started %d workers", len(workers))

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for p, _ in workers:
            if p.pid is not None and p.is_alive():
                os.kill(p.pid, signum)

    old = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        while any(p.is_alive() for p, _ in workers):
            multiprocessing.connection.wait([p.sentinel for p, _ in workers], timeout=1.0)
            for i, (p, started) in enumerate(workers):
                if p.is_alive() or stopping:
                    continue
                if time.monotonic() - started < _FAST_FAIL:
                    forward(signal.SIGTERM, None)
                    raise WasmletError(f"worker {i} failed at startup (exit status {p.exitcode})")
                log.error("worker %d died (exit status %s); restarting it", i, p.exitcode)
                workers[i] = start(i)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        sock.close()
