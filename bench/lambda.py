#!/usr/bin/env python3
"""The Lambda adapters: a ported Lambda hello against the same logic written directly on the
Spin SDK, same run, in Python and in JavaScript; and the time to port and build a 3-function
SAM project in each.

1. Port + build: a SAM project with three functions (hello, a path parameter, a POST echo) is
   written, ported with `wasmlet port aws-sam` and built with `wasmlet build`, then built
   again unchanged (nothing to do). Python: componentize-py 0.18.0 and spin-sdk 3.4.1 from the
   tools cache, guests/build/wasmlet-cache (installed on its first use); JavaScript: the
   lambda-js build tools (`npm install`, esbuild, j2w).
2. Per request, the ported hello (`GET /hello`: `{"statusCode": 200, "headers": {...},
   "body": "Hello, world!"}`) against a component that returns the same response directly,
   built with the same toolchain (Python: the Spin SDK's `handle_request`; JavaScript: the
   http-js template's `fetch` event listener):
   - in process: requests through the HTTP executor (new store and instance, the guest,
     the response), both apps in one process, batches alternating between them (the median
     of the batches' p50s);
   - end to end: wrk at concurrency 1 and 16 against `wasmlet up --workers 1`, rounds
     alternating between the two apps (medians of the rounds).
   The ratios lambda/direct are printed.

    .venv/bin/python bench/lambda.py [--lang python|js|all] [--duration 10] [--rounds 3]
                                     [--batches 10] [--work DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

from _common import free_port, machine, run_wrk, stop, wait_http, wasmlet_cmd

ROOT = Path(__file__).resolve().parent.parent
TOOLS_CACHE = ROOT / "guests" / "build" / "wasmlet-cache"
TOOLS = ROOT / "src/wasmlet/templates/lambda-python/content/dot-wasmlet/lambda/requirements.txt"

TEMPLATE = """\
Transform: AWS::Serverless-2016-10-31
Globals:
  Function:
    Runtime: python3.12
    Timeout: 10
Resources:
  HelloFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: hello/
      Handler: app.lambda_handler
      Events:
        Hello:
          Type: HttpApi
          Properties:
            Path: /hello
            Method: get
  ItemFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: item/
      Handler: app.lambda_handler
      Events:
        Get:
          Type: HttpApi
          Properties:
            Path: /items/{id}
            Method: get
  EchoFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: echo/
      Handler: app.lambda_handler
      Events:
        Post:
          Type: Api
          Properties:
            Path: /echo
            Method: post
"""
HELLO = """\
def lambda_handler(event, context):
    return {
        "statusCode": 200,
        "headers": {"content-type": "text/plain"},
        "body": "Hello, world!",
    }
"""
ITEM = """\
import json


def lambda_handler(event, context):
    return {"statusCode": 200, "body": json.dumps({"id": event["pathParameters"]["id"]})}
"""
ECHO = """\
def lambda_handler(event, context):
    return {"statusCode": 200, "body": event["body"] or ""}
"""
DIRECT = """\
from spin_sdk import http
from spin_sdk.http import Request, Response


class IncomingHandler(http.IncomingHandler):
    def handle_request(self, request: Request) -> Response:
        return Response(200, {"content-type": "text/plain"}, b"Hello, world!")
