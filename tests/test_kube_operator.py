"""The kopf operator end to end against kmock (an in-memory Kubernetes API; see
tests/support/kube_emulator.py for what it does and does not emulate). No real API server runs
here."""

from __future__ import annotations

import asyncio
import base64
import inspect
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import kmock
import kopf
import pytest
import pytest_asyncio
from support.kube_emulator import ApiServer
from support.kube_operator import running_operator

from wasmlet.kube import FIELD_MANAGER, FINALIZER

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]

CR = "/apis/core.spinkube.dev/v1alpha1/namespaces/default"
CORE = "/api/v1/namespaces/default"
APPS = "/apis/apps/v1/namespaces/default"
KEDA_PATH = "/apis/keda.sh/v1alpha1/namespaces/default/scaledobjects/hello-autoscaler"
DISCOVERY = "/apis/discovery.k8s.io/v1/namespaces"
SLICE = f"{DISCOVERY}/default/endpointslices/hello-wasmlet"
GRACE = 1.0  # the operator's scale-down grace in these tests (5 s by default)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    api: ApiServer
    http: aiohttp.ClientSession
    webhook_port: int

    async def call(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        async with self.http.request(method, path, json=body, **kw) as r:
            assert r.status < 300, f"{method} {path}: {r.status} {await r.text()}"
            return await r.json()

    async def get(self, path: str) -> dict[str, Any] | None:
        async with self.http.get(path) as r:
            return await r.json() if r.status == 200 else None

    async def merge(self, path: str, body: Any) -> Any:
        headers = {"Content-Type": "application/merge-patch+json"}
        return await self.call("PATCH", path, body, headers=headers)

    async def wait(self, check: Callable[[], Any], timeout: float = 10.0) -> Any:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return result
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError("condition not met in time")
            await asyncio.sleep(0.05)

    def events(self, reason: str) -> list[dict[str, Any]]:
        found = []
        for (resource, _, _), obj in self.api.objects.items():
            if resource.plural == "events" and not obj.deleted and obj.raw.get("reason") == reason:
                found.append(obj.raw)
        return found


@pytest_asyncio.fixture
async def cluster() -> AsyncIterator[Cluster]:
    port = free_port()
    async with ApiServer() as api, kmock.Server(api) as server:
        url = str(server.url).rstrip("/")
        webhook = kopf.WebhookServer(addr="127.0.0.1", port=port, insecure=True)
        async with (
            running_operator(url, retry_delay=0.3, webhook=webhook, scale_down_grace=GRACE),
            aiohttp.ClientSession(url) as http,
        ):
            yield Cluster(api, http, port)


def executor(name: str = "containerd-shim-spin", **config: Any) -> dict[str, Any]:
    return {
        "apiVersion": "core.spinkube.dev/v1alpha1",
        "kind": "SpinAppExecutor",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "createDeployment": True,
            "deploymentConfig": config or {"runtimeClassName": "wasmtime-spin-v2"},
        },
    }


def spinapp(name: str = "hello", executor: str = "containerd-shim-spin", **spec: Any) -> dict:
    return {
        "apiVersion": "core.spinkube.dev/v1alpha1",
        "kind": "SpinApp",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"image": f"ghcr.io/x/{name}:v1", "executor": executor, "replicas": 1} | spec,
    }


