"""Serve over HTTP: bind, build what is served, print a banner, run N worker processes.

What is served is a `Target`: one app (`wasmlet up`) or many (`wasmlet host`). Each worker is
an asyncio server (uvicorn, httptools parser) whose requests run Wasm on a thread pool
(wasmtime releases the GIL). With `workers > 1` the parent binds the socket once and spawned
workers share it, each building the target itself (a target is picklable data), so all cores
are used. SIGTERM/SIGINT stop accepting and drain the requests in flight, for at most the
shutdown timeout; a second signal stops waiting. Workers exit when the supervisor dies.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import os
import resource
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, TextIO, runtime_checkable

import uvicorn

from ... import forkserver, gcpause
from ...errors import WasmletError
from ...locked import LockedApp
from ...logs import configure_logging
from ...observe import metrics, status, tracing
from ...running import AppOptions, RunningApp, build_app
from .. import TriggerTasks, with_triggers
from .app import route_infos
from .limits import DEFAULT_SHUTDOWN_TIMEOUT, LimitedProtocol, ServerLimits
from .router import RoutePattern

log = logging.getLogger("wasmlet.server")

DEFAULT_LISTEN = "127.0.0.1:3000"
_FAST_FAIL = 2.0  # seconds
_CLOSE_GRACE = 5.0  # seconds to close down after the drain, before the process just exits
_FORCED_GRACE = 2.0  # the same after a second signal
_MIN_HEAD = 1024  # bytes


@dataclass
class ServeOptions:
    listen: str = DEFAULT_LISTEN
    workers: int = 1
    log_level: str = "info"
    log_format: str = "text"  # or "json" (logs.py)
    app: AppOptions = field(default_factory=AppOptions)
    limits: ServerLimits = field(default_factory=ServerLimits)


def limits_from_args(args: argparse.Namespace) -> ServerLimits:
    """The `ServerLimits` of a command's `serving_options` flags."""
    if args.max_header_size < _MIN_HEAD:  # no real request head fits
        raise WasmletError(f"--max-header-size: at least 1Ki, got {args.max_header_size}")
    return ServerLimits(
        header_timeout=args.header_timeout,
        keep_alive_timeout=args.keep_alive_timeout,
        max_connections=args.max_connections,
        max_header_bytes=args.max_header_size,
        max_headers=args.max_headers,
        shutdown_timeout=args.shutdown_timeout,
    )


def raise_open_file_limit() -> None:
    """Raise the soft limit on open files to the hard one, as nginx and most servers do:
    each connection is a file descriptor, and the default soft limit is often 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20  # Linux caps it at nr_open (1048576 by default) anyway
    if soft != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


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
    the signal; wasmlet has drained its requests by then and exits with status 0 instead.

    A second SIGTERM or SIGINT stops waiting for requests in flight (uvicorn: only a second
    SIGINT). With `exit_bound` set, the process exits (status 1) at most that many seconds
    after the first signal, or `_FORCED_GRACE` after a second, even if a guest is still
    running: one that no deadline stops holds its thread, and closing the pool waits for it.
    """

    exit_bound: float | None = None
    _exit_timer: threading.Timer | None = None

    def handle_exit(self, sig: int, frame: Any) -> None:
        if self.should_exit and sig in (signal.SIGINT, signal.SIGTERM):
            if not self.force_exit:
                log.warning("second signal: not waiting for the requests in flight")
            self.force_exit = True
            if self.exit_bound is not None:
                self._exit_within(_FORCED_GRACE)
        elif not self.should_exit:
            self._exit_within(self.exit_bound)
        super().handle_exit(sig, frame)

    def _exit_within(self, seconds: float | None) -> None:
        if seconds is None:
            return
        if self._exit_timer is not None:
            self._exit_timer.cancel()
        self._exit_timer = threading.Timer(seconds, _exit_now, args=(seconds,))
        self._exit_timer.daemon = True
        self._exit_timer.start()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            self._captured_signals.clear()


def _exit_now(seconds: float) -> None:
    log.error("still shutting down after %g s (a guest still running?): exiting now", seconds)
    os._exit(1)  # not sys.exit: interpreter shutdown would wait for the guest's thread


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


@runtime_checkable
class PerWorker(Protocol):
    """A target that differs between workers (who runs the message triggers)."""

    def for_worker(self, index: int) -> Target:
        """What worker `index` of several builds."""


