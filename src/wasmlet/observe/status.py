"""What the status page shows besides the metrics: the apps being served (their components,
routes and triggers) and the guests' recent failures with their backtraces.

The layers that load apps register them here (`register`, `unregister`; this base layer
imports none of them: `describe_app` reads a locked app through a Protocol). Executors report
failures through `metrics.ComponentMetrics.failed`, which calls `guest_failed`. Each process
keeps the newest `MAX_ERRORS` failures in a ring.

Off, and every function a no-op, until `enable` (called by `metrics.enable`, so by
`--metrics-listen`). With `--workers N` each process writes its apps and ring to
`status_<pid>.json` in the run's multiprocess directory (at most every `FLUSH_DELAY`
seconds, on a timer thread: a failure storm costs one small write per interval), and the
supervisor, which serves the page, merges the files (`snapshot`): apps of live processes,
failures of every process, dead ones included (a worker that crashed is what one looks for).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger("wasmlet.metrics")

MAX_ERRORS = 20  # per process, and on the page
MAX_MESSAGE = 500  # characters of a failure's message
MAX_BACKTRACE = 60  # frames
MAX_STDERR = 2000  # characters: the end of what a Wagi guest wrote to stderr
FLUSH_DELAY = 0.2  # seconds: how stale a worker's file may be
FILE_PREFIX = "status_"  # (prometheus-client reads only *.db files there)

App = dict[str, Any]  # a JSON-able description (describe_app)


class _Component(Protocol):
    @property
    def id(self) -> str: ...


class _Trigger(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def trigger_type(self) -> str: ...
    @property
    def trigger_config(self) -> Mapping[str, Any]: ...


class AppLike(Protocol):
    """What `describe_app` reads of a locked app (wasmlet.locked.LockedApp)."""

    @property
    def name(self) -> str: ...
    @property
    def components(self) -> Sequence[_Component]: ...
    @property
    def triggers(self) -> Sequence[_Trigger]: ...


def describe_app(app: AppLike) -> App:
    """An app's components, HTTP routes and other triggers, as the page lists them. A message
    trigger's server address is left out (it may carry a password)."""
    routes, triggers = [], []
    for t in app.triggers:
        config = t.trigger_config
        component = config.get("component")
        component = component if isinstance(component, str) else ""  # (inline: resolved id)
        if t.trigger_type == "http":
            route = config.get("route")
            if not isinstance(route, str):
                continue  # a private route: not routable, so never requested
            executor = config.get("executor") or {}
            kind = "static" if "static_response" in config else str(executor.get("type", "http"))
            routes.append({"route": route, "component": component, "executor": kind})
        else:
            detail = {
                "redis": f"channel {config.get('channel', '')}",
                "mqtt": f"topic {config.get('topic', '')} (qos {config.get('qos', '')})",
                "cron": f"schedule {config.get('cron_expression', '')}",
            }.get(t.trigger_type, t.id)
            triggers.append({"type": t.trigger_type, "component": component, "detail": detail})
    components = [{"id": c.id} for c in app.components]
    return {"app": app.name, "components": components, "routes": routes, "triggers": triggers}


class _State:
    def __init__(self, directory: str | None) -> None:
        self.lock = threading.Lock()
        self.apps: dict[str, App] = {}
        self.errors: deque[dict[str, Any]] = deque(maxlen=MAX_ERRORS)
        self.directory = directory
        self.path = Path(directory, f"{FILE_PREFIX}{os.getpid()}.json") if directory else None
        self.timer: threading.Timer | None = None

    def changed(self) -> None:
        """Write this process's file soon (multiprocess mode), once for many changes."""
        if self.path is None:
            return
        with self.lock:
            if self.timer is not None:
                return
            timer = self.timer = threading.Timer(FLUSH_DELAY, self.flush)
        timer.daemon = True
        timer.name = "wasmlet-status"
        timer.start()

    def flush(self) -> None:
        assert self.path is not None
        with self.lock:
            self.timer = None
            body = {"pid": os.getpid(), "apps": self.apps, "errors": list(self.errors)}
            text = json.dumps(body)
        partial = self.path.with_suffix(".tmp")
        try:  # replaced whole, so the supervisor never reads half a file
            partial.write_text(text)
            partial.replace(self.path)
        except OSError:  # the run's directory is gone: the server is exiting
            log.debug("writing %s", self.path, exc_info=True)