async def test_create_update_scale_status_delete(cluster: Cluster) -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "creds", "namespace": "default"},
        "data": {"url": base64.b64encode(b"redis://db:6379").decode()},
    }
    await cluster.call("POST", f"{CORE}/secrets", secret)
    await cluster.call("POST", f"{CR}/spinappexecutors", executor())
    store = {
        "name": "default",
        "type": "redis",
        "options": [
            {"name": "url", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "url"}}}
        ],
    }
    app = spinapp(runtimeConfig={"keyValueStores": [store]})
    created = await cluster.call("POST", f"{CR}/spinapps", app)

    dep = await cluster.wait(lambda: cluster.get(f"{APPS}/deployments/hello"))
    assert dep["metadata"]["ownerReferences"][0]["uid"] == created["metadata"]["uid"]
    assert dep["spec"]["template"]["spec"]["runtimeClassName"] == "wasmtime-spin-v2"
    await cluster.wait(lambda: cluster.get(f"{CORE}/services/hello"))
    volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    first_secret = volumes["spin-runtime-config"]["secret"]["secretName"]
    config = await cluster.get(f"{CORE}/secrets/{first_secret}")
    assert config is not None
    assert 'url = "redis://db:6379"' in config["stringData"]["runtime-config.toml"]

    # server-side apply with our field manager, forced
    applies = [
        r for r in cluster.api["patch"] if "apply-patch" in r.headers.get("Content-Type", "")
    ]
    assert applies and all(
        r.params.get("fieldManager") == FIELD_MANAGER and r.params.get("force") == "true"
        for r in applies
    )

    # status: from the Deployment, kept current as the Deployment changes
    async def status() -> dict[str, Any]:
        return ((await cluster.get(f"{CR}/spinapps/hello")) or {}).get("status") or {}

    first = await cluster.wait(status)
    assert first["activeScheduler"] == "containerd-shim-spin"
    assert first["selector"].startswith("core.spinkube.dev/app-name=hello")
    deployment_status = {
        "status": {
            "replicas": 1,
            "readyReplicas": 1,
            "conditions": [
                {
                    "type": "Available",
                    "status": "True",
                    "reason": "MinimumReplicasAvailable",
                    "message": "up",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }
            ],
        }
    }
    await cluster.merge(f"{APPS}/deployments/hello/status", deployment_status)

    async def ready() -> bool:
        return (await status()).get("readyReplicas") == 1

    await cluster.wait(ready)
    available = (await status())["conditions"][0]
    assert (available["type"], available["status"]) == ("Available", "True")

    # update: a new runtime config gets a new Secret name (rollout); the old one goes
    store["options"] = [{"name": "url", "value": "redis://other:6379"}]
    await cluster.merge(
        f"{CR}/spinapps/hello",
        {
            "spec": {
                "runtimeConfig": {"keyValueStores": [store]},
                "variables": [{"name": "greeting", "value": "hi"}],
            }
        },
    )

    async def rolled() -> str | None:
        d = await cluster.get(f"{APPS}/deployments/hello")
        vols = {v["name"]: v for v in d["spec"]["template"]["spec"]["volumes"]} if d else {}
        name = vols.get("spin-runtime-config", {}).get("secret", {}).get("secretName")
        return name if name != first_secret else None

    second_secret = await cluster.wait(rolled)
    await cluster.wait(lambda: _gone(cluster, f"{CORE}/secrets/{first_secret}"))
    dep = await cluster.get(f"{APPS}/deployments/hello")
    env = dep["spec"]["template"]["spec"]["containers"][0]["env"]  # type: ignore[index]
    assert {"name": "SPIN_VARIABLE_GREETING", "value": "hi"} in env

    # scale through the /scale subresource (kubectl scale spinapp hello --replicas 3)
    await cluster.merge(f"{CR}/spinapps/hello/scale", {"spec": {"replicas": 3}})

    async def scaled() -> bool:
        d = await cluster.get(f"{APPS}/deployments/hello")
        return bool(d and d["spec"].get("replicas") == 3)

    await cluster.wait(scaled)

    # delete: everything the app owned goes with it
    await cluster.call("DELETE", f"{CR}/spinapps/hello")
    for path in (
        f"{APPS}/deployments/hello",
        f"{CORE}/services/hello",
        f"{CORE}/secrets/{second_secret}",
    ):
        await cluster.wait(lambda p=path: _gone(cluster, p))
    assert await cluster.get(f"{CORE}/secrets/creds")  # not ours: untouched


async def _gone(cluster: Cluster, path: str) -> bool:
    return await cluster.get(path) is None


async def test_executor_missing_then_created(cluster: Cluster) -> None:
    await cluster.call("POST", f"{CR}/spinapps", spinapp(executor="later"))
    events = await cluster.wait(lambda: cluster.events("MissingExecutor"))
    assert "SpinAppExecutor 'later' not found" in events[0]["message"]
    assert events[0]["type"] == "Warning"
    assert await cluster.get(f"{APPS}/deployments/hello") is None
    app = await cluster.get(f"{CR}/spinapps/hello")
    conditions = app["status"]["conditions"]  # type: ignore[index]
    assert conditions[0]["reason"] == "DeploymentNotFound"

    await cluster.call("POST", f"{CR}/spinappexecutors", executor("later", spinImage="wasmlet:1"))
    dep = await cluster.wait(lambda: cluster.get(f"{APPS}/deployments/hello"))
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "wasmlet:1"
    assert container["args"][:5] == ["up", "--listen", "0.0.0.0:80", "-f", "ghcr.io/x/hello:v1"]