"""
JS_TEMPLATE = TEMPLATE.replace("python3.12", "nodejs22.x").replace(
    "Handler: app.lambda_handler", "Handler: app.handler"
)
JS_HELLO = """\
export const handler = async () => ({
    statusCode: 200,
    headers: { 'content-type': 'text/plain' },
    body: 'Hello, world!',
});
"""
JS_ITEM = """\
export const handler = async (event) => ({
    statusCode: 200,
    body: JSON.stringify({ id: event.pathParameters.id }),
});
"""
JS_ECHO = """\
export const handler = async (event) => ({ statusCode: 200, body: event.body ?? '' });
"""
JS_DIRECT = """\
addEventListener('fetch', (event) => {
    event.respondWith(
        new Response('Hello, world!', { headers: { 'content-type': 'text/plain' } }),
    );
});
"""
DIRECT_MANIFEST = """\
spin_manifest_version = 2
[application]
name = "direct"
[[trigger.http]]
route = "/hello"
component = "direct"
[component.direct]
source = "app.wasm"
[component.direct.build]
command = "componentize-py -w spin-http componentize app -o app.wasm"
watch = ["*.py", "requirements.txt"]
"""


def _env() -> dict[str, str]:
    keep = [
        d
        for d in os.environ.get("PATH", "").split(os.pathsep)
        if d and not (Path(d) / "componentize-py").exists()
    ]
    return {**os.environ, "WASMLET_CACHE_DIR": str(TOOLS_CACHE), "PATH": os.pathsep.join(keep)}


def _wasmlet(*args: str, cwd: Path) -> float:
    started = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-m", "wasmlet.cli", *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        sys.exit(f"wasmlet {' '.join(args)} failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}")
    return time.monotonic() - started


def write_projects(work: Path) -> tuple[Path, Path]:
    sam = work / "sam"
    for name, code in (("hello", HELLO), ("item", ITEM), ("echo", ECHO)):
        (sam / name).mkdir(parents=True, exist_ok=True)
        (sam / name / "app.py").write_text(code)
    (sam / "template.yaml").write_text(TEMPLATE)
    direct = work / "direct"
    direct.mkdir(parents=True, exist_ok=True)
    (direct / "app.py").write_text(DIRECT)
    (direct / "spin.toml").write_text(DIRECT_MANIFEST)
    shutil.copy(TOOLS, direct / "requirements.txt")  # the same componentize-py and spin-sdk
    return sam, direct


def write_js_projects(work: Path) -> tuple[Path, Path]:
    sam = work / "sam-js"
    for name, code in (("hello", JS_HELLO), ("item", JS_ITEM), ("echo", JS_ECHO)):
        (sam / name).mkdir(parents=True, exist_ok=True)
        (sam / name / "app.mjs").write_text(code)
    (sam / "template.yaml").write_text(JS_TEMPLATE)
    if not (work / "direct-js").is_dir():  # the http-js template: the same JS toolchain
        _wasmlet("new", "http-js", "direct-js", "--route", "/hello", cwd=work)
    (work / "direct-js" / "src" / "index.js").write_text(JS_DIRECT)
    return sam, work / "direct-js"


def measure(app: Path, duration: int, cache: Path) -> dict[int, dict[str, float]]:
    port = free_port()
    proc = subprocess.Popen(
        wasmlet_cmd(app, port, 1, cache), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        url = f"http://127.0.0.1:{port}/hello"
        wait_http(url, timeout=600)
        run_wrk(url, 4, 2)  # warm up
        return {c: run_wrk(url, c, duration) for c in (1, 16)}
    finally:
        stop(proc)


def in_process(apps: dict[str, tuple[Path, str]], batches: int, size: int) -> dict[str, float]:
    """The median over alternating batches of each app's p50 per request, in ms."""
    from wasmlet.engine import EngineSettings
    from wasmlet.executors import CollectedResponse, HttpRequest, http_executor
    from wasmlet.loader import load_app
    from wasmlet.running import AppOptions, build_app
    from wasmlet.trigger.http.router import RoutePattern

    match = RoutePattern.parse("/hello").match("/hello")
    assert match is not None
    request = HttpRequest("GET", "/hello", "", [("host", "localhost:3000")], b"", ("127.0.0.1", 1))
    executors = {}
    running = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, (app_dir, component) in apps.items():
            opts = AppOptions(
                state_dir=Path(tmp) / label, engine=EngineSettings(cache_dir=Path(tmp) / "cache")
            )
            app = build_app(load_app(app_dir), opts)
            app.start()
            running.append(app)
            executors[label] = http_executor(app.runtime, "bench", component, {})
            for _ in range(100):  # warm up
                sink = CollectedResponse()
                executors[label].handle(request, match, sink)
                assert sink.response is not None and sink.response.status == 200
        p50s: dict[str, list[float]] = {label: [] for label in apps}
        for _ in range(batches):
            for label, executor in executors.items():
                samples = []
                for _ in range(size):
                    t0 = time.perf_counter()
                    executor.handle(request, match, CollectedResponse())
                    samples.append(time.perf_counter() - t0)
                p50s[label].append(sorted(samples)[len(samples) // 2] * 1000)
        for app in running:
            app.close()
    return {label: statistics.median(values) for label, values in p50s.items()}


def compare(label: str, sam: Path, direct: Path, args: argparse.Namespace, work: Path) -> None:
    """Port and build `sam`, build `direct`, and compare them per request."""
    port_s = _wasmlet("port", "aws-sam", cwd=sam)
    build_s = _wasmlet("build", cwd=sam)
    warm_s = _wasmlet("build", cwd=sam)
    _wasmlet("build", cwd=direct)
    print(
        f"\n{label}: 3-function SAM project: port {port_s:.2f}s, build {build_s:.1f}s "
        f"(3 components), warm build {warm_s:.2f}s"
    )

    apps = {"lambda": (sam, "hello-function"), "direct": (direct, direct_component(direct))}
    inproc = in_process(apps, args.batches, args.batch)
    print(
        f"{label}: in process ({args.batches} alternating batches of {args.batch} requests): p50 "
        f"lambda {inproc['lambda']:.2f} ms, direct {inproc['direct']:.2f} ms: the adapter "
        f"costs {inproc['lambda'] / inproc['direct']:.2f}x"
    )

    results: dict[str, dict[int, list[dict[str, float]]]] = {"lambda": {}, "direct": {}}
    for _ in range(args.rounds):
        for kind, app in (("lambda", sam), ("direct", direct)):
            for c, r in measure(app, args.duration, work / "cache").items():
                results[kind].setdefault(c, []).append(r)
    print(f"\n{label}: | app | c | req/s (median of rounds) | p50 ms | p99 ms |")
    print("|---|---|---|---|---|")
    med: dict[tuple[str, int], dict[str, float]] = {}
    for kind, by_c in results.items():
        for c, runs in sorted(by_c.items()):
            m = {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50_ms", "p99_ms")}
            med[(kind, c)] = m
            print(f"| {kind} | {c} | {m['rps']:.0f} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} |")
    for c in (1, 16):
        lam, dir_ = med[("lambda", c)], med[("direct", c)]
        print(
            f"{label}: c={c}: the Lambda adapter costs {dir_['rps'] / lam['rps']:.2f}x in "
            f"requests/s and {lam['p50_ms'] / dir_['p50_ms']:.2f}x in p50 (direct Spin SDK = 1)"
        )


def direct_component(app: Path) -> str:
    """The one component of a direct app's spin.toml."""
    return next(iter(tomllib.loads((app / "spin.toml").read_text())["component"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lang", choices=("python", "js", "all"), default="all")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating wrk rounds per app")
    parser.add_argument("--batches", type=int, default=10, help="in-process batches per app")
    parser.add_argument("--batch", type=int, default=200, help="requests per in-process batch")
    parser.add_argument("--work", type=Path, help="work directory (default: a new temporary one)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    print(f"machine: {machine()}")
    print(f"load before: {os.getloadavg()[0]:.2f} (1-minute average)")
    work = args.work or Path(tempfile.mkdtemp(prefix="wasmlet-bench-lambda-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.lang in ("python", "all"):
        compare("Python", *write_projects(work), args, work)
    if args.lang in ("js", "all"):
        compare("JavaScript", *write_js_projects(work), args, work)
    print(f"\nload after: {os.getloadavg()[0]:.2f} (1-minute average)")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
