#!/usr/bin/env python3
"""In-process cost of one Wagi request: new store + instance + `_start` + response.

Measures, for a Wagi module (default: the C hello example), N requests through
(a) `WasiCommand.run` (store, WASI context, instantiate, `_start`, read stdout) and
(b) `WagiExecutor.handle` (the above plus building argv/env from a request and parsing the
CGI response), and prints p50/p99/mean in microseconds.

    .venv/bin/python bench/inprocess.py [--requests 10000] [--module examples/hello/hello.wasm]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import percentiles

from wasmlet.engine import EngineSettings, WasmEngine
from wasmlet.executors import CollectedResponse, HttpRequest
from wasmlet.executors._wasi_command import WasiCommand
from wasmlet.executors.wagi import WagiExecutor
from wasmlet.locked import file_digest
from wasmlet.trigger.http.router import RoutePattern

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--module", type=Path, default=ROOT / "examples/hello/hello.wasm")
    parser.add_argument("--no-pooling", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as cache:
        engine = WasmEngine(EngineSettings(pooling=not args.no_pooling, cache_dir=Path(cache)))
        engine.start()
        module = engine.load_module(args.module.read_bytes(), file_digest(args.module))
        command = WasiCommand(engine, module, "bench")
        executor = WagiExecutor(command, "bench", {})
        match = RoutePattern.parse("/...").match("/hello")
        assert match is not None
        request = HttpRequest(
            "GET",
            "/hello",
            "a=1",
            [("host", "localhost:3000"), ("user-agent", "bench")],
            b"",
            ("127.0.0.1", 5555),
        )
        argv = [b"/hello"]
        env = [(b"REQUEST_METHOD", b"GET"), (b"PATH_INFO", b"/hello")]

        for _ in range(200):  # warm up
            executor.handle(request, match, CollectedResponse())

        raw: list[float] = []
        for _ in range(args.requests):
            t0 = time.perf_counter()
            out = command.run(argv, env, b"")
            raw.append(time.perf_counter() - t0)
        assert out.exit_code == 0 and out.stdout, out

        full: list[float] = []
        for _ in range(args.requests):
            t0 = time.perf_counter()
            sink = CollectedResponse()
            executor.handle(request, match, sink)
            full.append(time.perf_counter() - t0)
        assert sink.response is not None and sink.response.status == 200, sink.response
        engine.close()

    shown = args.module.relative_to(ROOT) if args.module.is_relative_to(ROOT) else args.module
    print(
        f"module: {shown} ({args.module.stat().st_size} bytes), {args.requests} requests each,"
        f" pooling={'off' if args.no_pooling else 'on'}"
    )
    for name, samples in (("WasiCommand.run", raw), ("WagiExecutor.handle", full)):
        p = percentiles(samples)
        print(
            f"{name:22s} p50 {p['p50']:7.1f} us   p99 {p['p99']:7.1f} us   mean {p['mean']:7.1f} us"
        )


if __name__ == "__main__":
    main()
