"""A Wasm task: the process that serves one container's app (`run_forked`).

Forked by the node's template when the shim asks at Create (with the HTTP stack and wasmtime
already imported, so starting is building, not importing), or, with no template, started as
`python -m wasmlet.shim.runner CONFIG` (`main`). Either way:

1. `enter`: the task's cgroup, its network namespace (or a new one) and a private mount
   namespace where the spec's bind mounts are mounted into the container's root filesystem;
2. with `WASMLET_METRICS_LISTEN` in the container's environment, serve Prometheus metrics
   there (`serve_metrics`: bound in the task's network namespace, switched on before the
   app is built); `load` the app, then `build` it with the container's environment and the root
   filesystem's `/runtime-config.toml`: variables resolved, components mapped from the
   node's precompiled artifacts (the engine made here, after the fork), the listening socket
   bound if the app has an HTTP trigger (so a bad address or a port in use is a startup
   error, reported like the others; an app with none binds nothing, as in Spin); report
   ready (or the error, also printed on the task's stderr) on the status pipe;
3. wait for Start, then serve with uvicorn (`TaskServer`), or run only the message triggers
   of an app without HTTP (`TriggerTask`), until SIGTERM, which drains the requests and
   messages in flight and exits 0; the exit status goes on the status pipe too.

An app with message triggers (Redis, MQTT, cron) says so when it reports ready, and once Started
reports `{"subscribed": true}` when every trigger is subscribed: the shim's Start waits for
it, so the container becomes running (and a pod without a readiness probe ready) only then.
Not subscribed within `WASMLET_SUBSCRIBE_TIMEOUT` seconds (default 60, below the kubelet's
2-minute CRI timeout), the task prints why and exits 1, and Kubernetes restarts it with its
back-off, as Spin, which exits when it cannot subscribe.

An idle task costs no CPU: the engine's epoch (the request deadline's clock) is advanced by
the guests' pool only while a guest runs on it (`TickingPool`), not by a ticker that wakes
100 times a second forever, and uvicorn's main loop wakes once a second (its Date header)
instead of ten times. Measured here, those wake-ups were 9 ms of CPU per second per idle
task: a node's worth of cores for a few hundred idle apps.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ..engine import EPOCH_TICK_SECONDS, EngineSettings, Limits, WasmEngine
from ..errors import WasmletError
from ..gate import RunGate
from ..guestlimits import parse_size
from ..locked import LockedApp
from ..logs import configure_logging
from ..observe import status, tracing
from ..observe.endpoint import MetricsEndpoint
from ..running import AppOptions, RunningApp, Shared, build_app
from ..runtime_config import load_runtime_config
from ..trigger import TriggerTasks, with_triggers
from ..trigger.http.server import base_url, bind, print_routes, uvicorn_server
from . import linux
from .appload import load as load_app
from .runnerconfig import (
    GO_FD,
    METRICS_ENV,
    RUNTIME_CONFIG,
    STATUS_FD,
    SUBSCRIBE_TIMEOUT,
    SUBSCRIBE_TIMEOUT_ENV,
    Bind,
    RunnerConfig,
)

log = logging.getLogger("wasmlet.shim.task")

_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_SKIP_DESTINATIONS = ("/proc", "/sys", "/dev")


def run_forked(data: dict[str, Any], go: int, status: int) -> int:
    """The task's life, from the fork (or `main`) to its exit status."""
    config = RunnerConfig.from_dict(data)
    try:
        enter(config)
        os.environ.clear()  # the container's environment is the app's (and httpx's)
        os.environ.update(config.env)
        # wasmtime's WASI runs on a tokio runtime made at the first request, with a thread
        # per core by default; a task's guests block on it one at a time
        os.environ.setdefault("TOKIO_WORKER_THREADS", "1")
        serve_metrics(config.env)
        # OTEL_* from the container's environment (the operator sets them from the
        # executor's `otel`): this task's own exporter, made after the fork; bad settings
        # are a startup error
        tracing.enable_from_environment()
        served, sock = build(config, load(config))
        server: TaskServer | TriggerTask = (
            TaskServer(served, sock, sys.stdout, _watcher(served, status))
            if sock is not None
            else TriggerTask(served, sys.stdout, status)
        )
    except Exception as e:  # reported on the task's stderr; exit 1 once started
        message = str(e) if str(e) else type(e).__name__
        print(f"Error: {message}", file=sys.stderr, flush=True)
        _report(status, {"ok": False, "error": message})
        code = 1 if _wait_for_start(go) else 0
        _report(status, {"exit": code})
        return code
    ready: dict[str, Any] = {"ok": True}
    if served.running.triggers:  # Start waits until they are subscribed
        ready["subscribe"] = served.subscribe_timeout
    _report(status, ready)
    if not _wait_for_start(go):  # deleted before Start
        served.close()
        if sock is not None:
            sock.close()
        _report(status, {"exit": 0})
        return 0
    code = server.run()
    tracing.shutdown()  # export the spans still queued
    _report(status, {"exit": code})
    return code