@dataclass(frozen=True)
class AppTarget:
    """One app (`wasmlet up`); `messages`: whether this process runs its message triggers."""

    app_json: str
    opts: AppOptions
    messages: bool = True

    def build(self, origin: str) -> Served:
        running = build_app(LockedApp.from_json(self.app_json), self.opts, origin)
        return _ServedApp(running, self.messages)

    def for_worker(self, index: int) -> AppTarget:
        """The message triggers run in worker 0 only: each subscriber gets every message
        (Redis pub/sub, MQTT) and a message must be handled once."""
        return replace(self, messages=index == 0)


def _worker_target(target: Target, index: int) -> Target:
    return target.for_worker(index) if isinstance(target, PerWorker) else target


@dataclass
class _ServedApp:
    running: RunningApp
    messages: bool = True

    def asgi(self) -> Any:
        return with_triggers(self.running.trigger, self.running.triggers if self.messages else [])

    def grace(self) -> float | None:
        timeout = self.running.runtime.limits.request_timeout
        return timeout + 5 if timeout > 0 else None

    def start(self) -> None:
        self.running.start()
        # Listed on the status page by the processes that serve it (not by a supervisor,
        # which builds it only to check it).
        status.register(self.running.app.name, status.describe_app(self.running.app), state="ready")

    def close(self) -> None:
        status.unregister(self.running.app.name)
        self.running.close()

    def banner(self, url: str, out: TextIO) -> None:
        print_routes(self.running.app, url, out)
        print_triggers(self.running, out)


def drain_timeout(served: Served, limits: ServerLimits) -> float:
    """How long shutdown waits for requests in flight."""
    if limits.shutdown_timeout is not None:
        return limits.shutdown_timeout
    grace = served.grace()
    return grace if grace is not None else DEFAULT_SHUTDOWN_TIMEOUT


def uvicorn_server(served: Served, limits: ServerLimits | None = None) -> _Server:
    """The uvicorn server for `served`, configured as every wasmlet server runs it. The
    containerd shim runs it on a thread of the task's process and stops it itself
    (`should_exit`), so it asks for the server rather than calling `serve`."""
    limits = limits or ServerLimits()
    config = uvicorn.Config(
        served.asgi(),
        lifespan="on",  # a multi-app host starts its watcher at startup
        # No WebSockets, as in Spin: an upgrade request is a plain request to the guest (and
        # the websockets library is never imported: ~12 ms of every start).
        ws="none",
        # uvicorn's httptools protocol plus trailer fields, under the connection limits
        http=LimitedProtocol.with_limits(limits),
        log_config=None,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=math.ceil(drain_timeout(served, limits)),
        server_header=False,
        date_header=True,
        proxy_headers=False,  # wasmlet sees the client as connected; no X-Forwarded-* rewriting
    )
    return _Server(config)


def _run_uvicorn(served: Served, sock: socket.socket, limits: ServerLimits) -> None:
    served.start()
    gcpause.settle()
    server = uvicorn_server(served, limits)
    server.exit_bound = drain_timeout(served, limits) + _CLOSE_GRACE
    try:
        server.run(sockets=[sock])
    finally:
        served.close()
        tracing.shutdown()  # export the spans still queued


def _wait_gone(pids: set[int], limits: ServerLimits) -> None:
    """Wait until processes that are not our children have exited (or the drain's bound)."""

    def alive(pid: int) -> bool:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        return state not in ("Z", "X")  # a zombie has exited

    bound = limits.shutdown_timeout
    drain = DEFAULT_SHUTDOWN_TIMEOUT if bound is None else bound
    deadline = time.monotonic() + drain + _CLOSE_GRACE
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)


def _worker_main(
    target: Target,
    log: tuple[str, str],
    limits: ServerLimits,
    metrics_dir: str | None,
    sock: socket.socket,
    lifeline: socket.socket,
) -> None:
    _exit_with_supervisor(lifeline)
    configure_logging(*log)  # (level, format)
    if metrics_dir is not None:  # before the build: --metrics-listen (observe/)
        metrics.enable(metrics_dir)
    tracing.enable_from_environment()  # this worker's own exporter (OTEL_*, observe/)
    _run_uvicorn(target.build(base_url(sock)), sock, limits)


