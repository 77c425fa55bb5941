"""Start the real `wasmlet up` on loopback and talk HTTP to it; run the CLI; write apps."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from .env import HELLO, TESTBED, free_port


@dataclass
class Server:
    """A running `wasmlet up` process."""

    proc: subprocess.Popen[str]
    url: str
    output: list[str] = field(default_factory=list)

    @property
    def log(self) -> str:
        return "".join(self.output)

    def logged(self, text: str, timeout: float = 5.0) -> bool:
        """Whether `text` appears in the log within `timeout` (a log line may be written,
        and read from the pipe, just after the response it is about)."""
        deadline = time.monotonic() + timeout
        while text not in self.log:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def client(self, **kw: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kw)  # type: ignore[arg-type]

    def get(self, path: str, **kw: object) -> httpx.Response:
        with self.client() as c:
            return c.get(path, **kw)  # type: ignore[arg-type]

    def request(self, method: str, path: str, **kw: object) -> httpx.Response:
        with self.client() as c:
            return c.request(method, path, **kw)  # type: ignore[arg-type]

    def put(self, path: str, **kw: object) -> httpx.Response:
        return self.request("PUT", path, **kw)

    def delete(self, path: str, **kw: object) -> httpx.Response:
        return self.request("DELETE", path, **kw)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise


def start_server(
    app: Path | str,
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    cache_dir: Path | None = None,
    timeout: float = 60,
) -> Server:
    """Run `wasmlet up -f APP --listen 127.0.0.1:<free port> ARGS…` and wait for `Serving`."""
    return start_command(
        ["up", "-f", str(app), *args], env=env, cwd=cwd, cache_dir=cache_dir, timeout=timeout
    )


def start_host(
    apps: Path, *args: str, cache_dir: Path | None = None, timeout: float = 60
) -> Server:
    """Run `wasmlet host --apps APPS --listen 127.0.0.1:<free port> ARGS…`."""
    return start_command(["host", "--apps", str(apps), *args], cache_dir=cache_dir, timeout=timeout)


def start_command(
    command: list[str],
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    cache_dir: Path | None = None,
    timeout: float = 60,
    preexec_fn: Callable[[], None] | None = None,
) -> Server:
    """Run a serving `wasmlet` command on 127.0.0.1:<free port>; wait until it answers.
    `preexec_fn` runs in the child before wasmlet starts (e.g. to set resource limits)."""
    port = free_port()
    own = ["--cache-dir", str(cache_dir)] if cache_dir is not None else []  # ARGS may override
    cmd = [sys.executable, "-m", "wasmlet.cli", command[0], *own, *command[1:]]
    cmd += ["--listen", f"127.0.0.1:{port}"]
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=full_env,
        cwd=cwd,
        preexec_fn=preexec_fn,
    )
    server = Server(proc, f"http://127.0.0.1:{port}")
    ready = threading.Event()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            server.output.append(line)
            if line.startswith("Serving "):
                ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout
    while not ready.wait(0.05):
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"server did not start:\n{server.log}")
    if proc.poll() is not None and not any(x.startswith("Serving") for x in server.output):
        time.sleep(0.1)
        raise AssertionError(f"server exited ({proc.returncode}):\n{server.log}")
    # The socket is bound before "Serving" is printed; wait until it answers.
    while True:
        try:
            httpx.get(server.url + "/.well-known/spin/health", timeout=2)
            break
        except httpx.TransportError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise AssertionError(f"server not answering:\n{server.log}") from None
            time.sleep(0.05)
    return server


def run_cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wasmlet.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


def write_app(directory: Path, manifest: str, files: dict[str, str | bytes] | None = None) -> Path:
    """Write a spin.toml (dedented; `{testbed}`/`{hello}` → fixture paths) and extra files."""
    directory.mkdir(parents=True, exist_ok=True)
    text = (
        textwrap.dedent(manifest).replace("{testbed}", str(TESTBED)).replace("{hello}", str(HELLO))
    )
    (directory / "spin.toml").write_text(text)
    for name, content in (files or {}).items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return directory


def parse_env_dump(body: str) -> tuple[list[str], dict[str, str]]:
    """Parse testbed's `mode=env` output: `argv[i]=…` lines and `KEY=VALUE` lines."""
    argv: list[str] = []
    env: dict[str, str] = {}
    for line in body.splitlines():
        m = re.match(r"argv\[(\d+)\]=(.*)$", line)
        if m:
            argv.append(m.group(2))
        elif "=" in line:
            k, _, v = line.partition("=")
            env[k] = v
    return argv, env


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:  # it has just exited
        return []


def worker_pids(supervisor: int) -> list[int]:
    """The worker processes of a server with `--workers N`: the children of its fork server
    (wasmlet/forkserver.py), itself the supervisor's only child."""
    return [w for child in _children(supervisor) for w in _children(child)]