def main(argv: list[str] | None = None) -> int:
    """A runner started as a program (no template): CONFIG, GO_FD and STATUS_FD."""
    args = sys.argv[1:] if argv is None else argv
    return run_forked(json.loads(Path(args[0]).read_text()), GO_FD, STATUS_FD)


def serve_metrics(env: dict[str, str]) -> MetricsEndpoint | None:
    """`WASMLET_METRICS_LISTEN` from the container's environment: serve /metrics there, on a
    thread, until the task exits. Bound in the task's network namespace (the pod's), before
    the app is built (what is built earlier has no metrics); a bad address or a port in use
    is a startup error naming the variable."""
    addr = env.get(METRICS_ENV)
    if not addr:
        return None
    endpoint = MetricsEndpoint(addr, name=METRICS_ENV)
    endpoint.start()
    print(f"Metrics: {endpoint.url}", flush=True)
    return endpoint


def _report(fd: int, value: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):
        os.write(fd, (json.dumps(value) + "\n").encode())


def _wait_for_start(fd: int) -> bool:
    try:
        return os.read(fd, 1) == b"g"
    except OSError:
        return False


def enter(config: RunnerConfig) -> None:
    """Cgroup, network namespace and mount namespace of the task (see the module's doc)."""
    for procs in config.cgroup_procs:
        with contextlib.suppress(OSError):
            Path(procs).write_text(str(os.getpid()))
    if config.netns:
        linux.setns(config.netns, linux.CLONE_NEWNET)
    elif config.new_netns:
        linux.unshare(linux.CLONE_NEWNET)
        loopback_up()
    linux.unshare(linux.CLONE_NEWNS | linux.CLONE_FS)
    linux.mount("none", "/", "", linux.MS_REC | linux.MS_PRIVATE)
    rootfs = Path(config.rootfs)
    for bind_mount in config.binds:
        bind_into(rootfs, bind_mount)


def loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sH14s", b"lo", 0, b"")
        flags = struct.unpack("16sH14s", fcntl.ioctl(s, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack("16sH14s", b"lo", flags | _IFF_UP, b""))


def bind_into(rootfs: Path, bind_mount: Bind) -> None:
    if bind_mount.destination.startswith(_SKIP_DESTINATIONS) or not rootfs.is_dir():
        return
    target = rootfs / bind_mount.destination.lstrip("/")
    try:
        if os.path.isdir(bind_mount.source):
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch(exist_ok=True)
        flags = linux.MS_BIND | linux.MS_REC
        linux.mount(bind_mount.source, str(target), "none", flags)
        if bind_mount.readonly:
            linux.mount("", str(target), "", flags | linux.MS_REMOUNT | linux.MS_RDONLY)
    except OSError as e:
        print(
            f"wasmlet: cannot mount {bind_mount.source} at {bind_mount.destination}: {e}",
            file=sys.stderr,
        )


def load(config: RunnerConfig) -> LockedApp:
    level = config.env.get("WASMLET_LOG_LEVEL", "info")
    if level != "info" or not logging.getLogger().handlers:  # else the template's is it
        configure_logging(level)
        logging.getLogger().setLevel(level.upper())
    return load_app(config)


def build(config: RunnerConfig, app: LockedApp) -> tuple[ServedTask, socket.socket | None]:
    """Build the app to serve (the components' artifacts mapped, the socket bound if it has
    an HTTP trigger), on an engine and a pool of its own made here, on this thread (never
    across a fork)."""
    home = Path(config.work)
    rc_file = Path(config.rootfs) / RUNTIME_CONFIG
    rc = load_runtime_config(rc_file if rc_file.is_file() else None, home)
    memory = config.env.get("SPIN_MAX_INSTANCE_MEMORY")
    opts = AppOptions(
        state_dir=rc.state_dir or home / "state",
        engine=EngineSettings(cache_dir=Path(config.cache_dir)),
        limits=Limits(max_instance_memory=parse_size(memory) if memory else rc.max_instance_memory),
        runtime_config=rc,
        home=home,
        environ=dict(config.env),
    )
    timeout = subscribe_timeout(config.env)
    sock = bind(config.listen) if app.triggers_of("http") else None
    engine = WasmEngine(opts.engine)
    shared = Shared(engine, TickingPool(engine, opts.thread_count), RunGate(opts.max_running))
    try:
        origin = base_url(sock) if sock is not None else None
        return ServedTask(build_app(app, opts, origin, shared), timeout), sock
    except BaseException:
        shared.close()
        if sock is not None:
            sock.close()
        raise


def subscribe_timeout(env: dict[str, str]) -> float:
    """`WASMLET_SUBSCRIBE_TIMEOUT` from the container's environment: seconds (> 0) the
    message triggers have to subscribe once the task is started."""
    text = env.get(SUBSCRIBE_TIMEOUT_ENV)
    if text is None:
        return SUBSCRIBE_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise WasmletError(f"{SUBSCRIBE_TIMEOUT_ENV}: {text!r} is not a number of seconds > 0")
    return value


def _watcher(served: ServedTask, status: int) -> Callable[[], Awaitable[bool]] | None:
    """What waits for the app's message triggers to subscribe (None: it has none)."""
    if not served.running.triggers:
        return None
    return lambda: report_subscribed(served, status)


async def report_subscribed(served: ServedTask, status: int) -> bool:
    """Tell the shim once every message trigger is subscribed (its Start waits for this);
    False, with the reason printed and reported, if they are not in time."""
    running = served.running
    if await running.until_subscribed(served.subscribe_timeout):
        log.info("every message trigger is subscribed")
        _report(status, {"subscribed": True})
        return True
    waiting = [line.strip() for t in running.triggers if not t.ready for line in t.describe()]
    message = (
        f"the message triggers are not subscribed within {served.subscribe_timeout:g} s "
        f"({SUBSCRIBE_TIMEOUT_ENV}): {'; '.join(waiting)}"
    )
    print(f"Error: {message}", file=sys.stderr, flush=True)
    _report(status, {"subscribed": False, "error": message})
    return False


class TickingPool(ThreadPoolExecutor):
    """The guests' thread pool, which also advances the engine's epoch: every
    EPOCH_TICK_SECONDS while guests run on it, and for LINGER seconds after the last one
    (so a steady stream of short requests sees one plain ticker, not a ticker woken per
    request), then not at all until the next guest. A store's deadline is counted in ticks
    from its creation, on the thread that runs the guest, so a request's ticks are
    wall-clock time for as long as it can run Wasm."""

    LINGER = 1.0

    def __init__(self, engine: WasmEngine, threads: int) -> None:
        super().__init__(threads, thread_name_prefix="wasmlet-wasm")
        self._epoch = engine.engine
        self._lock = threading.Lock()
        self._active = 0
        self._last = 0.0  # when the last guest finished (monotonic)
        self._parked = True
        self._stopped = False
        self._wake = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="wasmlet-epoch", daemon=True)
        self._ticker.start()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        return super().submit(self._counted, fn, *args, **kwargs)

    def _counted(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            self._active += 1
            wake, self._parked = self._parked, False
        if wake:
            self._wake.set()
        try:
            return fn(*args, **kwargs)
        finally:
            with self._lock:
                self._active -= 1
                self._last = time.monotonic()

    def _tick(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            while True:
                if self._stopped:
                    return
                time.sleep(EPOCH_TICK_SECONDS)
                self._epoch.increment_epoch()
                with self._lock:
                    if not self._active and time.monotonic() - self._last > self.LINGER:
                        self._parked = True
                        break

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        super().shutdown(wait, cancel_futures=cancel_futures)
        self._stopped = True
        self._wake.set()


@dataclass
class ServedTask:
    """The task's app as trigger/http/server.py serves it (its `Served`)."""

    running: RunningApp
    subscribe_timeout: float = SUBSCRIBE_TIMEOUT  # seconds its message triggers have

    def asgi(self) -> Any:
        # the message triggers run from uvicorn's lifespan startup to its shutdown
        return with_triggers(self.running.trigger, self.running.triggers)

    def grace(self) -> float | None:
        timeout = self.running.runtime.limits.request_timeout
        return timeout + 5 if timeout > 0 else None

    def start(self) -> None:
        # (no ticker to start: the pool ticks while guests run) Listed on the status page of
        # WASMLET_METRICS_LISTEN; nothing without it.
        status.register(self.running.app.name, status.describe_app(self.running.app), state="ready")

    def close(self) -> None:
        status.unregister(self.running.app.name)
        self.running.close()
        self.running.shared.close()

    def banner(self, url: str | None, out: TextIO) -> None:
        if url is not None:
            print_routes(self.running.app, url, out)
        for trigger in self.running.triggers:
            for line in trigger.describe():
                print(line, file=out)
        out.flush()


class TaskServer:
    """uvicorn serving the task's app, as every wasmlet server is configured
    (`uvicorn_server`), with a main loop that wakes once a second instead of ten times
    (the loop is uvicorn's own, which checks for shutdown and refreshes the Date header;
    `stop` wakes it at once). An app's message triggers run beside it (`ServedTask.asgi`);
    `watch` (`report_subscribed`) tells the shim once they are subscribed, or stops the
    server (exit status 1) if they are not in time."""

    def __init__(
        self,
        served: ServedTask,
        sock: socket.socket,
        out: TextIO,
        watch: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self.served = served
        self.sock = sock
        self.out = out
        self.watch = watch
        self.failed = False  # its message triggers did not subscribe in time
        self.server = uvicorn_server(served)
        self.server.config.load()  # before Start: protocols, the app wrapped
        self.server.main_loop = self._main_loop  # type: ignore[method-assign]
        handle_exit = self.server.handle_exit  # a signal uvicorn caught: act on it now

        def handled(sig: int, frame: Any) -> None:
            handle_exit(sig, frame)
            self._wake_up()

        self.server.handle_exit = handled  # type: ignore[method-assign]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._watch: asyncio.Task[None] | None = None

    @property
    def started(self) -> bool:
        return bool(self.server.started)

    async def _main_loop(self) -> None:
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        if self.watch is not None:  # (the triggers started with the lifespan, before this)
            self._watch = asyncio.ensure_future(self._subscriptions(self.watch))
        counter = 0
        while not await self.server.on_tick(counter):  # Date header when counter % 10 == 0
            counter = (counter + 10) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 1.0)
        if self._watch is not None:
            self._watch.cancel()

    async def _subscriptions(self, watch: Callable[[], Awaitable[bool]]) -> None:
        if not await watch():
            self.failed = True
            self.stop()

    def stop(self, force: bool = False) -> None:
        """Stop serving (from any thread): drain the requests in flight, or not (`force`)."""
        self.server.force_exit = self.server.force_exit or force
        self.server.should_exit = True
        self._wake_up()

    def _wake_up(self) -> None:
        if self._loop is not None and self._wake is not None:
            with contextlib.suppress(RuntimeError):  # its loop has closed: it has stopped
                self._loop.call_soon_threadsafe(self._wake.set)

    def run(self) -> int:
        """Serve until stopped; the task's exit status."""
        self.served.banner(base_url(self.sock), self.out)
        self.served.start()
        try:
            self.server.run(sockets=[self.sock])
        finally:
            self.served.close()
            self.sock.close()
        return 0 if self.started and not self.failed else 1


class TriggerTask:
    """A task whose app has no HTTP trigger: its message triggers, and no listener, until
    SIGTERM/SIGINT; then the messages being handled finish (the pool is waited for)."""

    def __init__(self, served: ServedTask, out: TextIO, status: int = -1) -> None:
        self.served = served
        self.out = out
        self.status = status

    def run(self) -> int:
        """Run until stopped; the task's exit status."""
        self.served.banner(None, self.out)
        self.served.start()
        try:
            return asyncio.run(self._main())
        finally:
            self.served.close()

    async def _main(self) -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        tasks = TriggerTasks(self.served.running.triggers)
        tasks.start()
        watch = asyncio.ensure_future(report_subscribed(self.served, self.status))
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait({watch, stopped}, return_when=asyncio.FIRST_COMPLETED)
        subscribed = not watch.done() or watch.result()
        if subscribed:
            await stopped
            log.info("stopping: waiting for the messages being handled")
        watch.cancel()
        stopped.cancel()
        await tasks.stop()
        return 0 if subscribed else 1


if __name__ == "__main__":
    sys.exit(main())
