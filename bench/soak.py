#!/usr/bin/env python3
"""Soak: `wasmlet up` under slow clients, sleeping guests and faults, against itself unloaded.

One server (`wasmlet up`, one worker, default limits) serves a Wagi `hello` (the normal
request), a Wagi guest that sleeps in `poll_oneoff`, Wagi and component guests that fail
(trap, memory bomb past `--max-instance-memory`, non-zero exit, no response, a loop stopped
by the request timeout) and a component that echoes its request body. In one run, `--rounds`
times, alternating so that the shared machine's noise falls on both alike:

1. quiet: the normal load alone: GET /hello `--rate` times a second on `--connections`
   keep-alive connections for `--duration` seconds, from a process of its own; latency counts
   from when a request was due (no coordinated omission);
2. attacked: the same load while, all the time,
   * `--slow-headers` clients trickle a request head one byte a second (cut off with 408 by
     the header timeout, they reconnect at once),
   * `--slow-bodies` clients send a head with `content-length: 1000000` to the component and
     then one body byte a second (cut off with 408 by the body read timeout, they reconnect),
   * `--sleepers` clients keep a guest sleeping 2 s each,
   * one client asks for a fault every `--fault-every` s (0.25), and, with `--loop-every`,
     for a guest that loops until the request timeout (3 s) every so many seconds: off by
     default, as such a guest takes a core and, by the run gate's design, adds up to its
     patience (50 ms) to every request meanwhile;

and a last quiet run. The attackers run on uvloop in this process, the load in another.

It prints each run's p50, p99 and worst latency, the server's and the attackers' CPU, the
server's RSS and open files (sampled every second), then p50 and p99 over all quiet and over
all attacked runs and their ratio, what the attackers were answered, and whether the server
log has a traceback or "Too many open files". Exit status 1 when the target (attacked p99
<= 50 ms, no errors, no descriptor exhaustion) is not met.

    .venv/bin/python bench/soak.py [--duration 30] [--rounds 3] [--rate 200] [--fault-every 0.25]
        [--slow-headers 1000] [--slow-bodies 100] [--sleepers 16] [--loop-every 0]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import itertools
import multiprocessing
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import uvloop
from _common import free_port, machine, stop, wait_http, wasmlet_cmd

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
TARGET_P99_MS = 50.0
SLEEP_MS = 2000
REQUEST_TIMEOUT = "3"  # > SLEEP_MS; also how long a looping guest burns a core

APP = """spin_manifest_version = 2
[application]
name = "soak"
[[trigger.http]]
route = "/hello"
component = "hello"
executor = {{ type = "wagi" }}
[[trigger.http]]
route = "/sleep"
component = "misbehave"
executor = {{ type = "wagi" }}
[[trigger.http]]
route = "/fault"
component = "testbed"
executor = {{ type = "wagi" }}
[[trigger.http]]
route = "/no-response"
component = "no-response"
[[trigger.http]]
route = "/echo"
component = "echo"
[component.hello]
source = "{wagi}/hello.wasm"
[component.misbehave]
source = "{wagi}/misbehave.wasm"
[component.testbed]
source = "{wagi}/testbed.wasm"
[component.no-response]
source = "{components}/no-response.wasm"
[component.echo]
source = "{components}/echo.wasm"
"""

FAULTS = [
    "/fault?mode=trap",
    "/fault?mode=oom",  # a memory bomb, stopped by --max-instance-memory
    "/fault?mode=exit&code=3",
    "/no-response",
]


def status_of(data: bytes) -> str:
    """The status code of a response's first bytes, or what happened instead."""
    if not data:
        return "closed"
    m = re.match(rb"HTTP/1\.1 (\d{3}) ", data)
    return m.group(1).decode() if m else "garbage"