async def test_executor_in_use_cannot_be_deleted(cluster: Cluster) -> None:
    await cluster.call("POST", f"{CR}/spinappexecutors", executor())
    await cluster.call("POST", f"{CR}/spinapps", spinapp())
    await cluster.wait(lambda: cluster.get(f"{APPS}/deployments/hello"))

    async def finalized() -> bool:
        ex = await cluster.get(f"{CR}/spinappexecutors/containerd-shim-spin")
        return FINALIZER in (ex or {}).get("metadata", {}).get("finalizers", [])

    await cluster.wait(finalized)
    await cluster.call("DELETE", f"{CR}/spinappexecutors/containerd-shim-spin")
    events = await cluster.wait(lambda: cluster.events("ExecutorInUse"))
    assert "used by SpinApp(s) hello" in events[0]["message"]
    held = await cluster.get(f"{CR}/spinappexecutors/containerd-shim-spin")
    assert held is not None and held["metadata"].get("deletionTimestamp")

    await cluster.call("DELETE", f"{CR}/spinapps/hello")
    await cluster.wait(lambda: _gone(cluster, f"{CR}/spinappexecutors/containerd-shim-spin"))


async def test_image_pull_errors_surface_in_status_and_events(cluster: Cluster) -> None:
    await cluster.call("POST", f"{CR}/spinappexecutors", executor())
    await cluster.call("POST", f"{CR}/spinapps", spinapp())
    await cluster.wait(lambda: cluster.get(f"{APPS}/deployments/hello"))
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "hello-abc",
            "namespace": "default",
            "labels": {"core.spinkube.dev/app-name": "hello"},
        },
        "spec": {"containers": [{"name": "hello", "image": "ghcr.io/x/hello:v1"}]},
        "status": {
            "containerStatuses": [
                {
                    "name": "hello",
                    "state": {
                        "waiting": {
                            "reason": "ImagePullBackOff",
                            "message": "Back-off pulling image",
                        }
                    },
                }
            ]
        },
    }
    await cluster.call("POST", f"{CORE}/pods", pod)
    events = await cluster.wait(lambda: cluster.events("ImagePullBackOff"))
    assert "pod hello-abc container hello" in events[0]["message"]

    async def unhealthy() -> dict[str, Any] | None:
        app = await cluster.get(f"{CR}/spinapps/hello")
        conds = {c["type"]: c for c in (app or {}).get("status", {}).get("conditions", [])}
        cond = conds.get("ContainersHealthy")
        return cond if cond and cond["status"] == "False" else None

    cond = await cluster.wait(unhealthy)
    assert cond["reason"] == "ImagePullBackOff"


async def test_operator_owned_autoscaler_never_both(cluster: Cluster) -> None:
    await cluster.call("POST", f"{CR}/spinappexecutors", executor())
    keda = {"type": "keda", "maxReplicas": 5, "cpuUtilization": 50}
    app = spinapp(
        enableAutoscaling=True,
        autoscaler=keda,
        resources={"limits": {"cpu": "500m", "memory": "128Mi"}},
    )
    del app["spec"]["replicas"]
    await cluster.call("POST", f"{CR}/spinapps", app)
    events = await cluster.wait(lambda: cluster.events("AutoscalerUnavailable"))
    assert "KEDA is not installed" in events[0]["message"]

    cluster.api.install_keda()
    scaled = await cluster.wait(
        lambda: cluster.get(KEDA_PATH),
    )
    assert scaled["spec"]["scaleTargetRef"]["name"] == "hello"
    dep = await cluster.get(f"{APPS}/deployments/hello")
    assert dep is not None and "replicas" not in dep["spec"]

    await cluster.merge(f"{CR}/spinapps/hello", {"spec": {"autoscaler": {"type": "hpa"}}})
    hpa_path = "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers/hello-autoscaler"
    await cluster.wait(lambda: cluster.get(hpa_path))
    await cluster.wait(lambda: _gone(cluster, KEDA_PATH))


