"""Operator benchmark: SpinApps reconciled per second through kopf, and operator memory.

    .venv/bin/python bench/kube.py [--apps 1000]

The API server is kmock (in-memory, in this process; see tests/support/kube_emulator.py); the
operator is `wasmlet kube operator --server URL` in its own process, so its memory is measured
alone (VmRSS / VmHWM from /proc). A SpinApp counts as reconciled when its status has been
written, the last step of a reconcile (after its Secret, Deployment and Service were applied).
No real Kubernetes API server is involved: its latency, admission and etcd writes are not
measured.
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/http.py would shadow the standard library's `http` (aiohttp imports it)
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the Kubernetes API emulator: tests/support

import argparse  # noqa: E402
import asyncio  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import aiohttp  # noqa: E402
import kmock  # noqa: E402
from support.kube_emulator import ApiServer  # noqa: E402

from wasmlet.kube import DEFAULT_IMAGE  # noqa: E402

CR = "/apis/core.spinkube.dev/v1alpha1/namespaces/default"
# BENCH_PROFILE=FILE: profile the operator with cProfile into FILE
PROFILE = (
    ["-m", "cProfile", "-o", os.environ["BENCH_PROFILE"]] if os.environ.get("BENCH_PROFILE") else []
)


def rss_kib(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


def count(api: ApiServer, plural: str, check: Any) -> int:
    return sum(
        1
        for (resource, _, _), obj in list(api.objects.items())
        if resource.plural == plural and not obj.deleted and check(obj.raw)
    )


async def wait_until(api: ApiServer, plural: str, check: Any, n: int, timeout: float) -> float:
    start = time.perf_counter()
    while (done := count(api, plural, check)) < n:
        print(f"  {plural}: {done}/{n}", file=sys.stderr)
        if time.perf_counter() - start > timeout:
            raise SystemExit(f"timed out: {count(api, plural, check)}/{n} {plural}")
        await asyncio.sleep(0.1)
    return time.perf_counter() - start


def spinapp(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "core.spinkube.dev/v1alpha1",
        "kind": "SpinApp",
        "metadata": {"name": f"app-{i:04d}", "namespace": "default"},
        "spec": {
            "image": f"ghcr.io/bench/app-{i:04d}:v1",
            "executor": "wasmlet-container",
            "replicas": 1,
            "variables": [{"name": "greeting", "value": "hello"}],
        },
    }


async def post_all(http: aiohttp.ClientSession, bodies: list[dict[str, Any]]) -> None:
    sem = asyncio.Semaphore(32)

    async def post(body: dict[str, Any]) -> None:
        async with sem, http.post(f"{CR}/spinapps", json=body) as r:
            assert r.status < 300, await r.text()

    await asyncio.gather(*(post(b) for b in bodies))


async def bench(n: int, timeout: float) -> None:
    log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - the operator writes to it until the end
        "w", prefix="wasmlet-operator-", suffix=".log", delete=False
    )
    print(f"operator log: {log.name}", file=sys.stderr)
    api = ApiServer()
    api.forget_requests()  # kmock scans its request log on every request
    async with api, kmock.Server(api) as server:
        url = str(server.url).rstrip("/")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "wasmlet.cli",
                "kube",
                "operator",
                "--server",
                url,
                "--log-level",
                "error",
                "--retry-delay",
                "1",
            ],
            env=os.environ | {"PYTHONUNBUFFERED": "1"},
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            async with aiohttp.ClientSession(url) as http:
                executor = {
                    "apiVersion": "core.spinkube.dev/v1alpha1",
                    "kind": "SpinAppExecutor",
                    "metadata": {"name": "wasmlet-container", "namespace": "default"},
                    "spec": {
                        "createDeployment": True,
                        "deploymentConfig": {"spinImage": DEFAULT_IMAGE},
                    },
                }
                async with http.post(f"{CR}/spinappexecutors", json=executor) as r:
                    assert r.status < 300
                finalized = lambda o: bool(o["metadata"].get("finalizers"))  # noqa: E731
                await wait_until(api, "spinappexecutors", finalized, 1, 30)
                idle = rss_kib(proc.pid)

                start = time.perf_counter()
                await post_all(http, [spinapp(i) for i in range(n)])
                created = time.perf_counter() - start
                reconciled = lambda o: bool((o.get("status") or {}).get("activeScheduler"))  # noqa: E731
                await wait_until(api, "spinapps", reconciled, n, timeout)
                elapsed = time.perf_counter() - start
                deployments = count(api, "deployments", lambda o: True)
                loaded = rss_kib(proc.pid)

                # update every app (new variable value): a rollout per app
                start = time.perf_counter()
                patch = {"spec": {"variables": [{"name": "greeting", "value": "bye"}]}}
                headers = {"Content-Type": "application/merge-patch+json"}
                sem = asyncio.Semaphore(32)

                async def update(i: int) -> None:
                    async with (
                        sem,
                        http.patch(f"{CR}/spinapps/app-{i:04d}", json=patch, headers=headers) as r,
                    ):
                        assert r.status < 300

                await asyncio.gather(*(update(i) for i in range(n)))

                def updated(o: dict[str, Any]) -> bool:
                    env = o["spec"]["template"]["spec"]["containers"][0]["env"]
                    return {"name": "SPIN_VARIABLE_GREETING", "value": "bye"} in env

                updated_in = await wait_until(api, "deployments", updated, n, timeout)
                final = rss_kib(proc.pid)
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    print(f"SpinApps: {n} (created through the API in {created:.2f} s)")
    print(f"Deployments created: {deployments}")
    print(f"create -> reconciled (status written): {elapsed:.2f} s = {n / elapsed:.1f} apps/s")
    print(
        f"update -> Deployment rolled:           {updated_in:.2f} s = {n / updated_in:.1f} apps/s"
    )
    print(f"operator RSS idle:            {idle['VmRSS'] / 1024:.1f} MiB")
    print(
        f"operator RSS with {n} apps:  {loaded['VmRSS'] / 1024:.1f} MiB "
        f"(peak {final['VmHWM'] / 1024:.1f} MiB, after updates {final['VmRSS'] / 1024:.1f} MiB)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--apps", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    asyncio.run(bench(args.apps, args.timeout))


if __name__ == "__main__":
    main()