class Attackers:
    """The hostile and the heavy clients, on an asyncio loop of their own thread."""

    def __init__(self, port: int, args: argparse.Namespace) -> None:
        self.port, self.args = port, args
        self.answers: dict[str, Counter[str]] = {
            k: Counter() for k in ("slow-header", "slow-body", "sleeper", "fault", "loop")
        }
        self.open: Counter[str] = Counter()  # connections now open, by kind
        self.stopping = False
        # The slow connections, in ten groups: one group gets its byte every 0.1 s.
        self._trickling: list[set[asyncio.StreamWriter]] = [set() for _ in range(10)]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._main_task: asyncio.Task[None] | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.stopping = True
        if self._loop is not None and self._main_task is not None:
            self._loop.call_soon_threadsafe(self._main_task.cancel)
        self._thread.join(30)

    def _run(self) -> None:
        # uvloop, as the server: the attackers should cost little of the shared CPU.
        with contextlib.suppress(asyncio.CancelledError):
            uvloop.run(self._main())

    async def _main(self) -> None:
        self._loop, self._main_task = asyncio.get_running_loop(), asyncio.current_task()
        a = self.args
        slow_head = b"GET /hello HTTP/1.1\r\nHost: x\r\nX-Slow: "
        tasks = [self._slow(slow_head, "slow-header") for _ in range(a.slow_headers)]
        body_head = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n"
        tasks += [self._slow(body_head, "slow-body") for _ in range(a.slow_bodies)]
        tasks += [self._sleeper() for _ in range(a.sleepers)]
        tasks += [self._faults(), self._loops(), self._trickle()]
        await asyncio.gather(*tasks)

    async def _connect(self, kind: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        while True:
            try:
                streams = await asyncio.open_connection("127.0.0.1", self.port)
                self.open[kind] += 1
                return streams
            except OSError as e:
                self.answers[kind][f"connect: {e.strerror}"] += 1
                await asyncio.sleep(1.0)

    async def _slow(self, head: bytes, kind: str) -> None:
        """Send `head`, then a byte a second (`_trickle`) until answered; again, until
        stopped."""
        await asyncio.sleep(random.uniform(0, 5))  # ramp up
        group = self._trickling[random.randrange(len(self._trickling))]
        while not self.stopping:
            reader, writer = await self._connect(kind)
            try:
                writer.write(head)
                group.add(writer)
                self.answers[kind][status_of(await reader.read(64))] += 1
            except OSError:
                self.answers[kind]["reset"] += 1
            finally:
                group.discard(writer)
                self.open[kind] -= 1
                writer.close()

    async def _trickle(self) -> None:
        """One byte a second on every slow connection: a group every 0.1 s."""
        for tick in itertools.count():
            await asyncio.sleep(0.1)
            for writer in self._trickling[tick % len(self._trickling)]:
                if not writer.is_closing():
                    writer.write(b"a")

    async def _ask(self, kind: str, path: str) -> None:
        reader, writer = await self._connect(kind)
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            self.answers[kind][status_of(await asyncio.wait_for(reader.read(64), 60))] += 1
        except (OSError, TimeoutError):
            self.answers[kind]["reset or timeout"] += 1
        finally:
            self.open[kind] -= 1
            writer.close()

    async def _sleeper(self) -> None:
        await asyncio.sleep(random.uniform(0, 2))
        while not self.stopping:
            await self._ask("sleeper", f"/sleep?mode=sleep&ms={SLEEP_MS}")

    async def _faults(self) -> None:
        i = 0
        while self.args.fault_every > 0 and not self.stopping:
            await self._ask("fault", FAULTS[i % len(FAULTS)])
            i += 1
            await asyncio.sleep(self.args.fault_every)

    async def _loops(self) -> None:
        every = self.args.loop_every
        while every > 0 and not self.stopping:
            await asyncio.sleep(every)
            await self._ask("loop", "/fault?mode=loop")


class Sampler:
    """The server's RSS (kB) and open files, every second."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[tuple[str, int, int]] = []  # (phase, rss kB, fds)
        self.phase = "start"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            try:
                rss = next(
                    int(line.split()[1])
                    for line in Path(f"/proc/{self.pid}/status").read_text().splitlines()
                    if line.startswith("VmRSS:")
                )
                fds = len(os.listdir(f"/proc/{self.pid}/fd"))
            except (OSError, StopIteration):
                return
            self.samples.append((self.phase, rss, fds))

    def cpu_seconds(self) -> float:
        """The server's CPU time so far (user and system)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_range_mb(self, phase: str) -> tuple[float, float]:
        """The phase's first and last RSS samples, in MB."""
        rss = [rss for p, rss, _ in self.samples if p == phase]
        return rss[0] / 1024, rss[-1] / 1024

    def rss_mb(self, phase: str) -> float:
        """The phase's last RSS sample, in MB."""
        return [rss for p, rss, _ in self.samples if p == phase][-1] / 1024


def _load(port: int, rate: float, duration: float, connections: int, out: Any) -> None:
    """In a process of its own: GET /hello `rate` times a second for `duration` seconds on
    `connections` keep-alive connections. A request's latency counts from when it was due,
    so a server that falls behind is not hidden by the client waiting for it (no
    coordinated omission). Puts (latencies in s, errors) on `out`."""
    total = int(rate * duration)
    start = time.monotonic() + 0.2
    lock = threading.Lock()
    issued = 0
    latencies: list[float] = []
    errors: Counter[str] = Counter()

    def client() -> None:
        nonlocal issued
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while True:
            with lock:
                i, issued = issued, issued + 1
            if i >= total:
                break
            due = start + i / rate
            time.sleep(max(0.0, due - time.monotonic()))
            try:
                conn.request("GET", "/hello")
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException) as e:
                errors[type(e).__name__] += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                continue
            if response.status == 200:
                latencies.append(time.monotonic() - due)
            else:
                errors[str(response.status)] += 1
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put((latencies, dict(errors)))


