"""The activator end to end: a real `wasmlet kube activator` process against kmock (an
in-memory Kubernetes API, tests/support/kube_emulator.py; no real API server runs here), with
app images in a real registry (Debian's docker-registry) and real pods played by `wasmlet up`
processes whose addresses the tests write into EndpointSlices, as Kubernetes would."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
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
from support.kube_operator import running_operator
from support.server import Server, run_cli, start_server, write_app
from support.triggers import redis_client

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


@asynccontextmanager
async def running_activator(server: str, tmp_path: Path, *extra: str) -> AsyncIterator[Activator]:
    """`wasmlet kube activator` against API server `server` (with `extra` arguments),
    answering when the block starts."""
    port = free_port()
    log = tmp_path / "activator.log"
    cmd = [
        sys.executable, "-m", "wasmlet.cli", "kube", "activator", "--server", server,
        "--listen", f"127.0.0.1:{port}", "-k", "--state-dir", str(tmp_path / "state"),
        "--cache-dir", str(tmp_path / "cache"), "--sample-interval", "0.2", *extra,
    ]  # fmt: skip
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, text=True)
    activator = Activator(proc, f"http://127.0.0.1:{port}", log)
    try:
        await _until(lambda: _answers(activator), 30, log)
        yield activator
    finally:
        proc.terminate()
        proc.wait(15)


@pytest_asyncio.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[tuple[aiohttp.ClientSession, Activator]]:
    async with ApiServer() as api, kmock.Server(api) as server:
        url = str(server.url).rstrip("/")
        async with (
            running_activator(url, tmp_path) as activator,
            aiohttp.ClientSession(url) as http,
        ):
            yield http, activator


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


# The whole of scale to zero: the operator and the activator against one API server. The test
# plays the rest of Kubernetes: the EndpointSlice controller (it writes the slices of the
# activator's and the pods' Services), the kubelet (a pod is a `wasmlet up` process, started
# when the Deployment asks for one and stopped when it goes to zero) and kube-proxy (a request
# to Service `slow` goes to an endpoint of its EndpointSlice `slow-wasmlet`, read per request;
# `NETWORK` maps the endpoints' cluster addresses to this machine's ports).

ACTIVATOR_IP, POD_IP = "10.0.0.5", "10.1.0.7"
DISCOVERY = "/apis/discovery.k8s.io/v1/namespaces"


def _endpoints(
    service: str, ns: str, name: str, ip: str, port: int, **labels: str
) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": {"kubernetes.io/service-name": service, **labels},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip], "conditions": {"ready": True}}],
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
    }


class KubeProxy:
    """Requests to Service `app`, routed as kube-proxy would from its EndpointSlice. Blocking
    (the API server runs on the test's event loop): call it off the loop."""

    def __init__(self, api: str, app: str) -> None:
        self.api, self.app = api, app
        self.network: dict[tuple[str, int], str] = {}  # (cluster IP, port) -> local URL

    def endpoint(self) -> tuple[str, int] | None:
        path = f"{DISCOVERY}/default/endpointslices/{self.app}-wasmlet"
        r = httpx.get(self.api + path, timeout=5)
        if r.status_code != 200:
            return None
        s = r.json()
        ready = [e for e in s["endpoints"] if e.get("conditions", {}).get("ready") is not False]
        return (ready[0]["addresses"][0], s["ports"][0]["port"]) if ready else None

    def get(self, client: httpx.Client | None = None) -> tuple[tuple[str, int] | None, int]:
        """(the endpoint it went to, the status): 0 when the endpoint did not answer."""
        endpoint = self.endpoint()
        url = self.network.get(endpoint) if endpoint else None
        if url is None:
            return endpoint, 0
        try:
            get = client.get if client is not None else httpx.get
            r = get(url + "/", headers={"host": f"{self.app}.default.svc"})
        except httpx.TransportError:
            return endpoint, 0
        return endpoint, r.status_code


async def test_scale_to_zero_end_to_end(
    images: dict[str, str], tmp_path: Path, cache_dir: Path
) -> None:
    autoscaler = {
        "targetConcurrency": 1,
        "stableWindowSeconds": 6,
        "scaleToZero": {"enabled": True, "cooldownPeriodSeconds": 2},
    }
    async with ApiServer() as api, kmock.Server(api) as server:
        url = str(server.url).rstrip("/")
        async with (
            running_operator(url, retry_delay=0.3, scale_down_grace=1.0),
            running_activator(url, tmp_path) as activator,
            aiohttp.ClientSession(url) as http,
        ):
            proxy = KubeProxy(url, "slow")
            proxy.network[(ACTIVATOR_IP, 8080)] = activator.url
            act = _endpoints("wasmlet-activator", "wasmlet-system", "act-1", ACTIVATOR_IP, 8080)
            await _json(http, "POST", f"{DISCOVERY}/wasmlet-system/endpointslices", act)
            executor = {
                "apiVersion": "core.spinkube.dev/v1alpha1",
                "kind": "SpinAppExecutor",
                "metadata": {"name": "wasmlet", "namespace": "default"},
                "spec": {
                    "createDeployment": True,
                    "deploymentConfig": {"runtimeClassName": "wasmtime-spin-v2"},
                },
            }
            await _json(http, "POST", f"{CR}/spinappexecutors", executor)
            await _json(
                http, "POST", f"{CR}/spinapps", spinapp("slow", images["slow"], **autoscaler)
            )

            # at zero pods, Service slow leads to the activator, which answers
            on_activator = (ACTIVATOR_IP, 8080)
            await _until(lambda: proxy.get() == (on_activator, 200), 30, activator.log)
            assert await deployment_replicas(http, "slow") == 0

            # sustained load through the Service: the activator asks for a pod, the
            # Deployment follows, and the Service stays on the activator until a pod is ready
            def load(seconds: float) -> list[int]:
                end, codes = time.monotonic() + seconds, []
                with httpx.Client(timeout=30) as c:
                    while time.monotonic() < end:
                        codes.append(proxy.get(c)[1])
                return codes

            codes = await asyncio.gather(*[asyncio.to_thread(load, 5) for _ in range(3)])
            assert {c for batch in codes for c in batch} == {200}

            async def deployment_up() -> bool:
                return (await deployment_replicas(http, "slow") or 0) >= 1

            await _until(deployment_up, 15, activator.log)
            assert await asyncio.to_thread(proxy.endpoint) == on_activator

            # the kubelet: the pod starts and is ready; the Service moves to it. Requests
            # sent throughout (one after another) all succeed.
            first = threading.Event()  # a request has gone out before the pod starts

            def across_the_flip() -> list[tuple[tuple[str, int] | None, int]]:
                seen: list[tuple[tuple[str, int] | None, int]] = []
                deadline = time.monotonic() + 30
                with httpx.Client(timeout=30) as c:
                    while time.monotonic() < deadline:
                        seen.append(proxy.get(c))
                        first.set()
                        if [e for e, _ in seen].count((POD_IP, 80)) >= 2:
                            break
                return seen

            # Started, and its first request answered, before the pod starts: else the
            # thread may only begin once the Service has flipped (start_server blocks the
            # loop that starts it).
            flip = asyncio.ensure_future(asyncio.to_thread(across_the_flip))
            assert await asyncio.to_thread(first.wait, 30)
            pod = start_server(images["slow"], "-k", cache_dir=cache_dir)
            try:
                proxy.network[(POD_IP, 80)] = pod.url
                labels = {
                    "core.spinkube.dev/app-name": "slow",
                    "app.kubernetes.io/component": "pods",
                }
                pods = _endpoints("slow-pods", "default", "slow-pods-1", POD_IP, 80, **labels)
                await _json(http, "POST", f"{DISCOVERY}/default/endpointslices", pods)
                await _until(lambda: proxy.endpoint() == (POD_IP, 80), 10, activator.log)
                seen = await flip
                assert all(code == 200 for _, code in seen), seen
                assert seen[0][0] == on_activator and seen[-1][0] == (POD_IP, 80), seen
                served = httpx.get(pod.url + "/.well-known/wasmlet/load", timeout=5).json()
                assert await asyncio.to_thread(proxy.get) == ((POD_IP, 80), 200)
                after = httpx.get(pod.url + "/.well-known/wasmlet/load", timeout=5).json()
                assert after["requests"] > served["requests"]  # the pod answered, not the activator

                # idle: the activator scales to zero; the operator moves the Service to the
                # activator first and the Deployment to zero after the grace, when the
                # kubelet stops the pod. Requests sent throughout all succeed.
                async def spinapp_at_zero() -> bool:
                    return await replicas(http, "slow") == 0

                await _until(spinapp_at_zero, 30, activator.log)
                trickle: list[tuple[tuple[str, int] | None, int]] = []

                async def kubelet_stops_the_pod() -> bool:
                    trickle.append(await asyncio.to_thread(proxy.get))
                    if await deployment_replicas(http, "slow") != 0:
                        return False
                    await asyncio.to_thread(pod.stop)
                    return True

                await _until(kubelet_stops_the_pod, 20, activator.log)
                for _ in range(3):
                    trickle.append(await asyncio.to_thread(proxy.get))
                assert all(code == 200 for _, code in trickle), trickle
                assert trickle[-1] == (on_activator, 200)
                assert await served_by(http, "slow") == "activator"
            finally:
                pod.stop()


async def deployment_replicas(http: aiohttp.ClientSession, name: str) -> int | None:
    async with http.get(f"/apis/apps/v1/namespaces/default/deployments/{name}") as r:
        return (await r.json())["spec"].get("replicas") if r.status == 200 else None


async def served_by(http: aiohttp.ClientSession, name: str) -> str | None:
    app = await _json(http, "GET", f"{CR}/spinapps/{name}")
    return (app.get("status") or {}).get("servedBy")


MESSAGES = """
spin_manifest_version = 2
[application]
name = "{name}"
[application.trigger.redis]
address = "redis://127.0.0.1:6379"
[[trigger.redis]]
channel = "{channel}"
component = "echo"
[component.echo]
source = "{redis}"
{http}"""
HTTP_ROUTE = """[[trigger.http]]
route = "/..."
component = "c"
[component.c]
source = "{source}"
"""


async def test_apps_with_message_triggers_are_served_for_http_only(
    cluster: tuple[aiohttp.ClientSession, Activator],
    registry: Registry,
    tmp_path: Path,
) -> None:
    """The activator runs no message trigger (an app's pods do): an app with only a Redis
    trigger is not served, with the reason; one with HTTP too has its HTTP served here and is
    not subscribed by the activator."""
    client = redis_client()
    channel = f"activator-{uuid.uuid4().hex}"
    http, activator = cluster
    for name, route in (("queue", ""), ("mixed", HTTP_ROUTE.format(source=component("hello")))):
        manifest = MESSAGES.format(
            name=name, channel=channel, redis=component("python-redis"), http=route
        )
        app = write_app(tmp_path / name, manifest)
        ref = registry.ref(f"{name}:v1")
        r = run_cli("registry", "push", ref, "-f", str(app), "-k")
        assert r.returncode == 0, r.stderr
        await _json(http, "POST", f"{CR}/spinapps", spinapp(name, ref))
    await _until(lambda: "queue.default" in activator.status()["not_served"], 30, activator.log)
    assert (
        "no HTTP trigger (it has redis triggers)"
        in activator.status()["not_served"]["queue.default"]
    )
    assert activator.get("queue.default").status_code == 503
    await _until(lambda: activator.serves("mixed.default"), 60, activator.log)
    r = activator.get("mixed.default")
    assert r.status_code == 200 and r.text.startswith("Hello")
    assert dict(client.pubsub_numsub(channel)).get(channel.encode(), 0) == 0
    client.close()


async def test_the_activator_serves_metrics_and_counts_cold_starts(
    images: dict[str, str], tmp_path: Path
) -> None:
    """`--metrics-listen`: the activator's apps measured by the host core as under `wasmlet
    host` (the app's first request builds it: a cold start), and its status page."""
    from prometheus_client.parser import text_string_to_metric_families

    async with ApiServer() as api, kmock.Server(api) as server:
        url = str(server.url).rstrip("/")
        async with (
            running_activator(url, tmp_path, "--metrics-listen", "127.0.0.1:0") as activator,
            aiohttp.ClientSession(url) as http,
        ):
            line = next(x for x in activator.log.read_text().splitlines() if "Metrics: " in x)
            base = line.split("Metrics: ")[1].removesuffix("metrics")
            await _json(http, "POST", f"{CR}/spinapps", spinapp("hello", images["hello"]))
            await _until(lambda: activator.serves("hello.default"), 30, activator.log)
            for _ in range(3):
                assert activator.get("hello.default").status_code == 200
            assert activator.get("nosuch.default").status_code == 404  # no app: not counted
            text = httpx.get(base + "metrics", timeout=10).text
            status = httpx.get(base + "status.json", timeout=10).json()
    samples = [
        (s.name, s.labels, s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]

    def value(name: str, **labels: str) -> float:
        return sum(v for n, ls, v in samples if n == name and labels.items() <= ls.items())

    # The app's own metrics carry its manifest name; the host's, the name it serves it by.
    http_count = "http_server_request_duration_seconds_count"
    assert value(http_count, app="hello", component="c", http_route="/...") == 3
    assert value("wasmlet_instantiation_duration_seconds_count", app="hello") == 3
    assert value("wasmlet_host_requests_total", app="hello.default", cold_start="true") == 1
    assert value("wasmlet_host_requests_total", app="hello.default", cold_start="false") == 2
    assert value("wasmlet_host_cold_start_duration_seconds_count", app="hello.default") == 1
    assert value("wasmlet_compile_cache_lookups_total") >= 1  # precompiled when created
    (app,) = status["apps"]
    assert app["name"] == "hello.default" and app["state"] == "ready"
    assert app["source"] == images["hello"]
    assert app["routes"][0]["route"] == "/..." and app["routes"][0]["requests"] == 3
    assert app["host"] == {"requests": 3, "cold_starts": 1}
