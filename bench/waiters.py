#!/usr/bin/env python3
"""Guests waiting in host calls: how wasmlet keeps them from starving other requests.

A guest that sleeps, or waits for a socket, a database or a slow client, keeps its thread
(wasmtime-py cannot suspend a call into Wasm). Issue 18 asked which defence to take, and to
measure it. Four strategies, each a `wasmlet up` (one worker, `--threads 8`) serving the
test guests (tests/fixtures: a Wagi `hello`, a Wagi guest that sleeps in `poll_oneoff`, a
component that blocks on a 5 s pollable, a component `hello`):

* `fixed`: a fixed pool of 8 threads (`--max-waiting 0`), what wasmlet had before;
* `fixed-56`: a fixed pool big enough for the waiters (`--threads 56 --max-waiting 0`);
* `per-route`: the fixed pool of 8 and at most `--route-bound` requests per route in the
  pool, the others queued on the event loop without a thread (patched into the trigger by
  this script: the alternative, not something wasmlet ships);
* `grow`: wasmlet's pool (`--threads 8`, default `--max-waiting 64`): a thread inside a host
  wait does not count against the 8, and queued requests start on further threads.

Two scenarios per strategy:

1. load: wrk alone on `/hello` at `-c 64` (no guest waits): requests/s, p50 and p99, peak
   threads and RSS: what each strategy costs when nothing waits;
2. sleepers: `--sleepers` Wagi and as many component clients, each asking again as soon as
   its 5 s sleep is answered, while wrk (`-c 8`, 1 thread) asks for the Wagi `/hello`: its
   requests/s and p99, how many sleeps were answered while wrk ran, the peak of threads and
   RSS.

    .venv/bin/python bench/waiters.py [--duration 15] [--sleepers 24] [--route-bound 3]
        [--strategies fixed,fixed-56,per-route,grow] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _common import free_port, machine, run_wrk, stop, wait_http

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
SLEEP_MS = 5000

APP = f"""
spin_manifest_version = 2
[application]
name = "waiters"

[[trigger.http]]
route = "/m/..."
component = "misbehave"
executor = {{ type = "wagi" }}

[[trigger.http]]
route = "/hello"
component = "hello"
executor = {{ type = "wagi" }}

[[trigger.http]]
route = "/sleep"
component = "sleep"

[component.misbehave]
source = "{FIXTURES / "wagi" / "misbehave.wasm"}"

[component.hello]
source = "{FIXTURES / "wagi" / "hello.wasm"}"

[component.sleep]
source = "{FIXTURES / "components" / "sleep.wasm"}"
"""

STRATEGIES: dict[str, list[str]] = {
    "fixed": ["--threads", "8", "--max-waiting", "0"],
    "fixed-56": ["--threads", "56", "--max-waiting", "0"],
    "per-route": ["--threads", "8", "--max-waiting", "0"],
    "grow": ["--threads", "8"],
}


# -- the per-route alternative (in the server process) ------------------------------------------


def serve_per_route(bound: int, argv: list[str]) -> int:
    """`wasmlet ARGV` with at most `bound` requests per route in the guest pool; the others
    wait on the event loop (an asyncio.Semaphore per route), holding no thread."""
    import asyncio
    from typing import Any

    from wasmlet.cli import main
    from wasmlet.trigger.http.app import HttpTrigger

    bounds: dict[str, asyncio.Semaphore] = {}
    call, stream = HttpTrigger._call, HttpTrigger._stream

    def bound_of(match: Any) -> asyncio.Semaphore:
        return bounds.setdefault(match.route, asyncio.Semaphore(bound))

    async def bounded_call(self: Any, handler: Any, request: Any, match: Any, *rest: Any) -> Any:
        async with bound_of(match):
            return await call(self, handler, request, match, *rest)

    async def bounded_stream(self: Any, handler: Any, request: Any, match: Any, *rest: Any) -> None:
        async with bound_of(match):
            await stream(self, handler, request, match, *rest)

    HttpTrigger._call = bounded_call  # type: ignore[method-assign,assignment]
    HttpTrigger._stream = bounded_stream  # type: ignore[method-assign,assignment]
    return main(argv)


# -- measuring -------------------------------------------------------------------------------


def _tree(pid: int) -> list[int]:
    pids, i = [pid], 0
    while i < len(pids):
        try:
            for task in os.listdir(f"/proc/{pids[i]}/task"):
                with open(f"/proc/{pids[i]}/task/{task}/children") as f:
                    pids += [int(p) for p in f.read().split()]
        except OSError:
            pass
        i += 1
    return pids


def _status(pid: int) -> tuple[int, int]:
    """Threads and RSS (KiB) of a process and its children."""
    threads = rss = 0
    for p in _tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("Threads:"):
                        threads += int(line.split()[1])
                    elif line.startswith("VmRSS:"):
                        rss += int(line.split()[1])
        except OSError:
            pass
    return threads, rss


class Sampler:
    """Peak threads and RSS of a server, sampled every 0.2 s."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.threads = self.rss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            threads, rss = _status(self.pid)
            self.threads, self.rss = max(self.threads, threads), max(self.rss, rss)

    def close(self) -> tuple[int, float]:
        self._stop.set()
        self._thread.join()
        return self.threads, self.rss / 1024