def load(port: int, rate: float, duration: float, connections: int) -> dict[str, Any]:
    """`_load` in a spawned process (away from the attackers' GIL): its figures, in ms."""
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=_load, args=(port, rate, duration, connections, out))
    proc.start()
    latencies, errors = out.get(timeout=duration + 120)
    proc.join()
    return {**percentiles_ms(latencies), "errors": errors, "latencies": latencies}


def percentiles_ms(latencies: list[float]) -> dict[str, Any]:
    s = sorted(latencies)

    def at(q: float) -> float:
        return s[min(len(s) - 1, int(len(s) * q))] * 1000 if s else float("nan")

    return {"n": len(s), "p50": at(0.5), "p99": at(0.99), "max": at(1.0)}


def _own_cpu() -> float:
    """This process's CPU time: the attackers' (the load runs in a child of its own)."""
    t = os.times()
    return t.user + t.system


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def show(name: str, r: dict[str, Any], rss_mb: float, fds: int) -> None:
    errors = sum(r["errors"].values())
    print(
        f"  {name:<12} {r['n']:>6} ok  p50 {r['p50']:>7.2f} ms  p99 {r['p99']:>7.2f} ms"
        f"  max {r['max']:>7.1f} ms  errors {errors:>3}  RSS {rss_mb:>6.1f} MB  fds {fds:>5}"
        f"  CPU: server {r['server_cpu']:>4.0%} attackers {r['attackers_cpu']:>4.0%}"
        f"  load {loadavg().split()[0]}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=30, help="seconds per load run")
    parser.add_argument("--rounds", type=int, default=3, help="load runs under attack")
    parser.add_argument("--rate", type=float, default=200, help="normal requests a second")
    parser.add_argument("--connections", type=int, default=16, help="of the normal load")
    parser.add_argument("--slow-headers", type=int, default=1000)
    parser.add_argument("--slow-bodies", type=int, default=100)
    parser.add_argument("--sleepers", type=int, default=16)
    parser.add_argument("--fault-every", type=float, default=0.25, help="seconds; 0 = none")
    parser.add_argument("--loop-every", type=float, default=0.0, help="seconds; 0 = none")
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # the attackers' sockets
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    print(f"machine: {machine()}")
    print(f"load average before: {loadavg()}")
    tmp = Path(tempfile.mkdtemp(prefix="wasmlet-soak-"))
    try:
        app = tmp / "app"
        app.mkdir()
        (app / "spin.toml").write_text(
            APP.format(wagi=FIXTURES / "wagi", components=FIXTURES / "components")
        )
        port = free_port()
        flags = ["--log-level", "warning", "--request-timeout", REQUEST_TIMEOUT]
        flags += ["--max-instance-memory", "64Mi"]
        print("server: wasmlet up, 1 worker, otherwise default limits, " + " ".join(flags))
        log = (tmp / "server.log").open("w")
        cmd = wasmlet_cmd(app, port, 1, tmp / "cache") + flags
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            return run(args, port, proc, tmp / "server.log")
        finally:
            stop(proc)
            log.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(args: argparse.Namespace, port: int, proc: subprocess.Popen[bytes], log: Path) -> int:
    wait_http(f"http://127.0.0.1:{port}/hello")
    limits = Path(f"/proc/{proc.pid}/limits").read_text()
    fd_limit = re.search(r"Max open files\s+(\d+)", limits)
    print(f"server open-file limit: {fd_limit.group(1) if fd_limit else '?'}")
    sampler = Sampler(proc.pid)
    sampler.start()
    load(port, args.rate, 3, args.connections)  # warm up

    def measure(phase: str) -> dict[str, Any]:
        sampler.phase = phase
        server_cpu, own_cpu, t0 = sampler.cpu_seconds(), _own_cpu(), time.monotonic()
        r = load(port, args.rate, args.duration, args.connections)
        elapsed = time.monotonic() - t0
        r["server_cpu"] = (sampler.cpu_seconds() - server_cpu) / elapsed
        r["attackers_cpu"] = (_own_cpu() - own_cpu) / elapsed
        fds = max((f for p, _, f in sampler.samples if p == phase), default=0)
        show(phase, r, sampler.rss_mb(phase), fds)
        return r

    print(
        f"normal load: GET /hello {args.rate:g}/s on {args.connections} connections, "
        f"{args.duration:g} s a run; latency from when each request was due:"
    )
    # Quiet and attacked runs alternate, so that the machine's noise falls on both alike.
    quiet: list[dict[str, Any]] = []
    attacked: list[dict[str, Any]] = []
    answers: dict[str, Counter[str]] = {}
    for i in range(1, args.rounds + 1):
        quiet.append(measure(f"quiet {i}"))
        attackers = Attackers(port, args)
        attackers.start()
        sampler.phase = "ramp"
        time.sleep(8)  # all connected, sleepers sleeping
        print(f"  attackers connected: {dict(sorted(attackers.open.items()))}")
        attacked.append(measure(f"attacked {i}"))
        attackers.stop()
        for kind, counts in attackers.answers.items():
            answers.setdefault(kind, Counter()).update(counts)
        sampler.phase = "drain"
        time.sleep(3)
    quiet.append(measure("quiet after"))
    sampler.stop()
    print(f"load average after: {loadavg()}")

    q, a = pooled(quiet), pooled(attacked)
    print(f"all quiet runs:    p50 {q['p50']:.2f} ms  p99 {q['p99']:.2f} ms  ({q['n']} requests)")
    print(f"all attacked runs: p50 {a['p50']:.2f} ms  p99 {a['p99']:.2f} ms  ({a['n']} requests)")
    print(f"attacked / quiet: p50 {a['p50'] / q['p50']:.2f}, p99 {a['p99'] / q['p99']:.2f}")
    rss = [sampler.rss_range_mb(f"attacked {i}") for i in range(1, args.rounds + 1)]
    print(
        "RSS from start to end of each attacked run: "
        + ", ".join(f"{first:.1f} -> {last:.1f}" for first, last in rss)
        + f" MB (end of the first quiet run {sampler.rss_mb('quiet 1'):.1f}, "
        f"of the last {sampler.rss_mb('quiet after'):.1f})"
    )
    print(f"most open files: {max(f for _, _, f in sampler.samples)}")
    for kind, counts in answers.items():
        print(f"  {kind:<12} answered: {dict(sorted(counts.items()))}")
    text = log.read_text()
    exhausted = text.count("Too many open files")
    print(f"server log: {text.count('Traceback')} tracebacks, {exhausted} 'Too many open files'")
    errors = sum(sum(r["errors"].values()) for r in quiet + attacked)
    ok = a["p99"] <= TARGET_P99_MS and not exhausted and not errors and proc.poll() is None
    verdict = "met" if ok else "NOT met"
    print(f"target (attacked p99 <= {TARGET_P99_MS:g} ms, no errors, no fd exhaustion): {verdict}")
    return 0 if ok else 1


def pooled(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return percentiles_ms([x for r in runs for x in r["latencies"]])


if __name__ == "__main__":
    sys.exit(main())
