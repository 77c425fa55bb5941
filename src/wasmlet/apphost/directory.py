"""`wasmlet host`: the apps of a directory, one sub-directory each (see sources.py).

An app is loaded (its manifest locked, its runtime config read) when the host starts or its
directory appears, and built by its first request; `--precompile` compiles its components
into the cache as soon as it is loaded, so no first request waits for a compile.

A watcher thread follows the directory (inotify, through watchfiles): an app added, changed
or removed takes effect on the event loop within a second, without a restart; requests in
flight finish on the version they started on. Every `scan_interval` seconds it also looks at
the files apps are made of outside the directory (a component referenced by absolute path),
which inotify does not follow; without inotify, it rescans everything that often.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import watchfiles

from ..engine import Limits
from ..errors import WasmletError
from ..running import AppOptions, check_app
from ..runtime_config import load_runtime_config
from .apps import AppVersion
from .host import AppHost, Changes, HostOptions
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


@dataclass(frozen=True)
class HostTarget:
    """`wasmlet host` as what a server process builds (see trigger/http/server.py)."""

    apps_dir: Path
    opts: HostOptions

    def build(self, origin: str) -> DirectoryHost:
        return DirectoryHost(self.apps_dir, self.opts, origin)

    def for_worker(self, index: int) -> HostTarget:
        """Worker `index` of several: the first runs the apps' message triggers (each
        subscriber gets every message), the others serve only their HTTP routes."""
        first = index == 0
        return replace(
            self, opts=replace(self.opts, message_triggers=first, messages_elsewhere=not first)
        )


@dataclass
class _Files:
    """What a served version was loaded from, to tell when it changes."""

    source: AppSource
    stamp: Stamp  # of `watched`, as read before loading
    watched: list[Path]
    outside: list[Path]  # those not under the apps directory (inotify does not see them)
    outside_stamp: Stamp


class DirectoryHost(AppHost):
    def __init__(self, apps_dir: Path, opts: HostOptions, origin: str) -> None:
        if not apps_dir.is_dir():
            raise WasmletError(f"{apps_dir}: no such directory (the apps directory)")
        super().__init__(opts, origin)
        self.apps_dir = apps_dir
        self._files: dict[str, _Files] = {}  # of the version served, by name
        self._failures: dict[str, tuple[Stamp, str]] = {}  # name -> (its files, why)
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self.install(*self._changes())  # the first load, before anything is served

    def describe_source(self) -> str:
        return str(self.apps_dir)

    def watch(self) -> None:
        self._watcher = threading.Thread(target=self._watch, name="wasmlet-host-watch", daemon=True)
        self._watcher.start()

    def unwatch(self) -> None:
        self._stop.set()
        if self._watcher is not None and self._watcher is not threading.current_thread():
            self._watcher.join(timeout=5)

    # -- loading ---------------------------------------------------------------------------
    def _changes(self, only: set[str] | None = None) -> tuple[Changes, dict[str, str]]:
        """What differs between the directory and what is served (of the apps named `only`,
        or all): a new version for each app added or changed, None for each app removed; and
        why each app that is not (or not anew) served is not. An app whose new version fails
        to load keeps its old version. Runs off the event loop (it reads files, locks
        manifests, may pull images)."""
        if only is None:
            sources, problems = scan(self.apps_dir)
            gone = set(self._files) - set(sources)
        else:
            sources, gone = {}, set()
            problems = {n: why for n, why in self.problems.items() if n not in only}
            for name in only:
                found = scan_one(self.apps_dir, name)
                if isinstance(found, AppSource):
                    sources[name] = found
                elif found is not None:
                    problems[name] = found
                if not isinstance(found, AppSource) and name in self._files:
                    gone.add(name)
        changes: Changes = dict.fromkeys(gone)
        for name in gone | ((only or set()) - set(sources)):
            self._failures.pop(name, None)
            self._files.pop(name, None)
        for name, source in sources.items():
            files = self._files.get(name)
            if files is not None and files.source == source and stamp(files.watched) == files.stamp:
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
            refused = self.refusal(app)
            if refused is not None:
                raise WasmletError(refused)
            options = self._options(source)
            check_app(app, options)
            if self.opts.precompile:
                self.precompile(app)
        except WasmletError as e:
            log.error("app %s: %s", source.name, e)
            return str(e)
        except Exception as e:  # a host keeps serving the others whatever one app does
            log.exception("app %s could not be loaded", source.name)
            return f"{type(e).__name__}: {e}"
        watched = watched_files(source, app)
        outside = [p for p in watched if not p.is_relative_to(self.apps_dir)]
        full = before + stamp(watched[len(before) :])
        self._files[source.name] = _Files(source, full, watched, outside, stamp(outside))
        return AppVersion(
            name=source.name,
            app=app,
            options=options,
            source=str(source.path),
            number=self.next_number(source.name),
            self_host=f"{source.name}.localhost:{self.port}",
        )

    def _options(self, source: AppSource) -> AppOptions:
        """How the app runs: its own runtime config, `.env`, state; the host's limits."""
        rc_file = source.directory / RUNTIME_CONFIG_FILE
        rc = load_runtime_config(rc_file if rc_file.is_file() else None, source.directory)
        memory = rc.max_instance_memory or self.opts.max_instance_memory
        return AppOptions(
            state_dir=rc.state_dir or self.opts.state_dir / source.name,
            limits=Limits(self.opts.request_timeout, memory, self.opts.max_output),
            runtime_config=rc,
            home=source.directory,
            environ={},  # the host's environment is not an app's
            max_body=self.opts.max_body,
            body_read_timeout=self.opts.body_read_timeout,
        )

    # -- following the directory -----------------------------------------------------------
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
            changes, problems = self._changes(only)
        except Exception:
            log.exception("scanning %s", self.apps_dir)
            return
        if changes or problems != self.problems:
            self.post(changes, problems)

    def _changed_outside(self) -> set[str]:
        """The apps whose files outside the apps directory changed (a stat of each such file
        only: a full scan of 10,000 apps would take the GIL for a quarter of a second)."""
        return {
            name
            for name, files in list(self._files.items())
            if files.outside and stamp(files.outside) != files.outside_stamp
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
