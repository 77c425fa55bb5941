"""The operator and apps without an HTTP trigger: it reads each app's trigger types from its
image (the locked app in a real registry, Debian's docker-registry, open or behind htpasswd
Basic auth), and gives an app with only message triggers no Service, no container port and no
HTTP probes; autoscaler type wasmlet is refused where the activator cannot stand in for the
pods. End to end through kopf against kmock (tests/support/kube_emulator.py: no real API server
runs here), every object it writes validated strictly against Kubernetes' schemas; and the
pure rules on their own."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import kmock
import pytest
import pytest_asyncio
from fixtures.oci.registry import REGISTRY_BIN, Registry, htpasswd, start_registry
from support.component_guests import component
from support.env import TESTBED, require_tool
from support.kube_emulator import ApiServer
from support.kube_operator import running_operator
from support.server import write_app
from test_kube_operator import APPS, CORE, CR, Cluster, executor

from wasmlet.kube import reconcile
from wasmlet.kube.apptriggers import (
    AppTriggers,
    TriggerReader,
    activator_problem,
    pull_secret_credentials,
    read_triggers,
)
from wasmlet.kube.models import SpinApp, SpinAppExecutor
from wasmlet.kube.validation import validate
from wasmlet.loader import load_app
from wasmlet.oci import push_app
from wasmlet.oci.credentials import Credentials
from wasmlet.oci.errors import (
    ReferenceNotFoundError,
    RegistryAuthError,
    RegistryUnreachableError,
)
from wasmlet.oci.progress import Quiet

USER, PASSWORD = "ada", "lovelace"


def manifest(name: str, http: bool, redis: bool = True) -> str:
    parts = [f'spin_manifest_version = 2\n[application]\nname = "{name}"\n']
    if redis:
        parts.append(
            '[application.trigger.redis]\naddress = "redis://127.0.0.1:6379"\n'
            '[[trigger.redis]]\nchannel = "orders"\ncomponent = "echo"\n'
            f'[component.echo]\nsource = "{component("python-redis")}"\n'
        )
    if http:
        parts.append(
            '[[trigger.http]]\nroute = "/..."\ncomponent = "web"\nexecutor = { type = "wagi" }\n'
            f'[component.web]\nsource = "{TESTBED}"\n'
        )
    return "".join(parts)


@pytest.fixture(scope="module")
def registries(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, Registry]]:
    """(open, behind Basic auth)."""
    require_tool(REGISTRY_BIN, "docker-registry")
    work = tmp_path_factory.mktemp("registries")
    users = htpasswd(work / "htpasswd", {USER: PASSWORD})
    open_ = start_registry(work / "open")
    locked = start_registry(
        work / "basic", {"htpasswd": {"realm": "wasmlet-test", "path": str(users)}}
    )
    yield open_, locked
    open_.stop()
    locked.stop()


@pytest.fixture(scope="module")
def images(
    registries: tuple[Registry, Registry], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """redis (only a Redis trigger), both (HTTP and Redis), web (HTTP only), private (only
    Redis, in the registry behind Basic auth)."""
    open_, locked = registries
    refs = {}
    config = tmp_path_factory.mktemp("config")
    (config / "auth.json").write_text(
        json.dumps(
            {"auths": {locked.host: {"auth": base64.b64encode(f"{USER}:{PASSWORD}".encode())
                                     .decode()}}}
        )
    )  # fmt: skip
    with pytest.MonkeyPatch.context() as mp:  # the push's credentials, not the operator's
        mp.setenv("WASMLET_CONFIG_DIR", str(config))
        mp.setenv("DOCKER_CONFIG", str(config / "docker"))
        for name, http, redis, registry in (
            ("redis", False, True, open_),
            ("both", True, True, open_),
            ("web", True, False, open_),
            ("private", False, True, locked),
        ):
            app = write_app(tmp_path_factory.mktemp(name), manifest(name, http, redis))
            refs[name] = registry.ref(f"{name}:v1")
            push_app(load_app(app), refs[name], insecure=True, progress=Quiet())
    return refs


@pytest.fixture
def no_local_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator finds no credentials of this machine: only the app's pull Secrets."""
    monkeypatch.setenv("WASMLET_CONFIG_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "none"))


# -- pure: what is read, and what is made of it -------------------------------------------


def test_read_triggers_from_images(
    images: dict[str, str], registries: tuple[Registry, Registry], no_local_credentials: None
) -> None:
    assert read_triggers(images["redis"], None, True).types == {"redis"}
    assert read_triggers(images["both"], None, True).types == {"http", "redis"}
    assert read_triggers(images["web"], None, True).messages == []
    with pytest.raises(RegistryAuthError):
        read_triggers(images["private"], None, True)
    creds = Credentials(USER, PASSWORD, "test")
    assert read_triggers(images["private"], creds, True).types == {"redis"}
    with pytest.raises(ReferenceNotFoundError):
        read_triggers(registries[0].ref("missing:v1"), None, True)


def test_pull_secret_credentials_pick_the_registry() -> None:
    def secret(name: str, auths: dict[str, Any]) -> dict[str, Any]:
        raw = json.dumps({"auths": auths}).encode()
        return {"metadata": {"name": name}, "data": {".dockerconfigjson": base64.b64encode(raw)}}

    token = base64.b64encode(b"u:p").decode()
    found = pull_secret_credentials(
        [None, secret("other", {"ghcr.io": {"auth": token}}),
         secret("mine", {"https://reg.example:5000": {"username": "a", "password": "b"}})],
        "reg.example:5000",
    )  # fmt: skip
    assert found == Credentials("a", "b", "Secret mine")
    assert pull_secret_credentials([secret("x", {"ghcr.io": {"auth": token}})], "ghcr.io") == (
        Credentials("u", "p", "Secret x")
    )
    assert pull_secret_credentials([secret("x", {"ghcr.io": {"auth": token}})], "quay.io") is None


def test_reader_remembers_and_retries_failures() -> None:
    calls: list[str] = []
    now = [0.0]

    def read(image: str, creds: Credentials | None, insecure: bool) -> AppTriggers:
        calls.append(image)
        if "bad" in image:
            raise RuntimeError("no registry")
        if image.startswith("down.example"):
            raise RegistryUnreachableError("registry down.example: cannot connect")
        return AppTriggers(frozenset({"mqtt"}))

    async def lookup(namespace: str, name: str) -> None:
        return None

    reader = TriggerReader(clock=lambda: now[0], read=read)

    async def go(image: str) -> AppTriggers:
        return await reader.triggers("default", image, [], lookup)

    assert asyncio.run(go("r.example/app:v1")).types == {"mqtt"}
    assert asyncio.run(go("r.example/app:v1")).types == {"mqtt"}  # remembered
    failed = asyncio.run(go("r.example/bad:v1"))
    assert failed.error == "RuntimeError: no registry" and failed.http
    now[0] = 31.0  # a failure is retried after 30 s, a tag re-read after 300 s
    asyncio.run(go("r.example/bad:v1"))
    assert calls == ["r.example/app:v1", "r.example/bad:v1", "r.example/bad:v1"]
    now[0] = 400.0
    asyncio.run(go("r.example/app:v1"))
    assert calls.count("r.example/app:v1") == 2
    # an unreachable registry: its other images are not tried until the 30 s are up
    assert "cannot connect" in (asyncio.run(go("down.example/a:v1")).error or "")
    assert "cannot connect" in (asyncio.run(go("down.example/b:v1")).error or "")
    assert [c for c in calls if c.startswith("down")] == ["down.example/a:v1"]
    now[0] = 431.0
    asyncio.run(go("down.example/b:v1"))
    assert [c for c in calls if c.startswith("down")] == ["down.example/a:v1", "down.example/b:v1"]
    assert asyncio.run(TriggerReader(enabled=False).triggers("d", "x/y", [], lookup)).http


def _app(**spec: Any) -> SpinApp:
    doc = {
        "apiVersion": "core.spinkube.dev/v1alpha1",
        "kind": "SpinApp",
        "metadata": {"name": "orders", "namespace": "default", "uid": "u1"},
        "spec": {"image": "r.example/orders:v1", "executor": "shim", "replicas": 2} | spec,
    }
    return SpinApp.model_validate(doc)


SHIM = SpinAppExecutor.model_validate(executor("shim", runtimeClassName="wasmlet"))
CHECKS = {"readiness": {"httpGet": {"path": "/.well-known/spin/health"}}}


def test_an_app_without_http_gets_no_service_port_or_probes() -> None:
    app = _app(checks=CHECKS)
    redis = AppTriggers(frozenset({"redis"}))
    desired = reconcile.desired(app, SHIM, triggers=redis)
    assert desired.service is None
    assert [o["kind"] for o in desired.objects()] == ["Secret", "Deployment"]
    container = desired.deployment["spec"]["template"]["spec"]["containers"][0]  # type: ignore[index]
    assert "ports" not in container and "readinessProbe" not in container
    assert desired.warnings[0][0] == "ProbesIgnored" and "redis" in desired.warnings[0][1]
    for obj in desired.objects():
        validate(obj)
    status = reconcile.status(app, desired.deployment, "2026-01-01T00:00:00Z", service=False)
    assert status["serviceName"] is None  # (removed by the status merge patch)
    validate(
        {**app.model_dump(by_alias=True, exclude_none=True), "apiVersion": app.api_version,
         "kind": "SpinApp", "status": {k: v for k, v in status.items() if v is not None}}
    )  # fmt: skip

    # HTTP and Redis, HTTP alone, or triggers unknown (None): SpinKube's objects
    for triggers in (AppTriggers(frozenset({"http", "redis"})), AppTriggers(), None):
        same = reconcile.desired(app, SHIM, triggers=triggers)
        assert same.service == reconcile.service(app) and not same.warnings
        assert "readinessProbe" in same.deployment["spec"]["template"]["spec"]["containers"][0]  # type: ignore[index]


def test_autoscaler_wasmlet_needs_http_and_a_pod_for_messages() -> None:
    redis, both = AppTriggers(frozenset({"redis"})), AppTriggers(frozenset({"http", "redis"}))
    assert activator_problem(AppTriggers(), 0) is None
    assert "no HTTP trigger (it has redis triggers)" in (activator_problem(redis, 3) or "")
    assert "minReplicas" in (activator_problem(both, 0) or "")
    assert activator_problem(both, 1) is None

    def scaled(**autoscaler: Any) -> SpinApp:
        return _app(
            enableAutoscaling=True,
            replicas=None,
            autoscaler={"type": "wasmlet", "maxReplicas": 3} | autoscaler,
        )

    with pytest.raises(reconcile.ReconcileError, match="no HTTP trigger") as e:
        reconcile.desired(scaled(minReplicas=1), SHIM, triggers=redis)
    assert e.value.reason == "NotActivatable"
    with pytest.raises(reconcile.ReconcileError, match="minReplicas"):
        reconcile.desired(scaled(), SHIM, triggers=both)
    with pytest.raises(reconcile.ReconcileError, match="minReplicas"):  # max 0 wins over min
        reconcile.desired(scaled(minReplicas=1, maxReplicas=0), SHIM, triggers=both)
    desired = reconcile.desired(scaled(minReplicas=1), SHIM, triggers=both)
    assert desired.endpoint_slice is not None and desired.service is not None


# -- the operator end to end --------------------------------------------------------------


@pytest_asyncio.fixture
async def cluster(
    registries: tuple[Registry, Registry], no_local_credentials: None
) -> AsyncIterator[Cluster]:
    insecure = tuple(r.host for r in registries)
    async with ApiServer() as api, kmock.Server(api) as server:
        url = str(server.url).rstrip("/")
        async with (
            running_operator(url, retry_delay=0.3, insecure_registries=insecure),
            aiohttp.ClientSession(url) as http,
        ):
            await http.post(f"{CR}/spinappexecutors", json=executor("shim", runtimeClassName="x"))
            yield Cluster(api, http, 0)


def spinapp(name: str, image: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "core.spinkube.dev/v1alpha1",
        "kind": "SpinApp",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"image": image, "executor": "shim", "replicas": 1} | spec,
    }


