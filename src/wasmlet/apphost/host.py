"""The multi-app host: every app under a directory, served from one process.

A request goes to the app its `Host` names (`<name>.<any domain>`), then through that app's
own routes, exactly as under `wasmlet up`. The apps share the process's engine (and so its
compiled code), guest thread pool and run gate (`running.Shared`); each keeps its own config
and state: variables, runtime config, key-value and SQLite under `<state>/<name>/`, files,
`allowed_outbound_hosts`, limits. An app is loaded (its manifest locked) when the host starts
or its directory appears, and built (components mapped from the compile cache, factors
configured) by its first request; `--precompile` compiles every component into the cache as
soon as its app is loaded, so no first request waits for a compile.

A watcher thread follows the directory (inotify, through watchfiles): an app added, changed
or removed takes effect on the event loop within a second, without a restart; requests in
flight finish on the version they started on. Every `scan_interval` seconds it also looks at
the files apps are made of outside the directory (a component referenced by absolute path),
which inotify does not follow; without inotify, it rescans everything that often.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import watchfiles

from ..engine import DEFAULT_REQUEST_TIMEOUT, EngineSettings, Limits
from ..errors import WasmletError
from ..locked import LockedApp, read_content
from ..running import AppOptions, RunningApp, Shared, build_app, thread_count
from ..runtime_config import load_runtime_config
from ..trigger.http.app import DEFAULT_MAX_BODY
from .apps import AppVersion, BuildFailed
from .sources import (
    RUNTIME_CONFIG_FILE,
    AppSource,
    Stamp,
    load,
    scan,
    scan_one,
    stamp,
    watched_files,
)

log = logging.getLogger("wasmlet.host")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

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
    max_app_concurrency: int = 0  # one app's requests in the guest pool; 0 = half the pool
    max_body: int = DEFAULT_MAX_BODY
    precompile: bool = False
    insecure: bool = False  # pull `reference` apps over plain HTTP
    scan_interval: float = 10.0  # files outside the directory (inside: inotify, at once)

    @property
    def thread_count(self) -> int:
        return thread_count(self.threads)

    @property
    def app_concurrency(self) -> int:
        return self.max_app_concurrency or max(1, self.thread_count // 2)


@dataclass(frozen=True)
class HostTarget:
    """`wasmlet host` as what a server process builds (see trigger/http/server.py)."""

    apps_dir: Path
    opts: HostOptions

    def build(self, origin: str) -> AppHost:
        return AppHost(self.apps_dir, self.opts, origin)


def app_name(host: str | None) -> str | None:
    """The app a `Host` names: its first label (`shop` of `shop.localhost:3000`), or None for
    a bare name, an IP address or no Host at all."""
    if not host:
        return None
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host
    if name.startswith("[") or "." not in name or name.replace(".", "").isdigit():
        return None
    return name.split(".", 1)[0].lower()


class AppHost:
    """The ASGI app of `wasmlet host` and its lifetime (a `Served`)."""

    def __init__(self, apps_dir: Path, opts: HostOptions, origin: str) -> None:
        if not apps_dir.is_dir():
            raise WasmletError(f"{apps_dir}: no such directory (the apps directory)")
        self.apps_dir = apps_dir
        self.opts = opts
        self.origin = origin
        self.port = origin.rsplit(":", 1)[-1]
        self.shared = Shared.create(opts.engine, opts.thread_count, opts.max_running)
        self.app_concurrency = opts.app_concurrency  # (a property: not per request)
        self.versions: dict[str, AppVersion] = {}  # the current version of each app
        self.problems: dict[str, str] = {}  # name -> why it is not served
        self._numbers: dict[str, int] = {}
        self._failures: dict[str, tuple[Stamp, str]] = {}  # name -> (its files, why)
        self._builds = ThreadPoolExecutor(2, thread_name_prefix="wasmlet-build")
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Fewer, larger young collections: a host holds many long-lived objects, and every
        # collection of the older generations walks them (measured with 10,000 apps: one busy
        # app's throughput 0.91-1.01x of `wasmlet up` with these, 0.77-0.95x without).
        gc.set_threshold(50_000, 20, 100)
        self._apply(self._changes())  # the first load, before anything is served

    # -- Served ----------------------------------------------------------------------------
    def asgi(self) -> AppHost:
        return self

    def grace(self) -> float | None:
        timeout = self.opts.request_timeout
        return timeout + 5 if timeout > 0 else None

    def start(self) -> None:
        self.shared.start()

    def close(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
        for version in self.versions.values():
            version.close()
        self._builds.shutdown(wait=True)
        self.shared.close()

    def banner(self, url: str, out: TextIO) -> None:
        names = sorted(self.versions)
        print(f"Serving {len(names)} apps from {self.apps_dir} on {url}", file=out)
        shown = ", ".join(names[:10]) + (f", … ({len(names) - 10} more)" if len(names) > 10 else "")
        if names:
            print(f"  by Host: http://<app>.localhost:{self.port}/  (apps: {shown})", file=out)
        print(f"  status: {url}{STATUS_PATH}", file=out)
        for name, why in sorted(self.problems.items()):
            print(f"  not served: {name}: {why}", file=out)
        out.flush()

    # -- loading and reloading -------------------------------------------------------------
    def _changes(
        self, only: set[str] | None = None
    ) -> tuple[dict[str, AppVersion | None], dict[str, str]]:
        """What differs between the directory and what is served (of the apps named `only`,
        or all): a new version for each app added or changed, None for each app removed; and
        why each app that is not (or not anew) served is not. An app whose new version fails
        to load keeps its old version. Runs off the event loop (it reads files, locks
        manifests, may pull images)."""
        if only is None:
            sources, problems = scan(self.apps_dir)
            gone = set(self.versions) - set(sources)
        else:
            sources, gone = {}, set()
            problems = {n: why for n, why in self.problems.items() if n not in only}
            for name in only:
                found = scan_one(self.apps_dir, name)
                if isinstance(found, AppSource):
                    sources[name] = found
                elif found is not None:
                    problems[name] = found
                if not isinstance(found, AppSource) and name in self.versions:
                    gone.add(name)
        changes: dict[str, AppVersion | None] = dict.fromkeys(gone)
        for name in gone | ((only or set()) - set(sources)):
            self._failures.pop(name, None)
        for name, source in sources.items():
            current = self.versions.get(name)
            unchanged = current is not None and current.source == source
            if unchanged and current is not None and stamp(current.watched) == current.stamp:
                continue
            failed = self._failures.get(name)
            if failed is not None and failed[0] == stamp(watched_files(source, None)):
                problems[name] = failed[1]  # failed before, unchanged since: no retry
                continue
            version = self._load(source)
            if isinstance(version, str):
                problems[name] = version
                self._failures[name] = (stamp(watched_files(source, None)), version)
            else:
                self._failures.pop(name, None)
                changes[name] = version
        return changes, problems

    def _load(self, source: AppSource) -> AppVersion | str:
        """A new version of the app at `source`, or why it cannot be loaded."""
        before = stamp(watched_files(source, None))  # as read before loading: a change
        try:  # made while it loads shows at the next scan
            app = load(source, self.opts.insecure)
            if self.opts.precompile:
                self._precompile(app)
        except WasmletError as e:
            log.error("app %s: %s", source.name, e)
            return str(e)
        except Exception as e:  # a host keeps serving the others whatever one app does
            log.exception("app %s could not be loaded", source.name)
            return f"{type(e).__name__}: {e}"
        watched = watched_files(source, app)
        number = self._numbers[source.name] = self._numbers.get(source.name, 0) + 1
        version = AppVersion(source, app, number, before + stamp(watched[len(before) :]), watched)
        version.outside = [p for p in watched if not p.is_relative_to(self.apps_dir)]
        version.outside_stamp = stamp(version.outside)
        return version

    def _precompile(self, app: LockedApp) -> None:
        """Compile every component into the engine's cache (the first request maps it)."""
        for component in app.components:
            wasm = read_content(component.source, f"component {component.id!r} source")
            digest = component.source.digest or ""
            if wasm[4:8] == b"\x01\x00\x00\x00":
                self.shared.engine.load_module(wasm, digest, f"component {component.id!r}")
            else:
                self.shared.engine.load_component(wasm, digest, f"component {component.id!r}")

    def _apply(self, found: tuple[dict[str, AppVersion | None], dict[str, str]]) -> None:
        """Install what `_changes` found (on the event loop once serving)."""
        changes, problems = found
        _settle()
        for name, version in changes.items():
            old = self.versions.pop(name, None)
            if version is not None:
                self.versions[name] = version
                self.problems.pop(name, None)
                what = "changed" if old is not None else "added"
                log.info("app %s %s (version %d)", name, what, version.number)
            elif old is not None:
                log.info("app %s removed", name)
            if old is not None:
                old.retire()
        self.problems = problems

    def _watch(self) -> None:
        """Follow the directory until stopped: the apps inotify says changed, soon; those
        made of files outside the directory (which inotify does not follow) every
        `scan_interval` seconds. Without inotify, everything every `scan_interval` seconds."""
        last_full = time.monotonic()
        try:
            batches = watchfiles.watch(
                self.apps_dir,
                watch_filter=self._watched,
                debounce=200,
                step=50,
                stop_event=self._stop,
                rust_timeout=max(50, int(self.opts.scan_interval * 1000)),
                yield_on_timeout=True,
                raise_interrupt=False,
            )
            for batch in batches:
                names = {n for _, path in batch if (n := self._app_of(path)) is not None}
                if time.monotonic() - last_full >= self.opts.scan_interval:
                    last_full = time.monotonic()
                    names |= self._changed_outside()
                if names:
                    self._rescan(names)
        except Exception:  # e.g. no inotify: poll instead
            log.warning("cannot follow %s; rescanning it every %s s", self.apps_dir,
                        self.opts.scan_interval, exc_info=True)  # fmt: skip
            while not self._stop.wait(self.opts.scan_interval):
                self._rescan(None)

    def _rescan(self, only: set[str] | None) -> None:
        try:
            found = self._changes(only)
        except Exception:
            log.exception("scanning %s", self.apps_dir)
            return
        if (found[0] or found[1] != self.problems) and self._loop is not None:
            self._loop.call_soon_threadsafe(self._apply, found)

    def _changed_outside(self) -> set[str]:
        """The apps whose files outside the apps directory changed (a stat of each such file
        only: a full scan of 10,000 apps would take the GIL for a quarter of a second)."""
        return {
            name
            for name, version in list(self.versions.items())
            if version.outside and stamp(version.outside) != version.outside_stamp
        }

    def _app_of(self, path: str) -> str | None:
        """The app a changed path belongs to (its first part under the apps directory)."""
        try:
            name = Path(path).relative_to(self.apps_dir).parts[0]
        except (ValueError, IndexError):
            return None
        return None if name.startswith(".") else name

    def _watched(self, _change: watchfiles.Change, path: str) -> bool:
        return self._app_of(path) is not None  # not the state directory, nor hidden files

    # -- building --------------------------------------------------------------------------
    def _build(self, version: AppVersion) -> RunningApp:
        """Build one app on the host's shared engine, pool and gate (in a build thread)."""
        source = version.source
        rc_file = source.directory / RUNTIME_CONFIG_FILE
        rc = load_runtime_config(rc_file if rc_file.is_file() else None, source.directory)
        memory = rc.max_instance_memory or self.opts.max_instance_memory
        opts = AppOptions(
            state_dir=rc.state_dir or self.opts.state_dir / source.name,
            limits=Limits(self.opts.request_timeout, memory),
            runtime_config=rc,
            home=source.directory,
            environ={},  # the host's environment is not an app's
            max_body=self.opts.max_body,
        )
        self_host = f"{source.name}.localhost:{self.port}"
        try:
            running = build_app(version.app, opts, self.origin, self.shared, self_host)
            _settle()
            return running
        except WasmletError as e:
            log.error("app %s: %s", source.name, e)
            raise
        except Exception:
            log.exception("app %s could not be built", source.name)
            raise

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
                self._loop = asyncio.get_running_loop()
                self._watcher = threading.Thread(
                    target=self._watch, name="wasmlet-host-watch", daemon=True
                )
                self._watcher.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self._stop.set()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        host = next((v for k, v in scope["headers"] if k.lower() == b"host"), b"")
        name = app_name(host.decode("latin-1"))
        if name is None:
            await self._own(scope, send)
            return
        version = self.versions.get(name)  # (an app whose new version failed: its old one)
        if version is None:
            if name in self.problems:
                await _plain(send, 503, f"app {name!r} is not available (see the host's status)")
            else:
                await _plain(send, 404, "")
            return
        version.in_flight += 1
        version.requests += 1
        try:
            running = await version.ready(self._build, self._builds)
        except BuildFailed:
            version.done()
            await _plain(send, 503, f"app {name!r} could not be started (see the host's status)")
            return
        try:
            async with version.limit(self.app_concurrency):
                await running.trigger(scope, receive, send)
        finally:
            version.done()

    async def _own(self, scope: Scope, send: Send) -> None:
        """Requests that name no app: the host's own endpoints."""
        path = scope.get("path", "")
        if path == HEALTH_PATH:
            await _plain(send, 200, "OK")
        elif path == STATUS_PATH:
            body = {
                "apps": [v.describe() for _, v in sorted(self.versions.items())],
                "not_served": dict(sorted(self.problems.items())),
            }
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