def review(operation: str, obj: dict[str, Any] | None, old: dict[str, Any] | None = None) -> dict:
    kind = (obj or old or {})["kind"]
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "req-1",
            "kind": {"group": "core.spinkube.dev", "version": "v1alpha1", "kind": kind},
            "resource": {
                "group": "core.spinkube.dev",
                "version": "v1alpha1",
                "resource": f"{kind.lower()}s",
            },
            "namespace": "default",
            "operation": operation,
            "userInfo": {"username": "tester"},
            "object": obj,
            "oldObject": old,
            "dryRun": False,
        },
    }


async def test_admission_webhooks(cluster: Cluster) -> None:
    await cluster.call("POST", f"{CR}/spinappexecutors", executor("b-exec"))
    await cluster.call("POST", f"{CR}/spinappexecutors", executor("a-exec"))
    await cluster.wait(lambda: cluster.get(f"{CR}/spinappexecutors/a-exec"))
    await asyncio.sleep(0.3)  # the executors index is filled from the watch
    base = f"http://127.0.0.1:{cluster.webhook_port}"
    async with aiohttp.ClientSession(base) as hook:

        async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
            async with hook.post(path, json=body) as r:
                assert r.status == 200, await r.text()
                return (await r.json())["response"]

        app = spinapp(executor="")
        del app["spec"]["executor"], app["spec"]["replicas"]
        mutated = await post("/mutate-spinapp", review("CREATE", app))
        assert mutated["allowed"] is True
        patch = base64.b64decode(mutated["patch"]).decode()
        assert '"a-exec"' in patch and "/spec/executor" in patch

        bad = spinapp(executor="a-exec", enableAutoscaling=True, replicas=3)
        rejected = await post("/validate-spinapp", review("CREATE", bad))
        assert rejected["allowed"] is False
        assert "spec.replicas: must be unset" in rejected["status"]["message"]

        good = await post("/validate-spinapp", review("CREATE", spinapp(executor="a-exec")))
        assert good["allowed"] is True

        both = executor("c", runtimeClassName="x", spinImage="y")
        rejected = await post("/validate-spinappexecutor", review("CREATE", both))
        assert rejected["allowed"] is False and "not both" in rejected["status"]["message"]

        await cluster.call("POST", f"{CR}/spinapps", spinapp(executor="a-exec"))
        await cluster.wait(lambda: cluster.get(f"{APPS}/deployments/hello"))
        await asyncio.sleep(0.3)
        in_use = await post("/validate-spinappexecutor", review("DELETE", None, executor("a-exec")))
        assert in_use["allowed"] is False
        assert "used by SpinApp(s) hello" in in_use["status"]["message"]


async def test_install_apply_through_the_api() -> None:
    from wasmlet.errors import WasmletError
    from wasmlet.kube import install
    from wasmlet.kube.cli import apply_all

    async with ApiServer() as api, kmock.Server(api) as server:
        url = str(server.url).rstrip("/")
        # kmock reads /api/v1/namespaces/NAME as "namespace NAME", not as a Namespace object
        objs = [o for o in install.objects(webhooks=False) if o["kind"] != "Namespace"]
        lines = await apply_all(objs, url)
        assert "CustomResourceDefinition/spinapps.core.spinkube.dev applied" in lines
        assert "Deployment/wasmlet-operator applied" in lines
        applies = [r for r in api["patch"] if "apply-patch" in r.headers.get("Content-Type", "")]
        assert {r.params.get("fieldManager") for r in applies} == {"wasmlet-install"}
        with pytest.raises(WasmletError, match="cert-manager is not installed"):
            await apply_all([o for o in install.objects() if o["kind"] != "Namespace"], url)


async def test_list_label_selectors_are_filtered_by_the_server() -> None:
    """KubeClient.list leaves label selectors to the API server; the emulator applies them."""
    from wasmlet.kube.client import ApiError, KubeClient

    labelled = {
        "a": {"app": "x", "tier": "web"},
        "b": {"app": "x"},
        "c": {"app": "y", "tier": "db"},
        "d": {},
    }
    async with ApiServer() as api, kmock.Server(api) as server:
        url = str(server.url).rstrip("/")
        async with aiohttp.ClientSession(url) as http:
            for name, labels in labelled.items():
                pod = {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": name, "namespace": "default", "labels": labels},
                }
                async with http.post(f"{CORE}/pods", json=pod) as r:
                    assert r.status < 300, await r.text()
        client = await KubeClient.connect(url)
        try:

            async def names(selector: str | None) -> list[str]:
                items = await client.list("Pod", "default", selector)
                return sorted(i["metadata"]["name"] for i in items)

            assert await names(None) == ["a", "b", "c", "d"]
            assert await names("app=x") == ["a", "b"]
            assert await names("app==x,tier=web") == ["a"]
            assert await names("app!=x") == ["c", "d"]  # also objects without the label
            assert await names("tier") == ["a", "c"]
            assert await names("!tier") == ["b", "d"]
            assert await names("tier in (web, db),app notin (y)") == ["a"]
            assert await names("app=z") == []
            with pytest.raises(ApiError) as refused:
                await client.list("Pod", "default", "app in x")
            assert refused.value.status == 400
            # the selector went to the server as the query parameter
            assert {r.params.get("labelSelector") for r in api["list"]} >= {"app=x", "!tier"}
        finally:
            await client.close()


