#!/usr/bin/env python3
"""`wasmlet host` with many idle apps: load time, memory, first and later requests, and the
throughput of one busy app among them against the same app under `wasmlet up`, same run.

1. Writes N copies of a small app (`hello`: the 7 KB wasi:http component, or `wagi`: the C
   hello module) under different names, each with its own copy of the Wasm file.
2. Starts `wasmlet host --apps DIR --precompile` with an empty compile cache and measures
   the time until it serves (locking N manifests, hashing N files, one compile), then its
   RSS and PSS while every app is idle.
3. Requests every app once (each request builds its app: the first request of an app that
   was never requested), then every app again; p50/p99 of each pass; RSS/PSS after.
4. wrk at c=1 and c=16 against one app of the host and against `wasmlet up` of that app,
   alternating, and the ratio.

    .venv/bin/python bench/host.py [--apps 10000] [--kind hello|wagi] [--duration 10]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from _common import free_port, machine, percentiles, run_wrk, stop, wait_http
from wasmtime_serve import resolve_component

ROOT = Path(__file__).resolve().parent.parent

MANIFEST = """spin_manifest_version = 2
[application]
name = "{name}"
[[trigger.http]]
route = "/..."
component = "c"
{executor}
[component.c]
source = "app.wasm"
"""


def write_apps(apps: Path, count: int, wasm: Path, wagi: bool) -> None:
    executor = 'executor = { type = "wagi" }' if wagi else ""
    data = wasm.read_bytes()
    for i in range(count):
        directory = apps / f"app{i:05d}"
        directory.mkdir(parents=True)
        (directory / "spin.toml").write_text(MANIFEST.format(name=f"app{i}", executor=executor))
        (directory / "app.wasm").write_bytes(data)


def memory(pid: int) -> tuple[float, float]:
    """RSS and PSS of a process, in MiB."""
    values = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("Rss", "Pss"):
            values[key] = int(rest.split()[0]) / 1024
    return values["Rss"], values["Pss"]


def start(cmd: list[str], port: int) -> tuple[subprocess.Popen[bytes], float]:
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{port}/.well-known/spin/health", timeout=900)
    return proc, time.monotonic() - t0


def one_pass(port: int, names: list[str]) -> dict[str, float]:
    samples = []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        for name in names:
            t0 = time.perf_counter()
            r = client.get("/", headers={"host": f"{name}.localhost"})
            samples.append(time.perf_counter() - t0)
            if r.status_code != 200:
                raise RuntimeError(f"{name}: {r.status_code} {r.text[:200]}")
    return {k: v / 1000 for k, v in percentiles(samples).items()}  # ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--apps", type=int, default=10_000)
    parser.add_argument("--kind", choices=["hello", "wagi"], default="hello")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=2, help="alternating wrk rounds")
    parser.add_argument(
        "--host-arg", action="append", default=[], help="an extra `wasmlet host` argument"
    )
    args = parser.parse_args()
    print(f"machine: {machine()}")
    wasm = ROOT / "examples/hello/hello.wasm" if args.kind == "wagi" else resolve_component("hello")
    tmp = Path(tempfile.mkdtemp(prefix="wasmlet-host-bench-"))
    try:
        apps = tmp / "apps"
        t0 = time.monotonic()
        write_apps(apps, args.apps, wasm, args.kind == "wagi")
        print(f"{args.apps} apps ({args.kind}, {wasm.stat().st_size} B each) written in "
              f"{time.monotonic() - t0:.1f} s")  # fmt: skip
        port = free_port()
        host_cmd = [
            sys.executable, "-m", "wasmlet.cli", "host", "--apps", str(apps), "--precompile",
            "--listen", f"127.0.0.1:{port}", "--cache-dir", str(tmp / "cache"),
            "--log-level", "error", *args.host_arg,
        ]  # fmt: skip
        proc, load = start(host_cmd, port)
        try:
            rss, pss = memory(proc.pid)
            print(f"host loaded {args.apps} apps in {load:.1f} s; idle: RSS {rss:.0f} MiB, "
                  f"PSS {pss:.0f} MiB ({rss * 1024 / args.apps:.0f} KiB per app)")  # fmt: skip
            names = sorted(p.name for p in apps.iterdir() if not p.name.startswith("."))
            first = one_pass(port, names)
            rss, pss = memory(proc.pid)
            print(f"first request of every app: p50 {first['p50']:.2f} ms, "
                  f"p99 {first['p99']:.2f} ms, mean {first['mean']:.2f} ms; then RSS "
                  f"{rss:.0f} MiB, PSS {pss:.0f} MiB "
                  f"({rss * 1024 / args.apps:.0f} KiB per app)")  # fmt: skip
            second = one_pass(port, names)
            print(f"second request of every app: p50 {second['p50']:.2f} ms, "
                  f"p99 {second['p99']:.2f} ms")  # fmt: skip
            busy(port, names[0], apps / names[0], tmp, args)
        finally:
            stop(proc)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def busy(host_port: int, name: str, app: Path, tmp: Path, args: argparse.Namespace) -> None:
    """One busy app: in the host (with every other app idle) and alone under `wasmlet up`."""
    up_port = free_port()
    up_cmd = [
        sys.executable, "-m", "wasmlet.cli", "up", "-f", str(app), "--listen",
        f"127.0.0.1:{up_port}", "--cache-dir", str(tmp / "cache"), "--log-level", "error",
        "--workers", "1",  # as the host's one worker
    ]  # fmt: skip
    up, _ = start(up_cmd, up_port)
    try:
        host_url, up_url = f"http://127.0.0.1:{host_port}/", f"http://127.0.0.1:{up_port}/"
        headers = {"Host": f"{name}.localhost"}
        run_wrk(host_url, 4, 2, headers)  # warm up
        run_wrk(up_url, 4, 2)
        print("\n| server | c | req/s | p50 ms | p99 ms | host / up |")
        print("|---|---|---|---|---|---|")
        for _ in range(args.rounds):
            for c in (1, 16):
                h = run_wrk(host_url, c, args.duration, headers)
                u = run_wrk(up_url, c, args.duration)
                for label, r in ((f"host ({args.apps} apps)", h), ("up", u)):
                    ratio = f"{h['rps'] / u['rps']:.2f}x" if label == "up" else ""
                    print(f"| {label} | {c} | {r['rps']:.0f} | {r['p50_ms']:.2f} | "
                          f"{r['p99_ms']:.2f} | {ratio} |", flush=True)  # fmt: skip
    finally:
        stop(up)


if __name__ == "__main__":
    main()
