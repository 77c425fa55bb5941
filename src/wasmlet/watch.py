"""`wasmlet watch` (Spin's `spin watch`): rebuild a component when its sources change and
restart the app on the same address.

The app runs as a `wasmlet up` child process. Each batch of file changes (after `debounce`
milliseconds of quiet) is sorted out:

- spin.toml changed: it is read again, every stale component is rebuilt, the app restarts;
- a file a component's `watch` globs match (or its requirements.txt / package.json)
  changed: that component is rebuilt (a build whose inputs did not change does nothing), and
  the app restarts if something was built;
- a component's Wasm file changed by something else than this watcher: the app restarts.

The new app is started only after its build succeeded; the old one keeps serving during the
build. Errors (a failed build, a manifest error, an app that does not start) are printed and
the watcher waits for the next change. The first start's actual address (`--listen` may say
port 0) is kept for every restart.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TextIO

import watchfiles

from .build import build_app, watched_files
from .errors import WasmletError
from .manifest import AppManifest, load_manifest, manifest_file

_SERVING = re.compile(r"Serving (https?)://(\S+)")
_STOP_GRACE = 10.0  # seconds a stopping app gets before it is killed
_START_TIMEOUT = 300.0  # a large component may take minutes to compile on a busy machine


@dataclass
class WatchOptions:
    app: Path
    """spin.toml or the directory that holds it."""
    listen: str
    up_args: list[str] = field(default_factory=list)
    """More `wasmlet up` options, passed as they are."""
    skip_build: bool = False
    debounce_ms: int = 100
    cache_dir: Path | None = None
    """Where `wasmlet build` keeps its tools (default: wasmlet's cache)."""


class AppProcess:
    """One `wasmlet up` child; its output is copied to `out` line by line."""

    def __init__(self, manifest: Path, listen: str, up_args: list[str], out: TextIO) -> None:
        command = [sys.executable, "-m", "wasmlet.cli", "up", "-f", str(manifest)]
        command += ["--listen", listen, *up_args]
        self.out = out
        self.address: str | None = None
        self._ready = threading.Event()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        threading.Thread(target=self._pump, name="wasmlet-watch-app", daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.out.write(line)
            self.out.flush()
            match = _SERVING.match(line)
            if match and self.address is None:
                self.address = match.group(2)
                self._ready.set()
        self._ready.set()

    def wait_ready(self, timeout: float = _START_TIMEOUT) -> bool:
        """True once the app serves; False if it exited (or did not start within `timeout`)."""
        self._ready.wait(timeout)
        return self.address is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(_STOP_GRACE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Watcher:
    def __init__(self, opts: WatchOptions, out: TextIO = sys.stdout) -> None:
        self.opts = opts
        self.out = out
        self.file = manifest_file(opts.app).resolve()
        self.app_dir = self.file.parent
        self.listen = opts.listen
        self.app: AppProcess | None = None
        self.manifest: AppManifest | None = None
        self._watched: dict[str, set[Path]] = {}
        self._served: dict[Path, tuple[int, int] | None] = {}

    def say(self, message: str) -> None:
        print(f"wasmlet watch: {message}", file=self.out)
        self.out.flush()

    def error(self, message: str) -> None:
        print(f"Error: {message}", file=self.out)
        self.say("waiting for a change")

    # -- the loop ---------------------------------------------------------------------------

    def run(self, stop: threading.Event | None = None) -> None:
        """Build, serve, then rebuild and restart on changes until SIGINT/SIGTERM (or `stop`)."""
        try:
            if self._reload() and self._build(None) is not None:
                self._restart()
            for changes in watchfiles.watch(
                self.app_dir,
                watch_filter=watchfiles.DefaultFilter(ignore_dirs=(*_IGNORED_DIRS,)),
                step=self.opts.debounce_ms,
                stop_event=stop,
                raise_interrupt=True,
            ):
                self._changed({Path(path) for _, path in changes})
        except KeyboardInterrupt:
            pass
        finally:
            if self.app is not None:
                self.say("stopping the app")
                self.app.stop()

    def _changed(self, paths: set[Path]) -> None:
        if self.file in paths:
            self.say("spin.toml changed")
            if self._reload() and self._build(None) is not None:
                self._restart()
            return
        if self.manifest is None:
            return  # the manifest is broken: only its own change matters
        before = self._watched
        self._refresh_watched()  # a new file may match a glob now, a deleted one did before
        stale = [
            cid
            for cid in self.manifest.components
            if (before.get(cid, set()) | self._watched.get(cid, set())) & paths
        ]
        built: list[str] = []
        if stale:
            names = ", ".join(sorted(_shown(p, self.app_dir) for p in paths)[:3])
            self.say(f"{names} changed: building {', '.join(stale)}")
            started = time.monotonic()
            result = self._build(stale)
            if result is None:
                return
            built = result
            if built:
                self.say(f"built in {time.monotonic() - started:.1f}s")
        if built or self._sources() != self._served:
            self._restart()

    # -- steps ------------------------------------------------------------------------------

    def _reload(self) -> bool:
        try:
            self.manifest = load_manifest(self.file)
        except WasmletError as e:
            self.manifest = None
            self.error(str(e))
            return False
        self._refresh_watched()
        for cid, component in self.manifest.components.items():
            if component.build is not None and not component.build.watch:
                self.say(f"component {cid} has no `watch` globs: its changes are not followed")
        return True

    def _refresh_watched(self) -> None:
        assert self.manifest is not None
        self._watched = {}
        for cid, component in self.manifest.components.items():
            if component.build is None or not component.build.watch:
                continue
            workdir = (self.app_dir / (component.build.workdir or ".")).resolve()
            self._watched[cid] = set(watched_files(workdir, component.build.watch))

    def _build(self, only: list[str] | None) -> list[str] | None:
        """Build the stale ones of all components (or of `only`): those built, None on failure.

        With --skip-build nothing is built: the app restarts only when a Wasm file changes."""
        if self.opts.skip_build:
            return []
        try:
            result = build_app(self.file, only=only, out=self.out, cache_dir=self.opts.cache_dir)
        except WasmletError as e:
            self.error(str(e))
            return None
        return result.built

    def _sources(self) -> dict[Path, tuple[int, int] | None]:
        """Each local component source and its (size, mtime) now."""
        if self.manifest is None:
            return {}
        states: dict[Path, tuple[int, int] | None] = {}
        for component in self.manifest.components.values():
            source = component.local_source()
            if source is None:
                continue
            path = (self.app_dir / source).resolve()
            try:
                stat = path.stat()
                states[path] = (stat.st_size, stat.st_mtime_ns)
            except OSError:
                states[path] = None
        return states

    def _restart(self) -> None:
        if self.app is not None:
            self.say("restarting the app")
            self.app.stop()
            self.app = None
        self._served = self._sources()
        started = time.monotonic()
        app = AppProcess(self.file, self.listen, self.opts.up_args, self.out)
        if not app.wait_ready():
            app.stop()
            self.error(f"the app did not start (exit status {app.proc.returncode})")
            return
        self.app = app
        if app.address is not None:
            self.listen = app.address  # keep the port, also when --listen said port 0
        self.say(f"serving again after {time.monotonic() - started:.1f}s")


_IGNORED_DIRS = (*watchfiles.DefaultFilter.ignore_dirs, ".spin")


def _shown(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def watch(opts: WatchOptions, out: TextIO = sys.stdout) -> None:
    """Run the watcher until SIGINT or SIGTERM."""

    def stop(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, stop)
    try:
        Watcher(opts, out).run()
    finally:
        signal.signal(signal.SIGTERM, old)