async def _deployment(cluster: Cluster, name: str) -> dict[str, Any]:
    found: dict[str, Any] = await cluster.wait(lambda: cluster.get(f"{APPS}/deployments/{name}"))
    validate(found_without_server_fields(found))
    return found


def found_without_server_fields(obj: dict[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in obj["metadata"].items() if k not in ("uid", "managedFields")}
    return {**obj, "metadata": meta}


@pytest.mark.asyncio
@pytest.mark.timeout(120)
async def test_operator_gives_a_message_only_app_no_service(
    cluster: Cluster, images: dict[str, str]
) -> None:
    await cluster.call("POST", f"{CR}/spinapps", spinapp("orders", images["redis"], checks=CHECKS))
    await cluster.call("POST", f"{CR}/spinapps", spinapp("shop", images["both"]))
    orders = await _deployment(cluster, "orders")
    shop = await _deployment(cluster, "shop")
    container = orders["spec"]["template"]["spec"]["containers"][0]
    assert "ports" not in container and "readinessProbe" not in container
    assert "ports" in shop["spec"]["template"]["spec"]["containers"][0]
    service = await cluster.wait(lambda: cluster.get(f"{CORE}/services/shop"))
    validate(found_without_server_fields(service))
    status = await cluster.wait(
        lambda: _status(cluster, "orders", lambda s: "selector" in s), timeout=10
    )
    assert "serviceName" not in status
    assert await cluster.get(f"{CORE}/services/orders") is None
    assert cluster.events("ProbesIgnored") and not cluster.events("AppTriggersUnknown")

    # the image changes to one with HTTP: the Service comes; back to messages only: it goes
    await cluster.merge(f"{CR}/spinapps/orders", {"spec": {"image": images["web"]}})
    await cluster.wait(lambda: cluster.get(f"{CORE}/services/orders"))
    await cluster.merge(f"{CR}/spinapps/orders", {"spec": {"image": images["redis"]}})

    async def gone() -> bool:
        return await cluster.get(f"{CORE}/services/orders") is None

    await cluster.wait(gone)


async def _status(cluster: Cluster, name: str, check: Any) -> dict[str, Any] | None:
    app = await cluster.get(f"{CR}/spinapps/{name}")
    status = (app or {}).get("status") or {}
    return status if check(status) else None


@pytest.mark.asyncio
@pytest.mark.timeout(120)
async def test_operator_reads_private_images_with_the_apps_pull_secret(
    cluster: Cluster, images: dict[str, str], registries: tuple[Registry, Registry]
) -> None:
    host = registries[1].host
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    config = json.dumps({"auths": {host: {"auth": auth}}}).encode()
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "pull", "namespace": "default"},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64.b64encode(config).decode()},
    }
    await cluster.call("POST", f"{CORE}/secrets", secret)
    pulled = spinapp("private", images["private"], imagePullSecrets=[{"name": "pull"}])
    await cluster.call("POST", f"{CR}/spinapps", pulled)
    await cluster.call("POST", f"{CR}/spinapps", spinapp("nosecret", images["private"]))
    await _deployment(cluster, "private")
    await cluster.wait(lambda: cluster.get(f"{CORE}/services/nosecret"))  # taken for HTTP
    assert await cluster.get(f"{CORE}/services/private") is None
    unknown = await cluster.wait(lambda: cluster.events("AppTriggersUnknown"))
    assert images["private"] in unknown[0]["message"]
    assert "taken for an HTTP app" in unknown[0]["message"]


