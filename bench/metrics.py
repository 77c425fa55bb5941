#!/usr/bin/env python3
"""What `--metrics-listen` costs on the request path (issue 15; target: <= 3 % throughput on
the tiny component at c=16, on vs off in the same run).

Two measurements:
  * in process: the CPU time of the metrics calls one request makes in the HTTP trigger
    (`started` + `finished`) and of an instantiation observation, with one process's
    registry and in multiprocess mode (what `--workers N` uses: values in mmap'd files);
  * end to end: wrk at c=16 against `wasmlet up` serving a tiny wasi:http component
    (tests/fixtures/components/hello.wasm) and the hello Wagi module, one server without and
    one with `--metrics-listen`, both up at once and measured back to back in pairs (in turn
    first), so that the shared machine's drift hits both alike; each pair's on/off ratio of
    requests/s and of the servers' CPU time per request (all their processes, from /proc),
    median and range over the pairs.

    .venv/bin/python bench/metrics.py [--duration 4] [--pairs 8] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from _common import free_port, machine, run_wrk, stop, wait_http, wasmlet_cmd

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable

APP = """
spin_manifest_version = 2
[application]
name = "bench"

[[trigger.http]]
route = "/component"
component = "component"

[[trigger.http]]
route = "/wagi"
component = "wagi"
executor = {{ type = "wagi" }}

[component.component]
source = "{component}"

[component.wagi]
source = "{wagi}"
"""

# One mode per process: metrics are switched on once per process.
IN_PROCESS = r"""
import sys, tempfile, time
from wasmlet.observe import metrics
metrics.enable(tempfile.mkdtemp() if sys.argv[1] == "multiprocess" else None)
http = metrics.http("bench")
guest = metrics.component("bench", "hello")
n = 100_000
def request():
    http.finished(http.started("GET"), "/x", "hello", 200, 0.001)
for label, step in (
    ("request (started + finished)", request),
    ("instantiation observed", lambda: guest.instantiated(0.00005)),
):
    step()
    t0 = time.thread_time()  # CPU time: the machine is shared, wall time is not the cost
    for _ in range(n):
        step()
    print(f"{label}\t{(time.thread_time() - t0) / n * 1e6:.2f}")
"""

Popen = subprocess.Popen[bytes]
# (workers, route) -> per pair: req/s off, req/s on, CPU µs per request off, on
Results = dict[tuple[int, str], list[tuple[float, float, float, float]]]


def in_process() -> list[tuple[str, str, str]]:
    rows = []
    for mode in ("one process", "multiprocess"):
        out = subprocess.run(
            [PY, "-c", IN_PROCESS, mode.split()[0]],
            check=True,
            capture_output=True,
            text=True,
            cwd=ROOT,
        ).stdout
        for line in out.splitlines():
            what, us = line.split("\t")
            rows.append((mode, what, us))
    return rows


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of `pid` and its children (the workers), from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    for p in [pid, *map(int, children)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


def serve(app: Path, port: int, workers: int, cache: Path, metrics: int | None) -> Popen:
    cmd = wasmlet_cmd(app, port, workers, cache)
    if metrics is not None:
        cmd += ["--metrics-listen", f"127.0.0.1:{metrics}"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)


def counted(metrics_port: int) -> float:
    """The requests the endpoint counted."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics") as r:
        text = r.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("http_server_request_duration_seconds_count{")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=4, help="seconds per wrk run")
    parser.add_argument("--pairs", type=int, default=8, help="off/on pairs per case")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")

    print(f"machine: {machine()}")
    print(f"load before: {Path('/proc/loadavg').read_text().split()[:3]}")
    print("\nin process, CPU time per call\n\n| mode | call | µs |\n|---|---|---|")
    for mode, what, us in in_process():
        print(f"| {mode} | {what} | {us} |")

    work = Path(tempfile.mkdtemp(prefix="wasmlet-bench-metrics-"))
    results: Results = {}
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
            paired(app, cache, workers, args, results)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"\nload after: {Path('/proc/loadavg').read_text().split()[:3]}")
    print(
        f"\nwrk c={args.connections}, {args.duration} s a run, {args.pairs} pairs (off and on "
        "back to back, in turn first); on/off per pair: median [min, max]\n"
    )
    print("| workers | route | req/s off | req/s on | req/s on/off | CPU µs/request off | on "
          "| CPU on/off |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for (workers, route), runs in results.items():
        rps_off = statistics.median(r[0] for r in runs)
        rps_on = statistics.median(r[1] for r in runs)
        cpu_off = statistics.median(r[2] for r in runs)
        cpu_on = statistics.median(r[3] for r in runs)
        print(
            f"| {workers} | {route} | {rps_off:.0f} | {rps_on:.0f} | "
            f"{spread([r[1] / r[0] for r in runs])} | {cpu_off:.0f} | {cpu_on:.0f} | "
            f"{spread([r[3] / r[2] for r in runs])} |"
        )


def spread(ratios: list[float]) -> str:
    return (
        f"{(statistics.median(ratios) - 1) * 100:+.1f} % "
        f"[{(min(ratios) - 1) * 100:+.0f}, {(max(ratios) - 1) * 100:+.0f}]"
    )


def paired(
    app: Path, cache: Path, workers: int, args: argparse.Namespace, results: Results
) -> None:
    """Both servers up at once; wrk against each in turn, `args.pairs` times per route."""
    ports = {False: free_port(), True: free_port()}
    metrics_port = free_port()
    procs = {
        on: serve(app, ports[on], workers, cache, metrics_port if on else None) for on in ports
    }
    try:
        for route in ("/component", "/wagi"):
            for on in ports:
                wait_http(f"http://127.0.0.1:{ports[on]}{route}")
                run_wrk(f"http://127.0.0.1:{ports[on]}{route}", 4, 2)  # warm up
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
                results.setdefault((workers, route), []).append(
                    (got[False][0], got[True][0], got[False][1], got[True][1])
                )
        assert counted(metrics_port) > 0  # the endpoint answers and counted
    finally:
        for proc in procs.values():
            stop(proc)


if __name__ == "__main__":
    main()
