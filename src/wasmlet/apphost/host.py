"""Many apps served from one process, picked by the request's Host.

`AppHost` is what every multi-app server shares: the versions it serves, by name; dispatch of
each request to its app's own HTTP trigger (so an app behaves exactly as under `wasmlet up`);
building an app on its first request; a status endpoint; swapping versions so that requests
in flight finish on the version they started on. Where apps come from is a subclass's: a
directory (`directory.py`, `wasmlet host`) or the Kubernetes API (`kube/activator.py`).

The apps share the process's engine (and so its compiled code), guest thread pool and run
gate (`running.Shared`); each keeps its own config and state through its `AppOptions`.

An app with Redis, MQTT or cron triggers is built and subscribed as soon as it is installed,
not on a first request, and stays so while it is current (`messages.py`); a host that must
not consume messages (`HostOptions.message_triggers` off: the activator, or a worker of a
host but its first, which runs them for all) refuses it or serves only its HTTP routes
(`refusal`).
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ..engine import EngineSettings
from ..errors import WasmletError
from ..guestlimits import DEFAULT_MAX_OUTPUT, DEFAULT_REQUEST_TIMEOUT
from ..locked import LockedApp, read_content
from ..observe import metrics, status
from ..pool import DEFAULT_MAX_WAITING, GuestPool
from ..running import RunningApp, Shared, build_app, message_trigger_types, thread_count
from ..trigger.http.app import DEFAULT_BODY_READ_TIMEOUT, DEFAULT_MAX_BODY
from .apps import AppVersion, BuildFailed
from .messages import Subscriber

log = logging.getLogger("wasmlet.host")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Changes = dict[str, AppVersion | None]  # name -> its new version, or None: gone

STATUS_PATH = "/.well-known/wasmlet/apps"
HEALTH_PATH = "/.well-known/spin/health"


@dataclass(frozen=True)
class HostOptions:
    state_dir: Path = field(default_factory=lambda: Path(".wasmlet-host"))  # <state>/<name>/
    engine: EngineSettings = field(default_factory=EngineSettings)
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT  # each app's, unless it says otherwise
    max_instance_memory: int | None = None  # each app's, unless its runtime config says
    threads: int = 0  # guests in progress in the whole host; 0 = automatic
    max_running: int = 1
    max_app_concurrency: int = 0  # one app's guests busy (not waiting); 0 = half the pool
    max_body: int = DEFAULT_MAX_BODY
    max_waiting: int = DEFAULT_MAX_WAITING  # guests waiting in host calls, beyond `threads`
    body_read_timeout: float = DEFAULT_BODY_READ_TIMEOUT
    max_output: int = DEFAULT_MAX_OUTPUT  # a Wagi guest's stdout
    precompile: bool = False
    insecure: bool = False  # pull apps over plain HTTP
    scan_interval: float = 10.0  # (a directory) files outside it (inside: inotify, at once)
    # Run apps' message triggers: off in the activator (an app's pods consume its messages)
    # and in every worker of a host but its first (each subscriber gets every message).
    message_triggers: bool = True
    # Another process runs them (a worker but the first): serve such apps' HTTP routes.
    messages_elsewhere: bool = False

    @property
    def thread_count(self) -> int:
        return thread_count(self.threads)

    @property
    def app_concurrency(self) -> int:
        return self.max_app_concurrency or max(1, self.thread_count // 2)


def host_labels(host: str | None) -> list[str]:
    """The labels of a `Host` (`shop.example.com:3000` → shop, example, com), lower-case;
    none for an IP address or no Host at all."""
    if not host:
        return []
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host
    if name.startswith("[") or name.replace(".", "").isdigit():
        return []
    return name.lower().split(".")


class AppHost:
    """The ASGI app of a multi-app server and its lifetime (a `Served`)."""

    def __init__(self, opts: HostOptions, origin: str) -> None:
        self.opts = opts
        self.origin = origin
        self.port = origin.rsplit(":", 1)[-1]
        self.shared = Shared.create(
            opts.engine, opts.thread_count, opts.max_running, opts.max_waiting
        )
        self.app_concurrency = opts.app_concurrency  # (a property: not per request)
        self.versions: dict[str, AppVersion] = {}  # the current version of each app
        self.problems: dict[str, str] = {}  # name -> why it is not served
        self.subscribers: dict[str, Subscriber] = {}  # the current versions with triggers
        self._stopping: set[asyncio.Task[None]] = set()  # retired versions' triggers
        self._numbers: dict[str, int] = {}
        self._builds = ThreadPoolExecutor(2, thread_name_prefix="wasmlet-build")
        self.loop: asyncio.AbstractEventLoop | None = None  # once serving
        self.metrics = metrics.host()  # None: metrics are off
        # Fewer, larger young collections: a host holds many long-lived objects, and every
        # collection of the older generations walks them (measured with 10,000 apps: one busy
        # app's throughput 0.91-1.01x of `wasmlet up` with these, 0.77-0.95x without).
        gc.set_threshold(50_000, 20, 100)

    # -- what subclasses provide -----------------------------------------------------------
    def find(self, labels: list[str]) -> str | None:
        """The name of the app a request's Host labels name (default: the first label; a
        bare name only if such an app exists)."""
        if len(labels) == 1 and labels[0] not in self.versions and labels[0] not in self.problems:
            return None
        return labels[0]

    def watch(self) -> None:
        """Start following the app source (called on the event loop, at startup)."""

    def unwatch(self) -> None:
        """Stop following it (at shutdown)."""

    def describe_source(self) -> str:
        return "apps"

    def refusal(self, app: LockedApp) -> str | None:
        """Why this host does not serve `app` (None: it does); checked when it is loaded."""
        types = message_trigger_types(app)
        if not types or self.opts.message_triggers or self.opts.messages_elsewhere:
            return None
        return (
            f"{', '.join(types)} triggers: not run by a host with more than one worker (each "
            "would handle every message); serve it from a host with --workers 1"
        )

    # -- Served ----------------------------------------------------------------------------
    def asgi(self) -> AppHost:
        return self

    def grace(self) -> float | None:
        timeout = self.opts.request_timeout
        return timeout + 5 if timeout > 0 else None

    def start(self) -> None:
        self.shared.start()

    def close(self) -> None:
        for name in {*self.versions, *self.problems}:
            status.unregister(name)
        self.unwatch()
        self.subscribers.clear()  # (stopped at the lifespan's shutdown)
        for version in self.versions.values():
            version.close()
        self._builds.shutdown(wait=True)
        self.shared.close()

    def banner(self, url: str, out: TextIO) -> None:
        names = sorted(self.versions)
        print(f"Serving {len(names)} apps from {self.describe_source()} on {url}", file=out)
        shown = ", ".join(names[:10]) + (f", … ({len(names) - 10} more)" if len(names) > 10 else "")
        if names:
            print(f"  by Host: http://<app>.localhost:{self.port}/  (apps: {shown})", file=out)
        print(f"  status: {url}{STATUS_PATH}", file=out)
        for name, why in sorted(self.problems.items()):
            print(f"  not served: {name}: {why}", file=out)
        out.flush()

    # -- versions --------------------------------------------------------------------------
    def next_number(self, name: str) -> int:
        number = self._numbers[name] = self._numbers.get(name, 0) + 1
        return number

    def precompile(self, app: LockedApp) -> None:
        """Compile every component into the engine's cache (the first request maps it)."""
        for component in app.components:
            what = f"component {component.id!r}"
            wasm = read_content(component.source, f"{what} source")
            digest = component.source.digest or ""
            if wasm[4:8] == b"\x01\x00\x00\x00":
                self.shared.engine.load_module(wasm, digest, what)
            else:
                self.shared.engine.load_component(wasm, digest, what)

    def install(self, changes: Changes, problems: dict[str, str] | None = None) -> None:
        """Serve new versions, retire old ones (on the event loop once serving)."""
        _settle()
        for name, version in changes.items():
            old = self.versions.pop(name, None)
            if version is not None:
                self.versions[name] = version
                what = "changed" if old is not None else "added"
                log.info("app %s %s (version %d)", name, what, version.number)
            elif old is not None:
                log.info("app %s removed", name)
            if old is not None:
                self._retire(old)
            if version is not None and self.opts.message_triggers:
                self._subscribe(version)
        if status.enabled():
            self._list(changes, problems)
        if problems is not None:
            self.problems = problems

    def _list(self, changes: Changes, problems: dict[str, str] | None) -> None:
        """Tell the status page what changed: apps served, gone, not served."""
        for name, version in changes.items():
            if version is None:
                status.unregister(name)
            else:
                described = status.describe_app(version.app)
                status.register(name, described, state=version.status, source=version.source)
        if problems is None:
            return
        for name in self.problems.keys() - problems.keys():
            if name in self.versions:
                status.update(name, error=None)
            else:
                status.unregister(name)
        for name, why in problems.items():
            if name in self.versions:  # its new version failed; the old one still serves
                status.update(name, error=why)
            else:
                status.register(name, {"app": name}, state="not served", error=why)

    def _subscribe(self, version: AppVersion) -> None:
        """An app with message triggers: build it and start them now (or once serving)."""
        if not message_trigger_types(version.app):
            return
        subscriber = self.subscribers[version.name] = Subscriber(version, self._app_pool())
        if self.loop is not None:
            subscriber.start(self._build, self._builds)

    def _retire(self, old: AppVersion) -> None:
        """Retire a version; one with message triggers unsubscribes first."""
        subscriber = self.subscribers.get(old.name)
        if subscriber is None or subscriber.version is not old:
            old.retire()
            return
        del self.subscribers[old.name]
        if self.loop is None:  # not serving yet: nothing was started
            old.retire()
            return

        async def stop() -> None:
            try:
                await subscriber.stop()
            finally:
                old.retire()

        task = asyncio.ensure_future(stop())
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    def post(self, changes: Changes, problems: dict[str, str] | None = None) -> None:
        """`install` from any thread."""
        if self.loop is None:
            self.install(changes, problems)
        else:
            self.loop.call_soon_threadsafe(self.install, changes, problems)

    def _build(self, version: AppVersion) -> RunningApp:
        """Build one app on the host's shared engine, pool and gate (in a build thread)."""
        subscriber = self.subscribers.get(version.name)
        pool = (  # a version with message triggers: its pool counts their handlers
            subscriber.pool
            if subscriber is not None and subscriber.version is version
            else self._app_pool()
        )
        try:
            running = build_app(
                version.app,
                version.options,
                self.origin,
                self.shared,
                version.self_host,
                pool=pool,
            )
        except WasmletError as e:  # one line, as `wasmlet up` reports it
            log.error("app %s could not be built: %s", version.name, e)
            self._built(version, str(e))
            raise
        except Exception as e:
            log.exception("app %s could not be built", version.name)
            self._built(version, f"{type(e).__name__}: {e}")
            raise
        self._built(version, None)
        _settle()
        return running

    def _built(self, version: AppVersion, error: str | None) -> None:
        """The status page's state of an app whose build ended (`error`: it failed)."""
        if self.versions.get(version.name) is version:  # (else: retired meanwhile)
            status.update(version.name, state="failed" if error else "ready", error=error)

    def _app_pool(self) -> Executor:
        """Where one app's guests run: a group of the shared pool, in which at most
        `app_concurrency` of them are busy (waiting ones not counted), so that a busy or
        looping app cannot take every thread; its other requests queue without a thread."""
        pool = self.shared.pool
        return pool.group(self.app_concurrency) if isinstance(pool, GuestPool) else pool

    # -- ASGI ------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.loop = asyncio.get_running_loop()
                for subscriber in self.subscribers.values():  # those loaded before serving
                    subscriber.start(self._build, self._builds)
                self.watch()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.unwatch()
                await self.unsubscribe()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def unsubscribe(self) -> None:
        """Stop every app's message triggers and wait for the messages being handled."""
        stopping = [s.stop() for s in self.subscribers.values()]
        await asyncio.gather(*stopping, *self._stopping, return_exceptions=True)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        host = next((v for k, v in scope["headers"] if k.lower() == b"host"), b"")
        labels = host_labels(host.decode("latin-1"))
        name = self.find(labels) if labels else None
        if name is None:
            if len(labels) > 1:  # `<name>.<domain>` naming no app
                await _plain(send, 404, "")
            else:  # an address, or a bare name such as localhost: the host itself
                await self.own(scope, send)
            return
        version = self.versions.get(name)  # (an app whose new version failed: its old one)
        if version is None:
            if name in self.problems:
                await _plain(send, 503, f"app {name!r} is not available (see the host's status)")
            else:
                await _plain(send, 404, "")
            return
        version.begin()
        cold = version.running is None and version.error is None  # it waits for the build
        began = time.perf_counter() if cold else 0.0
        try:
            running = await version.ready(self._build, self._builds)
        except BuildFailed:
            version.done()
            if self.metrics is not None:
                self.metrics.request(name, cold, time.perf_counter() - began)
            await _plain(send, 503, f"app {name!r} could not be started (see the host's status)")
            return
        if self.metrics is not None:
            self.metrics.request(name, cold, time.perf_counter() - began if cold else 0.0)
        try:
            await running.trigger(scope, receive, send)  # on its own group of the pool
        finally:
            version.done()

    async def own(self, scope: Scope, send: Send) -> None:
        """Requests that name no app: the host's own endpoints."""
        path = scope.get("path", "")
        if path == HEALTH_PATH:
            await _plain(send, 200, "OK")
        elif path == STATUS_PATH:
            apps = []
            for name, version in sorted(self.versions.items()):
                subscriber = self.subscribers.get(name)
                messages = subscriber.describe() if subscriber is not None else {}
                apps.append(version.describe() | messages)
            body = {"apps": apps, "not_served": dict(sorted(self.problems.items()))}
            await _send(send, 200, "application/json", json.dumps(body, indent=1).encode())
        else:
            await _plain(send, 404, "")


def _settle() -> None:
    """Move what exists now (thousands of loaded apps) out of the garbage collector's sight:
    its full collections would otherwise walk them all, pausing requests (measured: p99 of one
    busy app among 10,000 idle ones 7.7 ms, 3.2 ms frozen). What is frozen is still freed by
    reference counting when an app goes; only reference cycles among it stay."""
    gc.freeze()


async def _plain(send: Send, status: int, text: str) -> None:
    await _send(send, status, "text/plain", (text + "\n").encode() if text else b"")


async def _send(send: Send, status: int, content_type: str, body: bytes) -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