@pytest.mark.asyncio
@pytest.mark.timeout(120)
async def test_operator_refuses_the_activator_for_apps_it_cannot_stand_in_for(
    cluster: Cluster, images: dict[str, str]
) -> None:
    scaled = {"enableAutoscaling": True, "replicas": None}
    wasmlet = {"type": "wasmlet", "maxReplicas": 3}
    for name, image, minimum in (("queue", "redis", 1), ("mixed", "both", 0), ("held", "both", 1)):
        autoscaler = wasmlet | {"minReplicas": minimum}
        app = spinapp(name, images[image], **scaled, autoscaler=autoscaler)
        await cluster.call("POST", f"{CR}/spinapps", app)

    def refusals() -> list[dict[str, Any]]:
        found = cluster.events("NotActivatable")
        return found if len(found) >= 2 else []

    refused = await cluster.wait(refusals)
    messages = " ".join(e["message"] for e in refused)
    assert "no HTTP trigger (it has redis triggers)" in messages
    assert "minReplicas (and maxReplicas): at least 1" in messages
    held = await _deployment(cluster, "held")
    assert held["spec"]["replicas"] == 1
    await cluster.wait(lambda: cluster.get(f"{CORE}/services/held"))
    await asyncio.sleep(0.5)
    for name in ("queue", "mixed"):
        assert await cluster.get(f"{APPS}/deployments/{name}") is None
        assert await cluster.get(f"{CORE}/services/{name}") is None
