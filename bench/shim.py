#!/usr/bin/env python3
"""containerd shim benchmark: `ctr run` to first HTTP response, memory per app, apps per node.

Starts a private containerd 1.7 (scripts/containerd-1.7.sh; needs root) with
containerd-shim-wasmlet-v2 on its PATH, imports examples/hello (built by wasmlet's OCI code)
and a busybox image, then measures (median of `--runs`):

  * cold: a fresh containerd and shim state each run (nothing precompiled), `ctr run --rm`
    until the app answers on loopback, for examples/hello (a 0.5 KB Wagi module) and a large
    component (`--component`, default the 12 MB jco JS app built in guests/build/components);
  * warm: the precompiled artifact in containerd's content store (the second start);
  * the same `ctr run --rm` of busybox `true` through wasmlet's shim (handed to runc) and
    through containerd's own runc shim, for comparison with the reference's ~0.9 s;
  * `--apps N` (default 20) Wasm apps started at once: time until all answer, then the memory
    of each (PSS of its shim + runner, and its cgroup's usage), extrapolated to how many fit
    in the node's available memory. All are stopped at the end.

    sudo .venv/bin/python bench/shim.py [--runs 3] [--apps 20]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from _common import free_port, wait_http  # noqa: E402
from fixtures.shim.containerd import Containerd, containerd_17, fetch_containerd_17  # noqa: E402
from fixtures.shim.images import busybox_files, linux_image  # noqa: E402

from wasmlet.loader import load_app  # noqa: E402
from wasmlet.oci import build_image  # noqa: E402

IMAGE = "localhost/hello:1"
BIG_IMAGE = "localhost/big:1"
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


def answers(url: str, proc: subprocess.Popen[str], timeout: float = 120.0) -> None:
    """Poll `url` until the server answers at all (any status)."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.HTTPError:
            if proc.poll() is not None:
                raise RuntimeError(f"task exited {proc.returncode}: {proc.communicate()}") from None
            time.sleep(0.005)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


def new_containerd(bin_dir: Path, images: Path) -> Containerd:
    c = Containerd(bin_dir)
    c.start()
    for tar in sorted(images.glob("*.tar")):
        c.ctr("images", "import", str(tar))
    return c


def first_response(c: Containerd, name: str, image: str = IMAGE) -> float:
    port = free_port()
    listen = f"SPIN_HTTP_LISTEN_ADDR=127.0.0.1:{port}"
    start = time.monotonic()
    proc = c.ctr_popen(*c.run_args(image, name, "--rm", "--net-host", "--env", listen))
    answers(f"http://127.0.0.1:{port}/", proc, timeout=180)
    elapsed = time.monotonic() - start
    c.ctr("task", "kill", name)
    proc.wait(30)
    return elapsed


def run_rm(c: Containerd, name: str, runtime: str | None) -> float:
    args = ["run", "--rm", "--fifo-dir", str(c.base / "fifo")]
    args += ["--runtime", runtime] if runtime else []
    start = time.monotonic()
    c.ctr(*args, "localhost/busybox:1", name, "true")
    return time.monotonic() - start


def pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def available_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) // 1024
    return 0


