#!/usr/bin/env python3
"""containerd shim benchmark: start latency, many apps at once, memory per app, apps per node.

Starts private containerd 1.7 daemons (scripts/containerd-1.7.sh; needs root) with
containerd-shim-wasmlet-v2 on their PATH, imports examples/hello (built by wasmlet's OCI code),
a large component (`--component`, default the 12 MB jco JS app) and a busybox image, and
measures, for this tree ("after") and, with `--before DIR`, a source tree of an earlier
wasmlet (`git archive HEAD src | tar -x -C DIR`; its shim run with PYTHONPATH=DIR/src) in the
same run, alternating:

  * `ctr run` until the app answers on loopback: hello cold (nothing compiled on the node),
    hello precompiled, the large component precompiled (median of `--runs`);
  * `ctr run --rm` of busybox `true`: through containerd's own runc shim, the first through
    wasmlet's on a node (this starts the template: the node's one Python start), then
    through wasmlet's shim (handed to runc) and as a pod's sandbox (the template hands it to
    containerd's runc shim);
  * N Wasm apps started at once (`--sizes`, "before" only the first `--before-sizes`): time
    until all answer, and the machine's CPU time per app (ctr, containerd and this script
    included), and that of each kind of process;
  * memory per idle app, after a few requests each: PSS of the processes a task adds (the
    task's shim; before: its shim daemon and its runner), the node's fixed processes, and
    how much MemAvailable fell per app;
  * requests/s of one task (wrk, `--wrk` seconds, c=1 and c=16; three rounds, alternating);
  * `--density N`: start apps 20 at a time until N run, 10 minutes pass or MemAvailable is
    under 1 GB, and report how many ran and what each took.

    sudo .venv/bin/python bench/shim.py [--before DIR] [--runs 5] [--sizes 10,50,100,200]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from _common import free_port, run_wrk  # noqa: E402
from fixtures.shim.containerd import Containerd, containerd_17, fetch_containerd_17  # noqa: E402
from fixtures.shim.images import busybox_files, linux_image  # noqa: E402
from fixtures.shim.testing import launcher_dir  # noqa: E402

from wasmlet.loader import load_app  # noqa: E402
from wasmlet.oci import build_image  # noqa: E402

HELLO = "localhost/hello:1"
BIG = "localhost/big:1"
JS_APP = ROOT / "guests" / "build" / "components" / "js-app.wasm"
BIG_MANIFEST = """spin_manifest_version = 2
[application]
name = "big"
[[trigger.http]]
route = "/..."
component = "app"
[component.app]
source = "{source}"
"""
TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Variant:
    name: str
    path_first: Path | None  # a directory holding its containerd-shim-wasmlet-v2

    def containerd(self, bin_dir: Path, images: Path) -> Containerd:
        c = Containerd(bin_dir, path_first=self.path_first)
        c.start()
        for tar in sorted(images.glob("*.tar")):
            c.ctr("images", "import", str(tar))
        return c


def before_variant(tree: Path, tmp: Path) -> Variant:
    bin_dir = tmp / "before-bin"
    bin_dir.mkdir()
    shim = bin_dir / "containerd-shim-wasmlet-v2"
    shim.write_text(
        f'#!/bin/sh\nPYTHONPATH="{tree / "src"}" exec "{sys.executable}" '
        '-m wasmlet.shim.main "$@"\n'
    )
    shim.chmod(0o755)
    return Variant("before", bin_dir)


# -- measuring -------------------------------------------------------------------------------


def answers(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return s.recv(64).startswith(b"HTTP/1.1 ")
    except OSError:
        return False


def wait_all(ports: list[int], timeout: float = 600) -> float:
    """Seconds until every port answers (polled lightly, from one thread)."""
    start = time.monotonic()
    pending = list(ports)
    while pending:
        pending = [p for p in pending if not answers(p)]
        if pending:
            if time.monotonic() - start > timeout:
                raise RuntimeError(f"{len(pending)} apps did not answer within {timeout}s")
            time.sleep(0.02)
    return time.monotonic() - start


def run_app(c: Containerd, name: str, port: int, image: str = HELLO, detach: bool = True):  # type: ignore[no-untyped-def]
    listen = f"SPIN_HTTP_LISTEN_ADDR=127.0.0.1:{port}"
    args = c.run_args(image, name, "-d" if detach else "--rm", "--net-host", "--env", listen)
    return c.ctr(*args, check=False, timeout=600) if detach else c.ctr_popen(*args)


def first_response(c: Containerd, name: str, image: str = HELLO) -> float:
    port = free_port()
    start = time.monotonic()
    proc = run_app(c, name, port, image, detach=False)
    while not answers(port):
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited {proc.returncode}: {proc.communicate()}")
        time.sleep(0.002)
    elapsed = time.monotonic() - start
    c.ctr("task", "kill", name)
    proc.wait(30)
    return elapsed


def busybox_true(c: Containerd, name: str, runtime: str | None, *extra: str) -> float:
    args = ["run", "--rm", "--fifo-dir", str(c.base / "fifo"), *extra]
    args += ["--runtime", runtime] if runtime else []
    start = time.monotonic()
    c.ctr(*args, "localhost/busybox:1", name, "true")
    return time.monotonic() - start


def cpu_busy() -> float:
    v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(v) - v[3] - v[4]) / TICK


def available_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) // 1024
    return 0


def pss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def processes(c: Containerd) -> dict[str, list[int]]:
    """This containerd's wasmlet processes by role."""
    roles: dict[str, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            data = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
            comm = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if str(c.base).encode() not in data:
            continue
        if comm.startswith("wasmlet-"):
            role = comm
        elif b"wasmlet.shim.runner" in data:
            role = "runner"
        elif b"wasmlet.shim.main" in data:
            role = "shim"
        else:
            continue
        roles.setdefault(role, []).append(int(entry.name))
    return roles


def proc_cpu(pid: int, children: bool = False) -> float:
    """CPU seconds of a process (and of its reaped children)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    used = int(fields[11]) + int(fields[12])
    return (used + (int(fields[13]) + int(fields[14]) if children else 0)) / TICK


def cpu_by_role(c: Containerd) -> dict[str, float]:
    import resource

    roles = processes(c)
    out = {r: sum(proc_cpu(p) for p in ps) for r, ps in roles.items()}
    out["containerd (and launchers, delete)"] = proc_cpu(c.proc.pid, True) if c.proc else 0.0
    child = resource.getrusage(resource.RUSAGE_CHILDREN)
    out["ctr"] = child.ru_utime + child.ru_stime
    return out


def start_many(
    c: Containerd, n: int, prefix: str
) -> tuple[float, float, list[int], dict[str, float]]:
    """Start n hello apps at once: (seconds until all answer, CPU seconds per app, ports,
    CPU seconds per app by process role)."""
    ports = [free_port() for _ in range(n)]
    before = cpu_by_role(c)
    busy, start = cpu_busy(), time.monotonic()
    with ThreadPoolExecutor(min(n, 200)) as pool:
        results = list(pool.map(lambda i: run_app(c, f"{prefix}{i}", ports[i]), range(n)))
    failed = [r for r in results if r.returncode != 0]
    if failed:
        raise RuntimeError(f"{len(failed)} ctr run failed: {failed[0].stderr[-500:]}")
    wait_all(ports)
    elapsed, cpu = time.monotonic() - start, (cpu_busy() - busy) / n
    after = cpu_by_role(c)
    roles = {r: (after[r] - before.get(r, 0.0)) / n for r in after}
    return elapsed, cpu, ports, roles


def warm(c: Containerd) -> None:
    """One app first: the node's template started, hello compiled and recorded."""
    port = free_port()
    run_app(c, "warm", port)
    wait_all([port])


def memory(c: Containerd, n: int, ports: list[int], before_mb: int) -> dict[str, float]:
    for port in ports:
        for _ in range(3):
            answers(port)
    time.sleep(3)
    roles = processes(c)
    per_task = [r for r in ("wasmlet-task", "shim", "runner") if r in roles]
    total = sum(pss_mb(p) for r in per_task for p in roles[r])
    fixed = sum(pss_mb(p) for r in roles if r not in per_task for p in roles[r])
    return {
        "pss_per_app": total / (n + 1),  # the warm-up app is running too
        "fixed": fixed,
        "available_per_app": (before_mb - available_mb()) / n,
        **{f"pss_{r}": statistics.mean(pss_mb(p) for p in roles[r]) for r in per_task},
    }


def density(c: Containerd, limit: int, budget: float) -> None:
    before_mb, start, ports = available_mb(), time.monotonic(), []
    while len(ports) < limit and time.monotonic() - start < budget and available_mb() > 1024:
        n = min(20, limit - len(ports))
        _, _, new, _ = start_many(c, n, f"d{len(ports)}-")
        ports += new
    elapsed = time.monotonic() - start
    mem = memory(c, len(ports), ports, before_mb)
    idle = idle_cpu(c)
    print(
        f"\ndensity: {len(ports)} apps running after {elapsed:.0f} s, all answering; "
        f"PSS per app {mem['pss_per_app']:.1f} MB, MemAvailable fell "
        f"{mem['available_per_app']:.1f} MB per app ({available_mb()} MB left); idle CPU "
        f"{idle:.2f} ms/s per app; node's fixed processes (template, shim) {mem['fixed']:.0f} MB"
    )
    print(f"  apps per node from memory ≈ {int(before_mb / mem['available_per_app'])} "
          f"in the {before_mb} MB available before")  # fmt: skip


def idle_cpu(c: Containerd, seconds: float = 10) -> float:
    """CPU ms per second per running app's processes, while nobody calls them."""
    pids = [p for r, ps in processes(c).items() if r in ("wasmlet-task", "shim", "runner")
            for p in ps]  # fmt: skip

    def used() -> int:
        total = 0
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
            except OSError:
                pass
        return total

    first = used()
    time.sleep(seconds)
    return (used() - first) / TICK * 1000 / seconds / max(1, len(pids))


def throughput(c: Containerd, seconds: int) -> dict[int, float]:
    port = free_port()
    run_app(c, "wrk", port)
    wait_all([port])
    run_wrk(f"http://127.0.0.1:{port}/", 4, 1)  # warm-up
    out = {conns: run_wrk(f"http://127.0.0.1:{port}/", conns, seconds)["rps"] for conns in (1, 16)}
    c.ctr("task", "kill", "-s", "SIGKILL", "wrk", check=False)
    return out


def show(label: str, values: list[float], unit: str = "s") -> None:
    scale = 1000 if unit == "ms" else 1
    runs = ", ".join(f"{v * scale:.0f}" if unit == "ms" else f"{v:.2f}" for v in values)
    print(f"  {label:<62} {statistics.median(values) * scale:8.2f} {unit}  ({runs})")


# -- the run ---------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sizes", default="10,50,100,200")
    parser.add_argument("--before", type=Path, help="an earlier wasmlet source tree")
    parser.add_argument("--before-sizes", type=int, default=1, help="how many of --sizes")
    parser.add_argument("--component", type=Path, default=JS_APP)
    parser.add_argument("--wrk", type=int, default=5, help="seconds per wrk run (0: none)")
    parser.add_argument("--density", type=int, default=0, help="apps to start at most")
    args = parser.parse_args()
    bin_dir = containerd_17() or fetch_containerd_17()
    if bin_dir is None:
        print("containerd 1.7 is not available (scripts/containerd-1.7.sh)", file=sys.stderr)
        return 1
    print(f"load average before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory(prefix="shim-bench-") as tmp:
        images = Path(tmp) / "images"
        images.mkdir()
        build_image(load_app(ROOT / "examples" / "hello"), images / "hello.tar", name=HELLO)
        linux_image(images / "busybox.tar", "localhost/busybox:1", busybox_files(), ["sh"])
        big = args.component.is_file()
        if big:
            (images / "big").mkdir()
            (images / "big" / "spin.toml").write_text(BIG_MANIFEST.format(source=args.component))
            build_image(load_app(images / "big"), images / "big.tar", name=BIG)
        variants = [Variant("after", launcher_dir(Path(tmp)))]
        if args.before:
            variants.insert(0, before_variant(args.before, Path(tmp)))
        starts(variants, bin_dir, images, args.runs, big)
        sizes = [int(s) for s in args.sizes.split(",") if s]
        for i, n in enumerate(sizes):
            for v in variants:
                if v.name == "before" and i >= args.before_sizes:
                    continue
                c = v.containerd(bin_dir, images)
                try:
                    warm(c)
                    before_mb = available_mb()
                    up, cpu, ports, roles = start_many(c, n, "m")
                    mem = memory(c, n, ports, before_mb)
                    print(f"\n[{v.name}] {n} apps at once: all answering after {up:.2f} s "
                          f"({n / up:.1f} apps/s); CPU {cpu * 1000:.0f} ms per app")  # fmt: skip
                    split = ", ".join(f"{r} {t * 1000:.0f}" for r, t in roles.items() if t)
                    print(f"  CPU ms per app by process: {split}")
                    detail = ", ".join(f"{k} {val:.1f}" for k, val in mem.items())
                    print(f"  memory (MB): {detail}")
                    if i == 0:
                        print(f"  idle CPU {idle_cpu(c):.2f} ms/s per app's process")
                finally:
                    c.cleanup()
        if args.wrk:
            print()
            for _ in range(3):
                for v in variants:
                    c = v.containerd(bin_dir, images)
                    try:
                        rps = throughput(c, args.wrk)
                        print(f"  [{v.name}] hello task: {rps[1]:.0f} req/s at c=1, "
                              f"{rps[16]:.0f} req/s at c=16")  # fmt: skip
                    finally:
                        c.cleanup()
        if args.density:
            c = variants[-1].containerd(bin_dir, images)
            try:
                warm(c)
                density(c, args.density, 600)
            finally:
                c.cleanup()
    print(f"\nload average after: {os.getloadavg()}")
    return 0


def starts(variants: list[Variant], bin_dir: Path, images: Path, runs: int, big: bool) -> None:
    results: dict[str, dict[str, list[float]]] = {v.name: {} for v in variants}

    def add(v: Variant, label: str, value: float) -> None:
        results[v.name].setdefault(label, []).append(value)

    runtime = "io.containerd.wasmlet.v2"
    sandbox = ["--annotation", "io.kubernetes.cri.container-type=sandbox"]
    for i in range(runs):
        for v in variants:  # alternating, so both see the same machine
            c = v.containerd(bin_dir, images)
            try:
                add(v, "ctr run --rm busybox true, containerd's runc shim",
                    busybox_true(c, f"rc{i}", None))  # fmt: skip
                add(v, "ctr run --rm busybox true, first wasmlet start on the node",
                    busybox_true(c, f"bf{i}", runtime))  # fmt: skip
                add(v, "ctr run --rm busybox true, wasmlet shim -> runc",
                    busybox_true(c, f"bb{i}", runtime))  # fmt: skip
                if v.name == "after":
                    add(v, "ctr run --rm busybox true, as a pod sandbox (runc's shim)",
                        busybox_true(c, f"sb{i}", runtime, *sandbox))  # fmt: skip
                add(v, "ctr run -> first response, hello, first (compiles it)",
                    first_response(c, f"c{i}"))  # fmt: skip
                for j in range(3):
                    add(v, "ctr run -> first response, hello, precompiled",
                        first_response(c, f"w{i}-{j}"))  # fmt: skip
                if big:
                    first_response(c, f"bc{i}", BIG)  # compiles it
                    time.sleep(2)  # its artifact stored in the content store
                    add(v, "ctr run -> first response, 12 MB JS component, precompiled",
                        first_response(c, f"bw{i}", BIG))  # fmt: skip
            finally:
                c.cleanup()
    for v in variants:
        print(f"\n[{v.name}] median of {runs} (ms; the runs in order)")
        for label, values in results[v.name].items():
            show(label, values, "ms")


if __name__ == "__main__":
    sys.exit(main())
