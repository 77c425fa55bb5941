"""The activator: SpinApps served with no pod, and scaled by their load.

`wasmlet kube activator` is the multi-app host (`apphost/`) fed from the Kubernetes API
instead of a directory. It runs every SpinApp whose `spec.autoscaler.type` is `wasmlet`:
pulled from its OCI image and precompiled when the SpinApp is created or changed (not on its
first request), with the variables, runtime config and memory limit its pods would have
(`activator_apps.py`). While the app has no ready pods, the operator points the app's Service
at the activator (EndpointSlices), and the activator answers its requests itself: a fresh
instance per request, as a pod would, in milliseconds.

Every `sample_interval` it samples each app's load — its requests in flight in the activator,
and in each ready pod (their `/.well-known/wasmlet/load`, averaged over the interval) — and
sets the app's replicas through the SpinApp's `/scale` subresource by `scaler.Scaler`'s
decision: pods only under sustained load, none after an idle period.

A request names its app by Host: `<name>.<namespace>[.svc…]`, or `<name>` alone when only
one namespace has an app of that name.

It serves HTTP only: an app's message triggers (Redis, MQTT) are its pods' to run (run here
too, every message would be handled twice while the app has pods), so an app with no HTTP
trigger is not served here at all (`refusal`; the operator refuses autoscaler type wasmlet
for it), and one with both has its HTTP routes served here.

The watching runs in kopf, on a thread and event loop of its own; it hands apps to the host
(`post`, thread-safe) and keeps, per app, the SpinApp's replicas and its pods' addresses.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import kopf
from pydantic import ValidationError

from ..apphost import AppHost, AppVersion, HostOptions
from ..engine import Limits
from ..errors import WasmletError
from ..locked import LockedApp
from ..oci import pull_app
from ..oci.progress import Quiet
from ..running import AppOptions, check_app, message_trigger_types
from ..runtime_config import load_runtime_config
from ..trigger.http.app import LOAD_PATH
from . import GROUP, SERVICE_NAME_LABEL, VERSION, pods_service
from .activator_apps import AppConfig, NotActivatable, app_config
from .apptriggers import no_http_trigger
from .client import KubeClient
from .models import SpinApp
from .routing import is_wasmlet
from .scaler import Scaler, ScalerSettings

log = logging.getLogger("wasmlet.activator")


@dataclass(frozen=True)
class ActivatorOptions:
    host: HostOptions = field(default_factory=HostOptions)
    server: str | None = None  # the API server; None: kubeconfig or in-cluster
    namespaces: tuple[str, ...] = ()  # () = every namespace
    sample_interval: float = 1.0
    scrape_timeout: float = 0.5


@dataclass(frozen=True)
class ActivatorTarget:
    """The activator as what a server process builds (see trigger/http/server.py)."""

    opts: ActivatorOptions

    def build(self, origin: str) -> Activator:
        return Activator(self.opts, origin)


@dataclass
class _Tracked:
    """What the activator knows of one SpinApp besides the version it serves."""

    namespace: str
    name: str
    replicas: int = 0  # spec.replicas, as last seen (or set)
    scaler: Scaler = field(default_factory=lambda: Scaler(ScalerSettings()))
    fingerprint: str | None = None  # of the AppConfig served (or being loaded)
    pods: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # slice -> addresses
    last_busy: dict[tuple[str, int], tuple[float, float]] = field(default_factory=dict)
    own_busy: tuple[float, float] | None = None

    def addresses(self) -> list[tuple[str, int]]:
        return [a for addresses in self.pods.values() for a in addresses]


class Activator(AppHost):
    def __init__(self, opts: ActivatorOptions, origin: str) -> None:
        super().__init__(replace(opts.host, message_triggers=False), origin)  # HTTP only
        self.activator = opts
        self.tracked: dict[str, _Tracked] = {}  # by key, `<name>.<namespace>`
        self._by_name: dict[str, set[str]] = {}  # name -> keys (Hosts that give no namespace)
        self._pulls = ThreadPoolExecutor(2, thread_name_prefix="wasmlet-pull")
        self._lock = threading.Lock()  # tracked, by the kopf thread and the serving loop
        self._kopf_stop = threading.Event()
        self._kopf: threading.Thread | None = None
        self._scaling: asyncio.Task[None] | None = None

    def describe_source(self) -> str:
        return f"the Kubernetes API ({self.activator.server or 'in-cluster/kubeconfig'})"

    def refusal(self, app: LockedApp) -> str | None:
        types = message_trigger_types(app)
        if types and not app.triggers_of("http"):
            return no_http_trigger(types)
        return None  # (its message triggers are its pods')

    def find(self, labels: list[str]) -> str | None:
        if len(labels) >= 2 and f"{labels[0]}.{labels[1]}" in self.tracked:
            return f"{labels[0]}.{labels[1]}"
        keys = self._by_name.get(labels[0], set())
        return next(iter(keys)) if len(keys) == 1 else None

    def watch(self) -> None:
        ready = threading.Event()
        self._kopf = threading.Thread(
            target=lambda: asyncio.run(self._run_kopf(ready)), name="wasmlet-kopf", daemon=True
        )
        self._kopf.start()
        if not ready.wait(30):
            log.error("the Kubernetes watch did not start within 30 s")
        assert self.loop is not None
        self._scaling = self.loop.create_task(self._scale_loop())

    def unwatch(self) -> None:
        self._kopf_stop.set()
        if self._scaling is not None:
            self._scaling.cancel()
        if self._kopf is not None and self._kopf is not threading.current_thread():
            self._kopf.join(timeout=10)
        self._pulls.shutdown(wait=False, cancel_futures=True)

    # -- the watch (kopf's thread) -----------------------------------------------------------
    async def _run_kopf(self, ready: threading.Event) -> None:
        registry = self._registry()
        await kopf.operator(
            registry=registry,
            clusterwide=not self.activator.namespaces,
            namespaces=list(self.activator.namespaces),
            standalone=True,
            stop_flag=self._kopf_stop,
            ready_flag=ready,
        )

    def _registry(self) -> kopf.OperatorRegistry:
        registry = kopf.OperatorRegistry()
        state: dict[str, KubeClient] = {}

        @kopf.on.startup(id="connect", registry=registry)
        async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
            settings.peering.standalone = True
            settings.posting.enabled = False
            state["client"] = await KubeClient.connect(self.activator.server)

        @kopf.on.cleanup(id="disconnect", registry=registry)
        async def cleanup(**_: Any) -> None:
            client = state.pop("client", None)
            if client is not None:
                await client.close()

        if self.activator.server is not None:

            @kopf.on.login(id="login", registry=registry)
            def login(**_: Any) -> kopf.ConnectionInfo:
                return kopf.ConnectionInfo(server=self.activator.server or "", insecure=True)

        @kopf.on.event(GROUP, VERSION, "spinapps", id="spinapps", registry=registry)
        async def spinapp(event: kopf.RawEvent, **_: Any) -> None:
            await self._spinapp(event["type"], dict(event["object"]), state["client"])

        @kopf.on.event(
            "discovery.k8s.io",
            "v1",
            "endpointslices",
            id="pods",
            registry=registry,
            labels={SERVICE_NAME_LABEL: kopf.PRESENT},
        )
        def pods(event: kopf.RawEvent, **_: Any) -> None:
            self._slice(event["type"], dict(event["object"]))

        return registry

    async def _spinapp(self, kind: str | None, body: dict[str, Any], client: KubeClient) -> None:
        meta = body.get("metadata") or {}
        key = f"{meta.get('name')}.{meta.get('namespace')}"
        try:
            app = SpinApp.model_validate(body)
        except ValidationError as e:
            self._drop(key, f"invalid SpinApp: {e.errors()[0]['msg']}")
            return
        if kind == "DELETED" or not is_wasmlet(app):
            self._drop(key, None)
            return
        tracked = self._track(app)

        async def lookup(kind: str, namespace: str, name: str) -> dict[str, Any] | None:
            return await client.get(kind, namespace, name)

        try:
            config = await app_config(app, lookup)
        except NotActivatable as e:
            self._refuse(key, str(e))
            return
        if config.fingerprint() == tracked.fingerprint:
            return
        tracked.fingerprint = config.fingerprint()
        self._pulls.submit(self._load, config)

    def _track(self, app: SpinApp) -> _Tracked:
        key = f"{app.name}.{app.namespace}"
        settings = ScalerSettings.from_autoscaler(app.spec.autoscaler)
        with self._lock:
            tracked = self.tracked.get(key)
            if tracked is None:
                tracked = self.tracked[key] = _Tracked(app.namespace, app.name)
                self._by_name.setdefault(app.name, set()).add(key)
            if tracked.scaler.settings != settings:
                tracked.scaler = Scaler(settings)
            tracked.replicas = app.spec.replicas or 0
        return tracked

    def _drop(self, key: str, why: str | None) -> None:
        with self._lock:
            tracked = self.tracked.pop(key, None)
            if tracked is not None:
                self._by_name.get(tracked.name, set()).discard(key)
        problems = {k: v for k, v in self.problems.items() if k != key}
        if why is not None:
            problems[key] = why
        if key in self.versions or problems != self.problems:
            self.post({key: None} if key in self.versions else {}, problems)

    def _refuse(self, key: str, why: str) -> None:
        log.warning("app %s is not served by the activator: %s", key, why)
        self.post({}, {**self.problems, key: why})

    def _load(self, config: AppConfig) -> None:
        """Pull, lock and precompile one app, then serve it (a pull thread)."""
        key = config.key
        state = self.opts.state_dir / config.namespace / config.name
        try:
            app, home = pull_app(config.image, self.opts.insecure, Quiet())  # (a server)
            refused = self.refusal(app)
            if refused is not None:
                raise WasmletError(refused)
            self.precompile(app)
            rc_file = None
            if config.runtime_config:
                state.mkdir(parents=True, exist_ok=True)
                rc_file = state / "runtime-config.toml"
                rc_file.write_text(config.runtime_config)
            rc = load_runtime_config(rc_file, state if rc_file else home)
        except WasmletError as e:
            log.error("app %s: %s", key, e)
            self.post({}, {**self.problems, key: str(e)})
            return
        except Exception as e:  # the activator keeps serving the others whatever one does
            log.exception("app %s could not be loaded", key)
            self.post({}, {**self.problems, key: f"{type(e).__name__}: {e}"})
            return
        memory = config.max_instance_memory or rc.max_instance_memory
        options = AppOptions(
            state_dir=rc.state_dir or state,
            limits=Limits(
                self.opts.request_timeout,
                memory or self.opts.max_instance_memory,
                self.opts.max_output,
            ),
            runtime_config=rc,
            variables=config.variables,
            home=Path(tempfile.gettempdir()),  # no .env: variables come from the SpinApp
            environ={},
            max_body=self.opts.max_body,
            body_read_timeout=self.opts.body_read_timeout,
        )
        try:
            check_app(app, options)  # a broken app is reported now, not on its first request
        except WasmletError as e:
            log.error("app %s: %s", key, e)
            self.post({}, {**self.problems, key: str(e)})
            return
        version = AppVersion(
            name=key,
            app=app,
            options=options,
            source=config.image,
            number=self.next_number(key),
            self_host=f"{config.name}.{config.namespace}",
        )
        with self._lock:
            if key not in self.tracked:  # deleted while it was pulled
                return
        self.post({key: version}, {k: v for k, v in self.problems.items() if k != key})

    def _slice(self, kind: str | None, body: dict[str, Any]) -> None:
        """An EndpointSlice changed: keep the ready addresses of each app's pods."""
        meta = body.get("metadata") or {}
        service = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL, "")
        app = service.removesuffix("-pods")
        if not app or pods_service(app) != service:
            return
        key = f"{app}.{meta.get('namespace')}"
        ports = [p.get("port") for p in body.get("ports") or [] if p.get("port")]
        addresses = []
        if kind != "DELETED" and ports:
            for endpoint in body.get("endpoints") or []:
                if (endpoint.get("conditions") or {}).get("ready", True):
                    addresses += [(a, int(ports[0])) for a in endpoint.get("addresses") or []]
        with self._lock:
            tracked = self.tracked.get(key)
            if tracked is not None:
                tracked.pods[str(meta.get("name"))] = addresses

    # -- scaling (the serving loop) ----------------------------------------------------------
    async def _scale_loop(self) -> None:
        client = await KubeClient.connect(self.activator.server)
        timeout = httpx.Timeout(self.activator.scrape_timeout)
        try:
            async with httpx.AsyncClient(timeout=timeout) as http:
                while True:
                    await asyncio.sleep(self.activator.sample_interval)
                    try:
                        await self._scale_once(client, http)
                    except Exception:
                        log.exception("scaling")
        finally:
            await client.close()

    async def _scale_once(self, client: KubeClient, http: httpx.AsyncClient) -> None:
        now = time.monotonic()
        with self._lock:
            tracked = list(self.tracked.items())
        # every pod of every app at once: one slow pod delays a sample by one scrape timeout
        pods = [(app, app.addresses()) for _, app in tracked]
        loads = await asyncio.gather(
            *(asyncio.gather(*(self._pod_load(http, app, a, now) for a in addresses))
              for app, addresses in pods)
        )  # fmt: skip
        for (key, app), (_, addresses), pod_loads in zip(tracked, pods, loads, strict=True):
            concurrency = sum(pod_loads) + self._own_load(key, app, now)
            app.scaler.observe(now, concurrency)
            want = app.scaler.decide(now, app.replicas, len(addresses))
            if want != app.replicas:
                log.info("app %s: %d -> %d replicas (load %.2f)", key, app.replicas, want,
                         concurrency)  # fmt: skip
                try:
                    await client.scale("SpinApp", app.namespace, app.name, want)
                    app.replicas = want
                except Exception as e:
                    log.warning("app %s: cannot scale to %d: %s", key, want, e)

    def _own_load(self, key: str, app: _Tracked, now: float) -> float:
        """Requests in flight in the activator, averaged since the last sample."""
        version = self.versions.get(key)
        if version is None:
            return 0.0
        busy = version.busy_seconds()
        last, app.own_busy = app.own_busy, (now, busy)
        if last is None or now <= last[0]:
            return float(version.in_flight)
        return max(0.0, (busy - last[1]) / (now - last[0]))

    async def _pod_load(
        self, http: httpx.AsyncClient, app: _Tracked, address: tuple[str, int], now: float
    ) -> float:
        """A pod's requests in flight, averaged since the last sample (0 if it cannot say)."""
        host, port = address
        shown = f"[{host}]" if ":" in host else host
        try:
            r = await http.get(f"http://{shown}:{port}{LOAD_PATH}")
            load = r.json()
            busy, in_flight = float(load["busy"]), float(load["in_flight"])
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return 0.0
        last = app.last_busy.get(address)
        app.last_busy[address] = (now, busy)
        if last is None or now <= last[0] or busy < last[1]:  # first look, or it restarted
            return in_flight
        return (busy - last[1]) / (now - last[0])
