#!/usr/bin/env python3
"""What OpenTelemetry tracing (and `--log-format json`) costs on the request path (issue 15,
item 2: tracing on with a sampler of 1.0, on vs off in the same run).

Two measurements:
  * in process: the CPU time, on the request's threads, of what one request does with each
    switched on (`observe.spans`: the server span begun and ended on the loop, the guest's
    span around its run), JSON logs' context alone, and with traces off (nothing: the
    trigger checks one attribute that is None);
  * end to end: wrk at c=16 against `wasmlet up` serving a tiny wasi:http component
    (tests/fixtures/components/hello.wasm) and the hello Wagi module, one server with nothing
    configured and one with OTEL_EXPORTER_OTLP_ENDPOINT (sampler always_on) exporting to an
    OTLP/HTTP sink in this process, both up at once and measured back to back in pairs (in
    turn first); each pair's on/off ratio of requests/s and of the servers' CPU time per
    request (all their processes and threads, the exporter's included, from /proc), median
    and range. The sink counts the spans it receives: dropped spans show as fewer than two
    per request.

    .venv/bin/python bench/tracing.py [--duration 4] [--pairs 6] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from _common import free_port, machine, run_wrk, stop, wait_http, wasmlet_cmd
from metrics import APP, cpu_seconds, spread  # the same app and /proc accounting

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable

# One mode per process: tracing and the log context are switched on once per process.
IN_PROCESS = r"""
import gc, os, sys, time
mode = sys.argv[1]
os.environ["OTEL_TRACES_SAMPLER"] = "always_off" if "sampled out" in mode else "always_on"
if mode.startswith("traces and metrics"):
    os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = sys.argv[2]
elif mode.startswith("traces"):
    os.environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = sys.argv[2] + "/v1/traces"
elif mode == "OTLP metrics":
    os.environ["OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"] = sys.argv[2] + "/v1/metrics"
from wasmlet.observe import context, spans, tracing
if mode == "json logs":
    context.enable()
tracing.enable_from_environment()
observer = spans.http("bench")
headers = [(b"host", b"127.0.0.1"), (b"user-agent", b"wrk")]
if mode.endswith("traceparent"):
    headers.append((b"traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"))
scope = {"method": "GET", "scheme": "http", "http_version": "1.1", "query_string": b"",
         "client": ("127.0.0.1", 40000), "headers": headers}
guest = lambda: None
def request():
    if observer is None:  # what the trigger does with everything off
        return
    call = observer.begin(scope, "/component", "/component", "hello",
                          "execute_wasm_component hello")
    call.on_thread(guest)()
    call.end(200, 0.001, None)
n = 20_000
for _ in range(2000):
    request()
gc.collect()
gc.freeze()  # as the server does after startup
t0 = time.thread_time()  # CPU time of this thread: the request's share (loop + guest thread)
for i in range(n):
    request()
    if i % 500 == 0:
        time.sleep(0.001)  # let the exporter's thread drain its queue (not counted here)
print(f"{(time.thread_time() - t0) / n * 1e6:.2f}")
tracing.shutdown()
"""

Popen = subprocess.Popen[bytes]
# (workers, route) -> per pair: req/s off, on, CPU µs per request off, on
Results = dict[tuple[int, str], list[tuple[float, float, float, float]]]


class Sink:
    """An OTLP/HTTP receiver that counts the spans it is sent (and answers 200)."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        self.spans = 0
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path == "/v1/traces":  # (/v1/metrics: answered, not read)
                    request = ExportTraceServiceRequest()
                    request.ParseFromString(body)
                    sink.spans += sum(
                        len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans
                    )
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def in_process(sink: Sink) -> list[tuple[str, str]]:
    rows = []
    modes = (
        "off",
        "json logs",
        "OTLP metrics",
        "traces",
        "traces, sampled out (always_off)",
        "traces and metrics",
        "traces and metrics, with a traceparent",
    )
    for mode in modes:
        out = subprocess.run(
            [PY, "-c", IN_PROCESS, mode, sink.url],
            check=True,
            capture_output=True,
            text=True,
            cwd=ROOT,
        ).stdout
        rows.append((mode, out.strip()))
    return rows