_state: _State | None = None
_enable_lock = threading.Lock()


def enable(multiprocess_dir: str | None = None) -> None:
    """Switch the status on in this process (idempotent); `multiprocess_dir`: as metrics."""
    global _state
    with _enable_lock:
        if _state is None:
            _state = _State(multiprocess_dir)


def enabled() -> bool:
    return _state is not None


def register(key: str, description: App, **extra: Any) -> None:
    """The app `key` (the name requests find it by) is served, as `description`
    (`describe_app`) says, with `extra` (`state`, `source`, `error`)."""
    state = _state
    if state is None:
        return
    with state.lock:
        state.apps[key] = {**description, **extra}
    state.changed()


def update(key: str, **extra: Any) -> None:
    """Change a registered app's `state`, `error`, … (nothing if it is not registered)."""
    state = _state
    if state is None:
        return
    with state.lock:
        app = state.apps.get(key)
        if app is None:
            return
        state.apps[key] = {**app, **extra}
    state.changed()


def unregister(key: str) -> None:
    state = _state
    if state is None:
        return
    with state.lock:
        state.apps.pop(key, None)
    state.changed()


def split_failure(text: str) -> tuple[str, list[str]]:
    """A wasmtime error's message (what follows "Caused by:", else its first line) and its
    wasm backtrace frames (`0: 0x63f - <unknown>!func`)."""
    head, sep, cause = text.partition("Caused by:")
    lines = [line.strip() for line in (cause if sep else head).splitlines() if line.strip()]
    if not sep and lines and "wasm backtrace:" in lines[0]:
        lines = lines[:1]
    message = "; ".join(lines) if lines else text.strip()
    frames: list[str] = []
    _, found, trace = head.partition("wasm backtrace:")
    if found:
        frames = [line.strip() for line in trace.splitlines() if line.strip()]
        if len(frames) > MAX_BACKTRACE:
            frames = [*frames[:MAX_BACKTRACE], f"… {len(frames) - MAX_BACKTRACE} more frames"]
    return message[:MAX_MESSAGE], frames


def guest_failed(app: str, component: str, kind: str, text: str, stderr: bytes = b"") -> None:
    """A guest run failed (`kind` as `wasmlet_guest_failures_total` counts it); `text` is
    the error (wasmtime's, with its backtrace), `stderr` what the guest wrote there."""
    state = _state
    if state is None:
        return
    message, frames = split_failure(text)
    entry = {
        "time": time.time(),
        "app": app,
        "component": component,
        "kind": kind,
        "message": message,
        "backtrace": frames,
        "stderr": stderr[-MAX_STDERR:].decode("utf-8", "replace") if stderr else "",
        "pid": os.getpid(),
    }
    with state.lock:
        state.errors.append(entry)
    state.changed()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def snapshot() -> tuple[dict[str, App], list[dict[str, Any]], int]:
    """The apps served (by key), the newest failures first, and how many processes serve:
    this process's, and in multiprocess mode every worker's too."""
    state = _state
    if state is None:
        return {}, [], 0
    with state.lock:
        apps = dict(state.apps)
        errors = list(state.errors)
    processes = 1
    if state.directory is not None:
        for path in Path(state.directory).glob(f"{FILE_PREFIX}*.json"):
            try:
                body = json.loads(path.read_text())
            except (OSError, ValueError):  # gone meanwhile
                continue
            pid = int(body.get("pid", 0))
            if pid == os.getpid():
                continue
            errors += body.get("errors", [])
            if _alive(pid):
                processes += 1
                for key, app in body.get("apps", {}).items():
                    # Every worker serves the same apps; one that has built it says ready.
                    if key not in apps or app.get("state") == "ready":
                        apps[key] = app
    errors.sort(key=lambda e: e.get("time", 0), reverse=True)
    return apps, errors[:MAX_ERRORS], processes
