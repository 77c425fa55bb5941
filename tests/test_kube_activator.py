"""The activator end to end: a real `wasmlet kube activator` process against kmock (an
in-memory Kubernetes API, tests/support/kube_emulator.py; no real API server runs here), with
app images in a real registry (Debian's docker-registry) and real pods played by `wasmlet up`
processes whose addresses the tests write into EndpointSlices, as Kubernetes would."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import kmock
import pytest
import pytest_asyncio
from fixtures.oci.registry import REGISTRY_BIN, Registry, start_registry
from support.component_guests import component
from support.env import free_port, require_tool
from support.kube_emulator import ApiServer
from support.server import Server, run_cli, start_server, write_app

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(120)]

CR = "/apis/core.spinkube.dev/v1alpha1/namespaces/default"
SLICES = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices"

APP = """
spin_manifest_version = 2
[application]
name = "{name}"
[[trigger.http]]
route = "/..."
component = "c"
[component.c]
source = "{source}"
"""


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    require_tool(REGISTRY_BIN, "docker-registry")
    reg = start_registry(tmp_path_factory.mktemp("registry"))
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def images(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """hello (answers at once) and slow (streams for 1.5 s), pushed to the registry."""
    refs = {}
    for name, guest in (("hello", "hello"), ("slow", "slow-stream")):
        app = write_app(
            tmp_path_factory.mktemp(name), APP.format(name=name, source=component(guest))
        )
        ref = registry.ref(f"{name}:v1")
        r = run_cli("registry", "push", ref, "-f", str(app), "-k")
        assert r.returncode == 0, r.stderr
        refs[name] = ref
    return refs


def spinapp(name: str, image: str, **autoscaler: Any) -> dict[str, Any]:
    return {
        "apiVersion": "core.spinkube.dev/v1alpha1",
        "kind": "SpinApp",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "image": image,
            "executor": "wasmlet",
            "enableAutoscaling": True,
            "autoscaler": {"type": "wasmlet", "maxReplicas": 3} | autoscaler,
            "variables": [{"name": "greeting", "value": "hi"}],
        },
    }


class Activator:
    def __init__(self, proc: subprocess.Popen[str], url: str, log: Path) -> None:
        self.proc, self.url, self.log = proc, url, log

    def get(self, host: str, path: str = "/", **kw: Any) -> httpx.Response:
        return httpx.get(self.url + path, headers={"host": host}, timeout=30, **kw)

    def serves(self, key: str) -> bool:
        return key in {a["name"] for a in self.status()["apps"]}

    def status(self) -> dict[str, Any]:
        return httpx.get(self.url + "/.well-known/wasmlet/apps", timeout=5).json()  # type: ignore[no-any-return]


@pytest_asyncio.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[tuple[aiohttp.ClientSession, Activator]]:
    async with ApiServer() as api, kmock.Server(api) as server:
        url = str(server.url).rstrip("/")
        port = free_port()
        log = tmp_path / "activator.log"
        cmd = [
            sys.executable, "-m", "wasmlet.cli", "kube", "activator", "--server", url,
            "--listen", f"127.0.0.1:{port}", "-k", "--state-dir", str(tmp_path / "state"),
            "--cache-dir", str(tmp_path / "cache"), "--sample-interval", "0.2",
        ]  # fmt: skip
        with log.open("w") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, text=True)
        activator = Activator(proc, f"http://127.0.0.1:{port}", log)
        try:
            await _until(lambda: _answers(activator), 30, log)
            async with aiohttp.ClientSession(url) as http:
                yield http, activator
        finally:
            proc.terminate()
            proc.wait(15)


def _answers(activator: Activator) -> bool:
    try:
        return activator.get("localhost", "/.well-known/spin/health").status_code == 200
    except httpx.TransportError:
        return False


async def _until(check: Any, timeout: float, log: Path | None = None) -> Any:
    """Until `check()` (a plain function, run off the loop, or a coroutine function) holds."""
    deadline = time.monotonic() + timeout
    while True:
        if asyncio.iscoroutinefunction(check):
            result = await check()
        else:
            result = await asyncio.to_thread(check)
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(
                "not in time" + (f"; activator log:\n{log.read_text()}" if log else "")
            )
        await asyncio.sleep(0.1)


async def _json(http: aiohttp.ClientSession, method: str, path: str, body: Any = None) -> Any:
    headers = {"Content-Type": "application/merge-patch+json"} if method == "PATCH" else {}
    async with http.request(method, path, json=body, headers=headers) as r:
        assert r.status < 300, f"{method} {path}: {r.status} {await r.text()}"
        return await r.json()


async def replicas(http: aiohttp.ClientSession, name: str) -> int:
    app = await _json(http, "GET", f"{CR}/spinapps/{name}")
    return int(app["spec"].get("replicas") or 0)


async def test_an_app_at_zero_pods_is_served_by_the_activator(
    cluster: tuple[aiohttp.ClientSession, Activator], images: dict[str, str]
) -> None:
    http, activator = cluster
    await _json(http, "POST", f"{CR}/spinapps", spinapp("hello", images["hello"]))
    # pulled and precompiled when created, before any request
    await _until(
        lambda: "hello.default" in {a["name"] for a in activator.status()["apps"]},
        30,
        activator.log,
    )
    t0 = time.monotonic()
    r = activator.get("hello.default.svc.cluster.local")
    first = time.monotonic() - t0
    assert r.status_code == 200, r.text
    assert r.text.startswith("Hello")
    assert first < 1.0  # (bench/activator.py measures it: milliseconds)
    assert activator.get("hello").status_code == 200  # the name alone: unique here
    assert activator.get("nosuch.default").status_code == 404
    assert await replicas(http, "hello") == 0  # one request is no reason for a pod
    # Deleted: no longer served.
    await _json(http, "DELETE", f"{CR}/spinapps/hello")
    await _until(lambda: activator.get("hello.default").status_code == 404, 10, activator.log)


async def test_an_app_the_activator_cannot_run_is_reported(
    cluster: tuple[aiohttp.ClientSession, Activator], images: dict[str, str]
) -> None:
    http, activator = cluster
    app = spinapp("vols", images["hello"])
    app["spec"]["volumes"] = [{"name": "v", "emptyDir": {}}]
    app["spec"]["volumeMounts"] = [{"name": "v", "mountPath": "/data"}]
    await _json(http, "POST", f"{CR}/spinapps", app)
    await _until(lambda: "vols.default" in activator.status()["not_served"], 10, activator.log)
    assert "volumes" in activator.status()["not_served"]["vols.default"]
    assert activator.get("vols.default").status_code == 503


async def test_load_brings_pods_and_idleness_takes_them_away(
    cluster: tuple[aiohttp.ClientSession, Activator],
    images: dict[str, str],
    tmp_path: Path,
    cache_dir: Path,
) -> None:
    http, activator = cluster
    autoscaler = {
        "targetConcurrency": 1,
        "stableWindowSeconds": 6,
        "scaleToZero": {"enabled": True, "cooldownPeriodSeconds": 2},
    }
    await _json(http, "POST", f"{CR}/spinapps", spinapp("slow", images["slow"], **autoscaler))
    await _until(
        lambda: "slow.default" in {a["name"] for a in activator.status()["apps"]}, 30, activator.log
    )

    # Sustained load in the activator: 3 requests in flight (1.5 s each) for ~5 s.
    def load(target: str, host: str, seconds: float) -> None:
        end = time.monotonic() + seconds
        with httpx.Client(timeout=30) as c:
            while time.monotonic() < end:
                assert c.get(target + "/", headers={"host": host}).status_code == 200

    loaders = [asyncio.to_thread(load, activator.url, "slow.default", 5) for _ in range(3)]
    await asyncio.gather(*loaders)

    async def scaled_up() -> bool:
        return await replicas(http, "slow") >= 1

    async def scaled_to_zero() -> bool:
        return await replicas(http, "slow") == 0

    await _until(scaled_up, 10, activator.log)

    # A pod (a real `wasmlet up`), ready in the pods' EndpointSlice: its load counts too.
    pod = start_server(images["slow"], "-k", cache_dir=cache_dir)  # what a pod of `slow` runs
    try:
        await _json(http, "POST", SLICES, _slice("slow-pods-abc", pod))
        await asyncio.gather(*[asyncio.to_thread(load, pod.url, "x", 4) for _ in range(3)])
        assert await replicas(http, "slow") >= 1  # busy pod: it stays
        # Idle (no requests anywhere): after the stable window and the cooldown, zero.
        await _until(scaled_to_zero, 20, activator.log)
    finally:
        pod.stop()


def _slice(name: str, pod: Server) -> dict[str, Any]:
    port = int(pod.url.rsplit(":", 1)[1])
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": "slow-pods"},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
        "ports": [{"name": "http-app", "port": port, "protocol": "TCP"}],
    }
