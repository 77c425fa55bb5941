#!/usr/bin/env python3
"""The first request to an app with zero pods: answered by the wasmlet activator.

N SpinApps (autoscaler type wasmlet) of one image are created in kmock (an in-memory
Kubernetes API, in this process; see tests/support/kube_emulator.py); a real
`wasmlet kube activator` process pulls each app from a real registry (Debian's
docker-registry on loopback) and precompiles it. Once every app is loaded (and none was ever
requested), each gets one request — its first — and then a second: p50/p99 of each.

The reference, measured in the same run: what a pod adds at the very least when an app at zero
must wait for one — `wasmlet up` of the same image (what the pod runs), from process start to
its first answer, with the compile cache and the image's blobs warm (no scheduling,
no container). Knative's and KEDA's reported cold starts are printed beside (from
../shared/reference/scale-to-zero.md).

    .venv/bin/python bench/activator.py [--apps 50] [--component hello|js-app]

No real Kubernetes is involved: what is measured is the activator itself (its request path
and building an app on its first request); in a cluster a request also crosses kube-proxy.
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/http.py would shadow the standard library's `http` (aiohttp imports it)
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the emulator (tests/support) and registry fixture
sys.path.insert(1, str(ROOT / "bench"))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import aiohttp  # noqa: E402
import httpx  # noqa: E402
import kmock  # noqa: E402
from _common import free_port, machine, percentiles, stop, wait_http  # noqa: E402
from fixtures.oci.registry import start_registry  # noqa: E402
from support.kube_emulator import ApiServer  # noqa: E402
from wasmtime_serve import resolve_component  # noqa: E402

CR = "/apis/core.spinkube.dev/v1alpha1/namespaces/default"
REPORTED = [
    ("Knative (various versions, issues #2484 to #10960)", "2 to 18 s"),
    ("KEDA HTTP add-on (#1385 default connect timeout; #586 outliers)", "3.35 s; 20 to 25 s"),
]
MANIFEST = """spin_manifest_version = 2
[application]
name = "bench"
[[trigger.http]]
route = "/..."
component = "c"
[component.c]
source = "{source}"
"""


def push(tmp: Path, registry_host: str, component: Path) -> str:
    app = tmp / "app"
    app.mkdir()
    (app / "spin.toml").write_text(MANIFEST.format(source=component))
    ref = f"{registry_host}/bench:v1"
    cmd = [sys.executable, "-m", "wasmlet.cli", "registry", "push", ref, "-f", str(app), "-k"]
    subprocess.run(cmd, check=True, capture_output=True)
    return ref


def spinapp(name: str, image: str) -> dict[str, object]:
    return {
        "apiVersion": "core.spinkube.dev/v1alpha1",
        "kind": "SpinApp",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "image": image,
            "executor": "wasmlet",
            "enableAutoscaling": True,
            "autoscaler": {"type": "wasmlet", "maxReplicas": 3},
        },
    }


def one_pass(url: str, names: list[str]) -> dict[str, float]:
    samples = []
    with httpx.Client(base_url=url, timeout=60) as client:
        for name in names:
            t0 = time.perf_counter()
            r = client.get("/", headers={"host": f"{name}.default.svc.cluster.local"})
            samples.append(time.perf_counter() - t0)
            if r.status_code != 200:
                raise RuntimeError(f"{name}: {r.status_code} {r.text[:200]}")
    return {k: v / 1000 for k, v in percentiles(samples).items()}  # ms


async def run(args: argparse.Namespace, tmp: Path) -> None:
    component = resolve_component(args.component)
    registry = start_registry(tmp / "registry")
    try:
        image = push(tmp, registry.host, component)
        async with ApiServer() as api, kmock.Server(api) as server:
            url = str(server.url).rstrip("/")
            port = free_port()
            cmd = [
                sys.executable, "-m", "wasmlet.cli", "kube", "activator", "--server", url,
                "--listen", f"127.0.0.1:{port}", "-k", "--state-dir", str(tmp / "state"),
                "--cache-dir", str(tmp / "cache"), "--log-level", "error",
            ]  # fmt: skip
            proc = subprocess.Popen(cmd)
            base = f"http://127.0.0.1:{port}"
            try:
                names = [f"app{i:04d}" for i in range(args.apps)]
                async with aiohttp.ClientSession(url) as http:
                    t0 = time.monotonic()
                    for name in names:
                        async with http.post(f"{CR}/spinapps", json=spinapp(name, image)) as r:
                            assert r.status < 300, await r.text()
                    await wait_loaded(base, len(names))
                    loaded = time.monotonic() - t0
                print(f"{len(names)} apps ({args.component}, {component.stat().st_size} B) "
                      f"created, pulled and precompiled in {loaded:.1f} s")  # fmt: skip
                first = await asyncio.to_thread(one_pass, base, names)
                second = await asyncio.to_thread(one_pass, base, names)
            finally:
                stop(proc)
        pod = [await asyncio.to_thread(pod_start, image, tmp) for _ in range(args.pods)]
    finally:
        registry.stop()
    pod_ms = {k: v / 1000 for k, v in percentiles(pod).items()}
    print("\n| request to an app at zero pods | p50 ms | p99 ms |\n|---|---|---|")
    print(f"| first (builds the app) | {first['p50']:.1f} | {first['p99']:.1f} |")
    print(f"| second | {second['p50']:.1f} | {second['p99']:.1f} |")
    print(f"| reference: a pod's process start to first answer ({args.pods} starts) "
          f"| {pod_ms['p50']:.1f} | {pod_ms['p99']:.1f} |")  # fmt: skip
    print(f"\nthe pod's own start / the activator's first request (p50): "
          f"{pod_ms['p50'] / first['p50']:.0f}x")  # fmt: skip
    print("\nreported first requests after zero elsewhere:")
    for who, figure in REPORTED:
        print(f"  {who}: {figure}")


def pod_start(image: str, tmp: Path) -> float:
    """Seconds from starting `wasmlet up` of `image` (cache warm) to its first 200."""
    port = free_port()
    cmd = [
        sys.executable, "-m", "wasmlet.cli", "up", "-f", image, "-k", "--listen",
        f"127.0.0.1:{port}", "--cache-dir", str(tmp / "cache"), "--log-level", "error",
        "--workers", "1",  # a pod's task is one process
    ]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, cwd=tmp)
    try:
        wait_http(f"http://127.0.0.1:{port}/")
        return time.perf_counter() - t0
    finally:
        stop(proc)


async def wait_loaded(base: str, count: int, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=base, timeout=5) as client:
        while time.monotonic() < deadline:
            try:
                status = (await client.get("/.well-known/wasmlet/apps")).json()
                if len(status["apps"]) >= count:
                    return
            except (httpx.HTTPError, ValueError):
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError("the activator did not load every app in time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--apps", type=int, default=50)
    parser.add_argument("--component", default="hello", help="hello (7 KB) or js-app (12 MB)")
    parser.add_argument("--pods", type=int, default=5, help="reference pod starts to time")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run(args, Path(tmp)))


if __name__ == "__main__":
    main()
