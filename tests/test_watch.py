"""`wasmlet watch`: a real watcher over a real C app (clang-19), serving on loopback; sources
are edited and the new response must appear on the same address, a broken edit must leave
the old app serving and the watcher waiting, and SIGTERM must stop both."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.env import free_port, require_tool
from support.server import run_cli

WASMLET = [sys.executable, "-m", "wasmlet.cli"]
CHANGE_TIMEOUT = 120.0  # a rebuild and restart on a loaded two-core machine


class Watch:
    """A running `wasmlet watch`, its output collected."""

    def __init__(self, app: Path, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [*WASMLET, "watch", "-f", str(app), "--listen", f"127.0.0.1:{port}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
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

    def wait_for_output(self, text: str, timeout: float = CHANGE_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"{text!r} not in the output:\n{self.log}")
            time.sleep(0.05)

    def wait_for_body(
        self, prefix: str, path: str = "/path", status: int = 200, timeout: float = CHANGE_TIMEOUT
    ) -> str:
        """Poll the app (which is down while it restarts) until `path` answers `status` with
        a body starting with `prefix`; the body."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                r = httpx.get(self.url + path, timeout=10)
                last = f"{r.status_code} {r.text}"
                if r.status_code == status and r.text.startswith(prefix):
                    return r.text
            except httpx.TransportError as e:
                last = f"({e!r})"
            time.sleep(0.1)
        raise AssertionError(f"no {status} starting {prefix!r} (last: {last!r}):\n{self.log}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise


@pytest.fixture
def c_app(tmp_path: Path) -> Iterator[Path]:
    require_tool("clang-19", "clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32")
    r = run_cli("new", "c-wagi", "hello-c", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    yield tmp_path / "hello-c"


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_watch_rebuilds_and_restarts_on_the_same_port(c_app: Path) -> None:
    port = free_port()
    watch = Watch(c_app, port)
    main = c_app / "src" / "main.c"
    try:
        assert watch.wait_for_body("Hello from hello-c!") == "Hello from hello-c!\nGET /path\n"
        assert "[1/1] Building component hello-c" in watch.log
        assert f"Serving http://127.0.0.1:{port}" in watch.log

        _edit(main, "Hello from", "Howdy from")
        assert watch.wait_for_body("Howdy") == "Howdy from hello-c!\nGET /path\n"
        watch.wait_for_output("src/main.c changed: building hello-c")
        watch.wait_for_output("restarting the app")

        # A broken edit: the error is shown, the watcher waits, the old app keeps serving.
        _edit(main, "return 0;", "return 0 /* missing semicolon */")
        watch.wait_for_output("Error: build command for component 'hello-c' failed")
        watch.wait_for_output("wasmlet watch: waiting for a change")
        assert watch.proc.poll() is None
        assert httpx.get(watch.url + "/path", timeout=10).text.startswith("Howdy from")

        # Fixed: the next change builds and serves again, on the same port.
        _edit(main, "return 0 /* missing semicolon */", "return 0;")
        _edit(main, "Howdy from", "Hi from")
        assert watch.wait_for_body("Hi from") == "Hi from hello-c!\nGET /path\n"
        assert watch.log.count("Serving http://") >= 3
        assert all(
            line.strip() == f"Serving http://127.0.0.1:{port}"
            for line in watch.lines
            if line.startswith("Serving ")
        )

        # An unrelated file (not matched by the `watch` globs) changes nothing.
        restarts = watch.log.count("restarting the app")
        (c_app / "notes.txt").write_text("not a source")
        time.sleep(1.5)
        assert watch.log.count("restarting the app") == restarts
    finally:
        status = watch.stop()
    assert status == 0, watch.log
    assert "stopping the app" in watch.log
    with pytest.raises(httpx.TransportError):
        httpx.get(watch.url + "/path", timeout=5)


def test_watch_restarts_when_the_manifest_changes(c_app: Path) -> None:
    port = free_port()
    watch = Watch(c_app, port)
    try:
        watch.wait_for_body("Hello from")
        _edit(c_app / "spin.toml", 'route = "/..."', 'route = "/api/..."')
        watch.wait_for_output("spin.toml changed")
        watch.wait_for_body("", status=404)
        assert watch.wait_for_body("Hello", path="/api/x") == "Hello from hello-c!\nGET /x\n"
        assert "hello-c is up to date" in watch.log  # a manifest change rebuilds what is stale

        # A broken manifest: its error is shown, the running app stays.
        (c_app / "spin.toml").write_text("spin_manifest_version = 2\n[application\n")
        watch.wait_for_output("Error: ")
        assert watch.proc.poll() is None
        assert httpx.get(watch.url + "/api/x", timeout=10).status_code == 200
    finally:
        assert watch.stop() == 0, watch.log


def test_watch_without_a_manifest_fails_clearly(tmp_path: Path) -> None:
    r = run_cli("watch", "-f", str(tmp_path))
    assert r.returncode == 1
    assert r.stderr == f"Error: {tmp_path}: no spin.toml to watch\n"
