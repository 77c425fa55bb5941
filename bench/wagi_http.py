#!/usr/bin/env python3
"""End-to-end HTTP benchmark: `wasmlet up` serving the hello module, against the floor.

Runs wrk (Debian's `wrk`) against, in the same run:
  * `wasmlet up -f examples/hello` (one worker, then `--workers 2`),
  * the floor of the HTTP layer: the same uvicorn + httptools stack answering a constant from
    Python (no Wasm), so the Wasm overhead is visible,
at concurrency 1 and 16, and prints requests/s, p50 and p99 latency, and the ratio to the floor.
It also measures time to first response of a new `wasmlet up` process with a cold and a warm
compile cache.

    .venv/bin/python bench/wagi_http.py [--duration 10] [--app examples/hello]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import free_port, machine, run_wrk, stop, wait_http, wasmlet_cmd

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable

FLOOR_APP = """
import uvicorn
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b"Hello from wasmlet!\\n"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
uvicorn.run(app, host="127.0.0.1", port=int(__import__("sys").argv[1]), http="httptools",
            log_level="warning", access_log=False, lifespan="off", server_header=False)
"""


def start(cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=ROOT
    )


def first_response_times(app: Path, route: str) -> tuple[float, float]:
    """Seconds from process start to first 200, with a cold then a warm compile cache."""
    cache = Path(tempfile.mkdtemp(prefix="wasmlet-bench-cache-"))
    try:
        times = []
        for _ in ("cold", "warm"):
            port = free_port()
            t0 = time.monotonic()
            proc = start(wasmlet_cmd(app, port, 1, cache))
            try:
                wait_http(f"http://127.0.0.1:{port}{route}")
                times.append(time.monotonic() - t0)
            finally:
                stop(proc)
        return times[0], times[1]
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--app", type=Path, default=ROOT / "examples/hello")
    parser.add_argument("--route", default="/")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")

    print(f"machine: {machine()}")
    cache = Path(tempfile.mkdtemp(prefix="wasmlet-bench-cache-"))
    servers = {
        "floor (uvicorn constant)": lambda port: [PY, "-c", FLOOR_APP, str(port)],
        "wasmlet up": lambda port: wasmlet_cmd(args.app, port, 1, cache),
        "wasmlet up --workers 2": lambda port: wasmlet_cmd(args.app, port, 2, cache),
    }
    results: dict[tuple[str, int], dict[str, float]] = {}
    try:
        for name, make in servers.items():
            port = free_port()
            proc = start(make(port))
            try:
                url = f"http://127.0.0.1:{port}{args.route}"
                wait_http(url)
                run_wrk(url, 4, 2)  # warm up
                for c in (1, 16):
                    results[(name, c)] = run_wrk(url, c, args.duration)
            finally:
                stop(proc)
    finally:
        shutil.rmtree(cache, ignore_errors=True)

    print("\n| server | c | req/s | p50 ms | p99 ms | req/s vs floor | non-2xx |")
    print("|---|---|---|---|---|---|---|")
    for (name, c), r in results.items():
        floor = results[("floor (uvicorn constant)", c)]["rps"]
        print(
            f"| {name} | {c} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f}"
            f" | {r['rps'] / floor:.2f}x | {int(r['errors'])} |"
        )

    cold, warm = first_response_times(args.app, args.route)
    print(
        f"\ntime to first response of a new `wasmlet up`: cold cache {cold * 1000:.0f} ms,"
        f" warm cache {warm * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
