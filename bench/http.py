#!/usr/bin/env python3
"""End-to-end HTTP benchmark: `wasmlet up` serving the hello module, against the floor.

Runs wrk (Debian's `wrk`) against, in the same run:
  * `wasmlet up -f examples/hello` (one worker, then `--workers 2`),
  * the floor of the HTTP layer: the same uvicorn + httptools stack answering a constant from
    Python (no Wasm), so the Wasm overhead is visible,
at concurrency 1 and 16, and prints requests/s, p50 and p99 latency, and the ratio to the floor.
It also measures time to first response of a new `wasmlet up` process with a cold and a warm
compile cache.

    .venv/bin/python bench/http.py [--duration 10] [--app examples/hello]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, timeout: float = 60.0) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                r.read()
                return time.monotonic() - start
        except OSError:
            time.sleep(0.005)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(url: str, connections: int, duration: int) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+(?:us|ms|s))", out, re.M))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result = {"rps": rps, "errors": float(errors.group(1)) if errors else 0.0}
    for pct, text in lat.items():
        m = re.match(r"([\d.]+)(us|ms|s)", text)
        assert m
        result[f"p{pct}"] = _ms(m.group(1), m.group(2))
    return result


def start(cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=ROOT
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def wasmlet_cmd(app: Path, port: int, workers: int, cache: Path) -> list[str]:
    return [
        PY,
        "-m",
        "wasmlet.cli",
        "up",
        "-f",
        str(app),
        "--listen",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--cache-dir",
        str(cache),
        "--log-level",
        "error",
    ]


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
                wait_ready(f"http://127.0.0.1:{port}{route}")
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

    print(f"machine: {os.cpu_count()} cores, {platform_line()}")
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
                wait_ready(url)
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
            f"| {name} | {c} | {r['rps']:.0f} | {r.get('p50', 0):.2f} | {r.get('p99', 0):.2f}"
            f" | {r['rps'] / floor:.2f}x | {int(r['errors'])} |"
        )

    cold, warm = first_response_times(args.app, args.route)
    print(
        f"\ntime to first response of a new `wasmlet up`: cold cache {cold * 1000:.0f} ms,"
        f" warm cache {warm * 1000:.0f} ms"
    )


def platform_line() -> str:
    import platform

    return f"{platform.machine()}, Python {platform.python_version()}, {platform.platform()}"


if __name__ == "__main__":
    main()