class Sleepers:
    """Clients each asking for a 5 s sleep, again as soon as it is answered."""

    def __init__(self, port: int, paths: list[str]) -> None:
        self.answered = self.failed = 0
        self._port = port
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(p,)) for p in paths]
        for t in self._threads:
            t.start()

    def _run(self, path: str) -> None:
        while not self._stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", self._port), timeout=60) as s:
                    s.sendall(
                        f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
                    )
                    data = b""
                    while chunk := s.recv(65536):
                        data += chunk
                ok = data.startswith(b"HTTP/1.1 200 ")
            except OSError:
                ok = False
            with self._lock:
                if ok:
                    self.answered += 1
                else:
                    self.failed += 1

    def close(self) -> tuple[int, int]:
        self._stop.set()
        for t in self._threads:
            t.join()
        return self.answered, self.failed


def start(strategy: str, app: Path, port: int, cache: Path, bound: int) -> subprocess.Popen[bytes]:
    args = [
        "up",
        "-f",
        str(app),
        "--listen",
        f"127.0.0.1:{port}",
        "--cache-dir",
        str(cache),
        "--log-level",
        "error",
        "--workers",
        "1",  # the strategies are per worker
        *STRATEGIES[strategy],
    ]
    if strategy == "per-route":
        cmd = [sys.executable, __file__, "--serve-per-route", str(bound), "--", *args]
    else:
        cmd = [sys.executable, "-m", "wasmlet.cli", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{port}/hello")
    for path in ("/m/?mode=hello", "/sleep"):  # warm: instantiate each guest once
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            while s.recv(65536):
                pass
    return proc


def sleepers_run(port: int, pid: int, sleepers: int, duration: int) -> dict[str, float]:
    sampler = Sampler(pid)
    paths = [f"/m/?mode=sleep&ms={SLEEP_MS}"] * sleepers + ["/sleep"] * sleepers
    clients = Sleepers(port, paths)
    time.sleep(1.0)  # all asked
    before = clients.answered
    wrk = run_wrk(f"http://127.0.0.1:{port}/hello", 8, duration, timeout="10s")
    during = clients.answered - before  # sleeps answered while wrk ran
    _, failed = clients.close()
    threads, rss = sampler.close()
    return {**wrk, "sleeps": during, "sleep_failed": failed, "threads": threads, "rss": rss}


def load_run(port: int, pid: int, duration: int) -> dict[str, float]:
    sampler = Sampler(pid)
    wrk = run_wrk(f"http://127.0.0.1:{port}/hello", 64, duration, timeout="10s")
    threads, rss = sampler.close()
    return {**wrk, "threads": threads, "rss": rss}


def _row(strategy: str, scenario: str, r: dict[str, float]) -> str:
    sleeps = f"{r['sleeps']:.0f}" if "sleeps" in r else "-"
    answered = r["rps"] >= 0.5  # else wrk's latencies are not there (or not meaningful)
    p50 = f"{r['p50_ms']:.1f}" if answered else "-"
    p99 = f"{r['p99_ms']:.1f}" if answered else "-"
    return (
        f"{strategy:<10} {scenario:<9} {r['rps']:>7.0f} {p50:>8} "
        f"{p99:>8} {r['errors']:>7.0f} {r['timeouts']:>4.0f} {sleeps:>6} "
        f"{r['threads']:>7.0f} {r['rss']:>7.0f}"
    )


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--serve-per-route":
        return serve_per_route(int(sys.argv[2]), sys.argv[4:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--sleepers", type=int, default=24, help="of each kind (Wagi, component)")
    parser.add_argument("--route-bound", type=int, default=3)
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--scenarios", default="load,sleepers")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run every strategy this many times, interleaved; the medians are printed at the end",
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="wasmlet-waiters-"))
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    try:
        app = work / "app"
        app.mkdir()
        (app / "spin.toml").write_text(APP)
        cache = work / "cache"
        print(f"# {machine()}")
        print(
            f"# {args.sleepers} Wagi + {args.sleepers} component sleepers ({SLEEP_MS} ms each), "
            f"{args.duration} s per run, per-route bound {args.route_bound}"
        )
        header = (
            f"{'strategy':<10} {'scenario':<9} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} "
            f"{'non-2xx':>7} {'t/o':>4} {'sleeps':>6} {'threads':>7} {'RSS MB':>7}"
        )
        print(header)
        for _ in range(args.rounds):
            for strategy in args.strategies.split(","):
                port = free_port()
                proc = start(strategy, app, port, cache, args.route_bound)
                try:
                    for scenario in args.scenarios.split(","):
                        if scenario == "load":
                            r = load_run(port, proc.pid, args.duration)
                        else:
                            r = sleepers_run(port, proc.pid, args.sleepers, args.duration)
                        results.setdefault((strategy, scenario), []).append(r)
                        print(_row(strategy, scenario, r), flush=True)
                finally:
                    stop(proc)
        if args.rounds > 1:
            print(f"# medians of {args.rounds} rounds")
            print(header)
            for (strategy, scenario), runs in results.items():
                median = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
                print(_row(strategy, scenario, median))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