def serve(app: Path, port: int, workers: int, cache: Path, sink: str | None) -> Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    if sink is not None:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = sink
        env["OTEL_TRACES_SAMPLER"] = "always_on"  # a sampler of 1.0
    return subprocess.Popen(
        wasmlet_cmd(app, port, workers, cache),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
        env=env,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=4, help="seconds per wrk run")
    parser.add_argument("--pairs", type=int, default=6, help="off/on pairs per case")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--in-process", action="store_true", help="only the in-process part")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")

    sink = Sink()
    print(f"machine: {machine()}")
    print(f"load before: {Path('/proc/loadavg').read_text().split()[:3]}")
    print("\nin process, CPU time per request on its threads\n\n| switched on | µs |\n|---|---|")
    for mode, us in in_process(sink):
        print(f"| {mode} | {us} |")
    if args.in_process:
        return

    work = Path(tempfile.mkdtemp(prefix="wasmlet-bench-tracing-"))
    results: Results = {}
    sent: dict[int, tuple[int, int]] = {}  # workers -> (requests answered, spans received)
    try:
        app = work / "app"
        app.mkdir()
        (app / "spin.toml").write_text(
            APP.format(
                component=ROOT / "tests/fixtures/components/hello.wasm",
                wagi=ROOT / "examples/hello/hello.wasm",
            )
        )
        cache = work / "cache"
        for workers in args.workers:
            sent[workers] = paired(app, cache, workers, args, results, sink)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"\nload after: {Path('/proc/loadavg').read_text().split()[:3]}")
    for workers, (answered, spans) in sent.items():
        print(
            f"workers {workers}: {answered} requests answered with tracing on, {spans} spans "
            f"received ({spans / max(answered, 1):.2f} per request; 2 = none dropped)"
        )
    print(
        f"\nwrk c={args.connections}, {args.duration} s a run, {args.pairs} pairs (off and on "
        "back to back, in turn first); on/off per pair: median [min, max]\n"
    )
    print("| workers | route | req/s off | req/s on | req/s on/off | CPU µs/request off | on "
          "| CPU on/off |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for (workers, route), runs in results.items():
        print(
            f"| {workers} | {route} | {statistics.median(r[0] for r in runs):.0f} | "
            f"{statistics.median(r[1] for r in runs):.0f} | "
            f"{spread([r[1] / r[0] for r in runs])} | "
            f"{statistics.median(r[2] for r in runs):.0f} | "
            f"{statistics.median(r[3] for r in runs):.0f} | "
            f"{spread([r[3] / r[2] for r in runs])} |"
        )


def paired(
    app: Path, cache: Path, workers: int, args: argparse.Namespace, results: Results, sink: Sink
) -> tuple[int, int]:
    """Both servers up at once; wrk against each in turn, `args.pairs` times per route.
    Returns the requests the traced server answered (after warm-up) and the spans received."""
    ports = {False: free_port(), True: free_port()}
    procs = {on: serve(app, ports[on], workers, cache, sink.url if on else None) for on in ports}
    start = sink.spans
    answered = 0
    try:
        for route in ("/component", "/wagi"):
            for on in ports:
                wait_http(f"http://127.0.0.1:{ports[on]}{route}")
                warm = run_wrk(f"http://127.0.0.1:{ports[on]}{route}", 4, 2)
                if on:
                    answered += 1 + round(warm["rps"] * 2)
            for i in range(args.pairs):
                got: dict[bool, tuple[float, float]] = {}
                for on in (False, True) if i % 2 == 0 else (True, False):
                    cpu = cpu_seconds(procs[on].pid)
                    result = run_wrk(
                        f"http://127.0.0.1:{ports[on]}{route}", args.connections, args.duration
                    )
                    cpu = cpu_seconds(procs[on].pid) - cpu
                    assert result["errors"] == 0, result
                    got[on] = (result["rps"], cpu / (result["rps"] * args.duration) * 1e6)
                    if on:
                        answered += round(result["rps"] * args.duration)
                results.setdefault((workers, route), []).append(
                    (got[False][0], got[True][0], got[False][1], got[True][1])
                )
    finally:
        for proc in procs.values():
            stop(proc)  # the workers flush what they still hold
    time.sleep(0.5)
    return answered, sink.spans - start


if __name__ == "__main__":
    main()