# -- scale to zero with the activator (autoscaler type wasmlet) ------------------------------


def endpoint_slice(
    service: str,
    namespace: str,
    name: str,
    *ips: str,
    port: int = 80,
    port_name: str = "http",
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An EndpointSlice as Kubernetes' EndpointSlice controller writes it for a Service (it
    copies the Service's labels onto it)."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                "kubernetes.io/service-name": service,
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                **(labels or {}),
            },
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in ips],
        "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
    }


def activator_slice(*ips: str) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": "wasmlet-activator"}
    return endpoint_slice(
        "wasmlet-activator",
        "wasmlet-system",
        "wasmlet-activator-x1",
        *ips,
        port=8080,
        labels=labels,
    )


def pods_slice(*ips: str) -> dict[str, Any]:
    labels = {"core.spinkube.dev/app-name": "hello", "app.kubernetes.io/component": "pods"}
    return endpoint_slice(
        "hello-pods", "default", "hello-pods-x1", *ips, port_name="http-app", labels=labels
    )


def wasmlet_app(**spec: Any) -> dict[str, Any]:
    app = spinapp(enableAutoscaling=True, autoscaler={"type": "wasmlet", "maxReplicas": 3}, **spec)
    if "replicas" not in spec:
        del app["spec"]["replicas"]
    return app


async def routed(cluster: Cluster) -> tuple[list[str], int] | None:
    """The addresses and port of Service hello's one EndpointSlice."""
    found = await cluster.get(SLICE)
    if found is None:
        return None
    return [a for e in found["endpoints"] for a in e["addresses"]], found["ports"][0]["port"]


async def replicas(cluster: Cluster) -> int | None:
    dep = await cluster.get(f"{APPS}/deployments/hello")
    return None if dep is None else dep["spec"].get("replicas")


async def served_by(cluster: Cluster) -> str | None:
    app = await cluster.get(f"{CR}/spinapps/hello")
    return ((app or {}).get("status") or {}).get("servedBy")


def assert_proxy_before_zero(cluster: Cluster, since: int) -> None:
    """In the API server's request log (from the `since`-th PATCH on): the slice was applied
    pointing at the activator before the Deployment was applied with zero replicas."""
    writes = [
        (r.resource.plural, r.name, r.data)
        for r in list(cluster.api["patch"])[since:]
        if "apply-patch" in r.headers.get("Content-Type", "")
    ]
    to_proxy = [
        i
        for i, (res, name, body) in enumerate(writes)
        if (res, name) == ("endpointslices", "hello-wasmlet") and body["ports"][0]["port"] == 8080
    ]
    to_zero = [
        i
        for i, (res, name, body) in enumerate(writes)
        if (res, name) == ("deployments", "hello") and body["spec"]["replicas"] == 0
    ]
    assert to_proxy and to_zero and to_proxy[0] < to_zero[0], writes