def _exit_with_supervisor(lifeline: socket.socket) -> None:
    """SIGTERM this worker (it drains and exits) when the supervisor dies, even of SIGKILL:
    an orphan would keep serving the port, and a restarted server could not bind it.
    `lifeline` is a socket whose other end only the supervisor holds: it reads end-of-file
    once the supervisor is gone. (Not a parent-death signal: the parent is the fork server,
    which lives as long as any worker does.)"""

    def watch() -> None:
        with contextlib.suppress(OSError):
            while lifeline.recv(1):
                pass
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="wasmlet-supervisor", daemon=True).start()


def serve(app: LockedApp, opts: ServeOptions, out: TextIO = sys.stdout) -> None:
    """Serve one app until SIGTERM/SIGINT. Raises WasmletError for startup problems."""
    if not app.triggers_of("http") and any(t.trigger_type != "http" for t in app.triggers):
        _run_triggers(app, opts, out)  # no HTTP trigger: no listener, as in Spin
        return
    serve_target(AppTarget(app.to_json(), opts.app), opts, out)


def print_triggers(running: RunningApp, out: TextIO) -> None:
    for trigger in running.triggers:
        for line in trigger.describe():
            print(line, file=out)
    out.flush()


def _run_triggers(app: LockedApp, opts: ServeOptions, out: TextIO) -> None:
    """Run an app's message triggers until SIGTERM/SIGINT, with no HTTP listener."""
    if opts.workers > 1:  # a message is handled once, so by one process
        log.info("no HTTP trigger: one process handles the messages (--workers ignored)")
    tracing.enable(tracing.check_environment())  # before the build (OTEL_*, observe/)
    running = build_app(app, opts.app)
    running.start()
    status.register(app.name, status.describe_app(app), state="ready")
    print_triggers(running, out)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        tasks = TriggerTasks(running.triggers)
        tasks.start()
        await stop.wait()
        log.info("stopping: waiting for the messages being handled")
        await tasks.stop()

    gcpause.settle()
    try:
        asyncio.run(main())
    finally:
        running.close()
        tracing.shutdown()


def serve_target(target: Target, opts: ServeOptions, out: TextIO = sys.stdout) -> None:
    """Serve `target` until SIGTERM/SIGINT. Raises WasmletError for startup problems."""
    raise_open_file_limit()  # before anything else opens files; workers inherit it
    # OTEL_* checked first; switched on here only if this process serves: with workers,
    # each worker makes its own exporter (`_worker_main`).
    telemetry = tracing.check_environment()
    if opts.workers <= 1:
        tracing.enable(telemetry)
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
        _run_uvicorn(served, sock, opts.limits)
        return
    served.close()
    _supervise(target, opts, sock)


def _supervise(target: Target, opts: ServeOptions, sock: socket.socket) -> None:
    """Run `opts.workers` workers, forked by the fork server, on the shared socket; restart
    one that dies.

    A worker that dies within `_FAST_FAIL` seconds of starting stops the server: it would
    only die again."""
    forks = forkserver.fork_server()
    stopping = False
    # Ours stays here (never passed on); theirs is passed to each worker.
    ours, theirs = socket.socketpair()
    gcpause.settle()

    def start(i: int) -> tuple[int, float]:
        args = (
            _worker_target(target, i),
            (opts.log_level, opts.log_format),
            opts.limits,
            metrics.multiprocess_dir(),
        )
        return forks.start(_worker_main, args, [sock, theirs]), time.monotonic()

    workers = [start(i) for i in range(opts.workers)]
    log.info("started %d workers", len(workers))

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid, _ in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    old = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        running = {pid for pid, _ in workers}
        while running:
            try:
                exited = forks.wait(timeout=1.0)
            except OSError as e:  # killed (SIGKILL): no worker could be restarted
                was_stopping = stopping
                forward(signal.SIGTERM, None)
                _wait_gone(running, opts.limits)  # they drain (we cannot reap them)
                if was_stopping:
                    return
                raise WasmletError(f"the workers' fork server failed: {e}") from e
            for pid, status in exited:
                running.discard(pid)
                i = next((i for i, (p, _) in enumerate(workers) if p == pid), None)
                if i is None or stopping:
                    continue
                if time.monotonic() - workers[i][1] < _FAST_FAIL:
                    forward(signal.SIGTERM, None)
                    raise WasmletError(f"worker {i} failed at startup (exit status {status})")
                log.error("worker %d died (exit status %s); restarting it", i, status)
                metrics.worker_exited(pid)
                workers[i] = start(i)
                running.add(workers[i][0])
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        sock.close()
        ours.close()
        theirs.close()
        forks.close()