def many_apps(c: Containerd, n: int) -> None:
    names = [f"many-{i}" for i in range(n)]
    ports = [free_port() for _ in names]
    before = available_mb()
    start = time.monotonic()
    procs = [
        c.ctr_popen(
            *c.run_args(
                IMAGE, name, "-d", "--net-host", "--env", f"SPIN_HTTP_LISTEN_ADDR=127.0.0.1:{port}"
            )
        )
        for name, port in zip(names, ports, strict=True)
    ]
    for p in procs:
        p.wait(120)
    for port in ports:
        wait_http(f"http://127.0.0.1:{port}/", timeout=120)
    all_up = time.monotonic() - start
    time.sleep(2)
    shims = c.shim_pids()
    shim_pss = [pss_kb(p) for p in shims]
    runner_pss = [pss_kb(r) for p in shims for r in children(p)]
    usage = []
    for name in names:
        text = c.ctr("task", "metrics", name, check=False).stdout
        for line in text.splitlines():
            if line.startswith(("memory.usage_in_bytes", "memory.usage ")):
                usage.append(int(line.split()[1]) // 1024)
    after = available_mb()
    per_app_mb = (statistics.mean(shim_pss) + statistics.mean(runner_pss)) / 1024
    print(
        f"\n{n} apps started at once: all answering after {all_up:.1f} s ({n / all_up:.1f} apps/s)"
    )
    print(f"  shim PSS     mean {statistics.mean(shim_pss) / 1024:6.1f} MB ({len(shims)} shims)")
    print(
        f"  runner PSS   mean {statistics.mean(runner_pss) / 1024:6.1f} MB "
        f"({len(runner_pss)} runners)"
    )
    if usage:
        print(f"  cgroup usage mean {statistics.mean(usage) / 1024:6.1f} MB (what Stats reports)")
    print(
        f"  per app (shim + runner PSS) {per_app_mb:.1f} MB; MemAvailable fell "
        f"{before - after} MB ({(before - after) / n:.1f} MB/app)"
    )
    print(f"  apps per node ≈ {int(before / per_app_mb)} in the {before} MB available here")
    for name in names:
        c.ctr("task", "kill", "-s", "SIGKILL", name, check=False)
    time.sleep(1)
    for name in names:
        c.ctr("task", "delete", name, check=False)
        c.ctr("containers", "delete", name, check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--apps", type=int, default=20)
    parser.add_argument(
        "--component",
        type=Path,
        default=JS_APP,
        help="a large wasi:http component for the cold/warm comparison",
    )
    args = parser.parse_args()
    bin_dir = containerd_17() or fetch_containerd_17()
    if bin_dir is None:
        print("containerd 1.7 is not available (scripts/containerd-1.7.sh)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="shim-bench-") as tmp:
        images = Path(tmp)
        build_image(load_app(ROOT / "examples" / "hello"), images / "hello.tar", name=IMAGE)
        linux_image(images / "busybox.tar", "localhost/busybox:1", busybox_files(), ["sh"])
        big = args.component.is_file()
        if big:
            (images / "big").mkdir()
            (images / "big" / "spin.toml").write_text(BIG_MANIFEST.format(source=args.component))
            build_image(load_app(images / "big"), images / "big.tar", name=BIG_IMAGE)
        cold, warm, big_cold, big_warm = [], [], [], []
        for i in range(args.runs):
            c = new_containerd(bin_dir, images)
            try:
                cold.append(first_response(c, f"cold-{i}"))
                warm.append(first_response(c, f"warm-{i}"))
                if big:
                    big_cold.append(first_response(c, f"bigcold-{i}", BIG_IMAGE))
                    big_warm.append(first_response(c, f"bigwarm-{i}", BIG_IMAGE))
            finally:
                c.cleanup()
        c = new_containerd(bin_dir, images)
        try:
            ours = [run_rm(c, f"bb-{i}", "io.containerd.wasmlet.v2") for i in range(args.runs)]
            runc = [run_rm(c, f"rc-{i}", None) for i in range(args.runs)]
            rows = [
                ("ctr run -> first HTTP response, hello, cold", cold),
                ("ctr run -> first HTTP response, hello, precompiled", warm),
            ]
            if big:
                size = f"{args.component.stat().st_size / 1e6:.0f} MB component"
                rows += [
                    (f"ctr run -> first HTTP response, {size}, cold", big_cold),
                    (f"ctr run -> first HTTP response, {size}, precompiled", big_warm),
                ]
            rows += [
                ("ctr run --rm busybox true, wasmlet shim -> runc", ours),
                ("ctr run --rm busybox true, containerd's runc shim", runc),
            ]
            for label, values in rows:
                print(
                    f"{label:<58} {statistics.median(values):6.2f} s  "
                    f"(runs: {', '.join(f'{v:.2f}' for v in values)})"
                )
            many_apps(c, args.apps)
        finally:
            c.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