async def test_wasmlet_serve_and_proxy_flip_in_order(cluster: Cluster) -> None:
    loop = asyncio.get_running_loop()
    await cluster.call("POST", f"{CR}/spinappexecutors", executor())
    await cluster.call(
        "POST", f"{DISCOVERY}/wasmlet-system/endpointslices", activator_slice("10.0.0.5")
    )
    await cluster.call("POST", f"{CR}/spinapps", wasmlet_app())

    # at zero pods: Service hello has no selector, its slice points at the activator
    assert await cluster.wait(lambda: _is(routed(cluster), (["10.0.0.5"], 8080)))
    svc = await cluster.wait(lambda: cluster.get(f"{CORE}/services/hello"))  # after the slice
    assert "selector" not in svc["spec"]
    assert svc["spec"]["ports"] == [{"name": "http", "port": 80, "protocol": "TCP"}]
    pods_svc = await cluster.get(f"{CORE}/services/hello-pods")
    assert pods_svc is not None
    assert pods_svc["spec"]["selector"] == {"core.spinkube.dev/app.hello.status": "ready"}
    assert pods_svc["metadata"]["labels"]["app.kubernetes.io/component"] == "pods"
    assert await replicas(cluster) == 0
    assert await cluster.wait(lambda: _is(served_by(cluster), "activator"))
    assert (
        await cluster.get(
            "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers/hello-autoscaler"
        )
        is None
    )

    # the activator's endpoints change: slices in proxy mode follow
    await cluster.merge(
        f"{DISCOVERY}/wasmlet-system/endpointslices/wasmlet-activator-x1",
        {"endpoints": activator_slice("10.0.0.5", "10.0.0.6")["endpoints"]},
    )
    assert await cluster.wait(lambda: _is(routed(cluster), (["10.0.0.5", "10.0.0.6"], 8080)))

    # load: the activator asks for pods through /scale; the Deployment scales first and the
    # slice stays on the activator until a pod is ready
    await cluster.merge(f"{CR}/spinapps/hello/scale", {"spec": {"replicas": 2}})
    assert await cluster.wait(lambda: _is(replicas(cluster), 2))
    await asyncio.sleep(0.3)
    assert await routed(cluster) == (["10.0.0.5", "10.0.0.6"], 8080)
    assert await served_by(cluster) == "activator"

    # a pod is ready (Kubernetes writes it into hello-pods' slice): serve mode
    await cluster.call("POST", f"{DISCOVERY}/default/endpointslices", pods_slice("10.1.0.7"))
    assert await cluster.wait(lambda: _is(routed(cluster), (["10.1.0.7"], 80)))
    assert await cluster.wait(lambda: _is(served_by(cluster), "pods"))
    assert await replicas(cluster) == 2

    # idle: /scale to 0 moves the traffic to the activator first, the pods go after the grace
    mark = len(cluster.api["patch"])
    asked = loop.time()  # the flip comes after this, the Deployment's zero GRACE after that
    await cluster.merge(f"{CR}/spinapps/hello/scale", {"spec": {"replicas": 0}})
    assert await cluster.wait(lambda: _is(routed(cluster), (["10.0.0.5", "10.0.0.6"], 8080)))
    assert await cluster.wait(lambda: _is(served_by(cluster), "activator"))
    assert await cluster.wait(lambda: _is(replicas(cluster), 0))
    assert loop.time() - asked >= GRACE
    assert_proxy_before_zero(cluster, mark)
    app = await cluster.get(f"{CR}/spinapps/hello")
    assert app is not None and app["status"]["servedBySince"].endswith("Z")


async def test_wasmlet_waits_for_the_activator_and_cleans_up_when_switched_off(
    cluster: Cluster,
) -> None:
    await cluster.call("POST", f"{CR}/spinappexecutors", executor())
    await cluster.call("POST", f"{CR}/spinapps", wasmlet_app(replicas=2))
    assert await cluster.wait(lambda: _is(replicas(cluster), 2))
    await cluster.call("POST", f"{DISCOVERY}/default/endpointslices", pods_slice("10.1.0.7"))
    assert await cluster.wait(lambda: _is(routed(cluster), (["10.1.0.7"], 80)))

    # to zero with no activator endpoint: nothing else could answer, so the pods stay
    await cluster.merge(f"{CR}/spinapps/hello/scale", {"spec": {"replicas": 0}})
    events = await cluster.wait(lambda: cluster.events("ActivatorUnavailable"))
    assert "no ready endpoint of Service wasmlet-activator" in events[0]["message"]
    await asyncio.sleep(2 * GRACE)
    assert await routed(cluster) == (["10.1.0.7"], 80)
    assert await replicas(cluster) == 2

    # the activator comes up: its slice event moves the traffic, and the scale-down grace is
    # finished by the SpinApp's own handler (status.servedBySince changed)
    loop = asyncio.get_running_loop()
    mark = len(cluster.api["patch"])
    asked = loop.time()
    await cluster.call(
        "POST", f"{DISCOVERY}/wasmlet-system/endpointslices", activator_slice("10.0.0.5")
    )
    assert await cluster.wait(lambda: _is(routed(cluster), (["10.0.0.5"], 8080)))
    assert await cluster.wait(lambda: _is(replicas(cluster), 0))
    assert loop.time() - asked >= GRACE
    assert_proxy_before_zero(cluster, mark)

    # no longer type wasmlet: Service hello selects the pods again; the rest goes
    await cluster.merge(
        f"{CR}/spinapps/hello",
        {"spec": {"enableAutoscaling": False, "replicas": 1, "autoscaler": None}},
    )

    async def plain() -> bool:
        svc = await cluster.get(f"{CORE}/services/hello")
        return bool(svc and svc["spec"].get("selector"))

    await cluster.wait(plain)
    await cluster.wait(lambda: _gone(cluster, SLICE))
    await cluster.wait(lambda: _gone(cluster, f"{CORE}/services/hello-pods"))
    assert await cluster.wait(lambda: _is(served_by(cluster), None))
    assert await replicas(cluster) == 1


async def _is(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


async def test_objects_written_for_a_deleted_owner_are_collected() -> None:
    """As the API server's GC does: a write racing its owner's deletion leaves no orphan."""
    from wasmlet.kube.client import KubeClient

    async with ApiServer() as api, kmock.Server(api) as server:
        url = str(server.url).rstrip("/")
        client = await KubeClient.connect(url)
        try:
            owner = await client.apply(executor())
            ref = {
                "apiVersion": owner["apiVersion"],
                "kind": "SpinAppExecutor",
                "name": owner["metadata"]["name"],
                "uid": owner["metadata"]["uid"],
            }

            def secret(name: str, uid: str) -> dict[str, Any]:
                meta = {"name": name, "namespace": "default"}
                return {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": meta | {"ownerReferences": [ref | {"uid": uid}]},
                }

            await client.apply(secret("kept", ref["uid"]))
            await client.apply(secret("stale", "uid-of-an-older-executor"))
            assert await client.get("Secret", "default", "kept") is not None
            assert await client.get("Secret", "default", "stale") is None
            await client.delete("SpinAppExecutor", "default", "containerd-shim-spin")
            assert await client.get("Secret", "default", "kept") is None
            await client.apply(secret("late", ref["uid"]))  # after the owner went
            assert await client.get("Secret", "default", "late") is None
        finally:
            await client.close()


async def test_activator_changes_reconcile_wasmlet_apps_once_per_endpoint_set() -> None:
    """Controller.activator_changed: every app again only when the ready set changed, and
    again on the next event after a failure."""
    from wasmlet.kube.controller import Controller

    class Client:
        slices = [activator_slice("10.0.0.5")]
        selectors: list[tuple[str | None, str | None]] = []

        async def list(self, kind: str, ns: str | None, selector: str | None) -> list[Any]:
            self.selectors.append((ns, selector))
            return self.slices

    class Recorder:
        def warn(self, body: Any, reason: str, message: str) -> None: ...

        def info(self, body: Any, reason: str, message: str) -> None: ...

    client = Client()
    ctl = Controller(client, Recorder())  # type: ignore[arg-type]
    reconciled: list[str] = []
    failing: set[str] = set()

    async def reconcile_quietly(namespace: str, name: str) -> bool:
        reconciled.append(name)
        return name not in failing

    ctl._reconcile_quietly = reconcile_quietly  # type: ignore[method-assign]
    apps = [("default", "a"), ("other", "b")]
    assert await ctl.activator_changed(apps) == []
    assert client.selectors == [("wasmlet-system", "kubernetes.io/service-name=wasmlet-activator")]
    assert sorted(reconciled) == ["a", "b"]
    assert await ctl.activator_changed(apps) == []  # same ready endpoints: nothing to do
    assert len(reconciled) == 2
    not_ready = activator_slice("10.0.0.6")
    not_ready["endpoints"][0]["conditions"] = {"ready": False}
    client.slices = [activator_slice("10.0.0.5"), not_ready]
    assert await ctl.activator_changed(apps) == []  # a not-ready endpoint changes nothing
    assert len(reconciled) == 2
    client.slices = [activator_slice("10.0.0.5", "10.0.0.6")]
    failing.add("b")
    assert await ctl.activator_changed(apps) == ["other/b"]
    assert len(reconciled) == 4
    failing.clear()
    assert await ctl.activator_changed(apps) == []  # retried although the set is the same
    assert len(reconciled) == 6
