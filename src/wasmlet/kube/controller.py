"""What the operator does for one event: read the cluster, call the pure functions, write.

No kopf here: `operator.py` calls these from its handlers, tests call them with any client.
Errors carry an Event reason and whether retrying can help.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import logging
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol

from pydantic import ValidationError

from . import (
    ACTIVATOR_NAME,
    APP_NAME_LABEL,
    DEFAULT_NAMESPACE,
    SERVICE_NAME_LABEL,
    appmetrics,
    pods_service,
)
from . import reconcile as rec
from . import routing as rt
from .admission import pydantic_messages, validate_executor
from .apptriggers import AppTriggers, TriggerReader
from .client import ApiError, KubeClient
from .models import SpinApp, SpinAppExecutor
from .opmetrics import ReconcileMetrics
from .rtconfig import RUNTIME_CONFIG_KEY, RuntimeConfigError, ValueRef, references

log = logging.getLogger("wasmlet.kube")

AUTOSCALER_KINDS = ("HorizontalPodAutoscaler", "ScaledObject")
# Objects whose API an add-on brings: (Event reason, message) when it is not installed.
ADD_ON_MISSING = {
    "ScaledObject": (
        "AutoscalerUnavailable",
        "spec.autoscaler.type keda: KEDA is not installed (no keda.sh/v1alpha1 ScaledObject "
        "API); install KEDA or use type: hpa",
    ),
    "ServiceMonitor": (
        "ServiceMonitorUnavailable",
        "the executor's deploymentConfig.metrics.serviceMonitor: the Prometheus Operator is "
        "not installed (no monitoring.coreos.com/v1 ServiceMonitor API); install it or remove "
        "serviceMonitor (the pods' prometheus.io/* annotations stay)",
    ),
}


class Recorder(Protocol):
    """Posts Kubernetes Events about an object."""

    def warn(self, body: Mapping[str, Any], reason: str, message: str) -> None: ...

    def info(self, body: Mapping[str, Any], reason: str, message: str) -> None: ...


class ControllerError(Exception):
    """Reconciling failed; `reason` is the Event reason, `retry` whether time may fix it."""

    def __init__(self, reason: str, message: str, retry: bool) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry = retry


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _clock() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _runtime_config_secret(deployment: Mapping[str, Any] | None) -> str | None:
    """The runtime-config Secret a Deployment mounts (None if it has none)."""
    volumes = ((deployment or {}).get("spec") or {}).get("template", {}).get("spec", {})
    for volume in volumes.get("volumes") or []:
        if volume.get("name") == rec.RUNTIME_CONFIG_VOLUME:
            return (volume.get("secret") or {}).get("secretName")
    return None


def _reason(error: Exception) -> str:
    """A failed reconcile's reason label: the Event reason, else the exception's type."""
    return error.reason if isinstance(error, ControllerError) else type(error).__name__


def default_ca_bundle() -> str | None:
    """The CA bundle for `installDefaultCACerts` (Mozilla's, via certifi)."""
    try:
        import certifi
    except ImportError:  # pragma: no cover - certifi comes with httpx
        return None
    with open(certifi.where()) as f:
        return f.read()


@dataclass
class Controller:
    client: KubeClient
    recorder: Recorder
    ca_bundle: Callable[[], str | None] = default_ca_bundle
    now: Callable[[], str] = _now
    #: pod problems per app: (namespace, app) -> {pod: [problem, …]}
    problems: dict[tuple[str, str], dict[str, list[str]]] = field(default_factory=dict)
    #: reconciles in flight at once (like controller-runtime's MaxConcurrentReconciles): more
    #: only queues requests in the HTTP connection pool, whose cost grows with the queue
    max_concurrent: int = 32
    #: where the activator's Service is (autoscaler type wasmlet), and how long an app's
    #: traffic is on the activator before its last pods go
    activator_namespace: str = DEFAULT_NAMESPACE
    scale_down_grace: float = rt.GRACE_SECONDS
    clock: Callable[[], datetime.datetime] = _clock
    _locks: dict[tuple[str, str], asyncio.Lock] = field(default_factory=dict)
    _slots: asyncio.Semaphore | None = None
    #: one reconcile per app at a time (SpinApp, EndpointSlice and executor events all
    #: reconcile); a lock lives as long as someone holds or awaits it
    _app_locks: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = field(
        default_factory=weakref.WeakValueDictionary
    )
    _activator_endpoints: list[dict[str, Any]] | None = None  # the last ready set seen
    _activator_warned: set[tuple[str, str]] = field(default_factory=set)
    #: the apps' trigger types, read from their images (apptriggers.py)
    triggers: TriggerReader = field(default_factory=TriggerReader)
    _triggers_warned: dict[tuple[str, str], str] = field(default_factory=dict)
    _serviceless: set[tuple[str, str]] = field(default_factory=set)  # no HTTP trigger
    #: reconcile counts and durations (`--metrics-listen`); None: not measured
    metrics: ReconcileMetrics | None = None

    def _limit(self) -> asyncio.Semaphore:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_concurrent)
        return self._slots

    # -- SpinApp -------------------------------------------------------------------------

    def _fail(self, body: Mapping[str, Any], reason: str, message: str, retry: bool) -> NoReturn:
        self.recorder.warn(body, reason, message)
        raise ControllerError(reason, message, retry)

    async def _executor(self, app: SpinApp, body: Mapping[str, Any]) -> SpinAppExecutor:
        name = app.spec.executor
        raw = await self.client.get("SpinAppExecutor", app.namespace, name) if name else None
        if raw is None:
            await self._patch_status(
                app, rec.status(app, None, self.now()) | {"activeScheduler": None}
            )
            self._fail(
                body,
                "MissingExecutor",
                f"SpinAppExecutor {name!r} not found in namespace {app.namespace}; "
                "the app is deployed once it exists",
                retry=True,
            )
        try:
            executor = SpinAppExecutor.model_validate(raw)
        except ValidationError as e:
            self._fail(body, "InvalidExecutor", "; ".join(pydantic_messages(e, name or "")), True)
        errors = validate_executor(executor.spec)
        if errors:
            self._fail(body, "InvalidExecutor", f"executor {name!r}: {'; '.join(errors)}", True)
        return executor

    async def _resolve(self, app: SpinApp, body: Mapping[str, Any]) -> dict[ValueRef, str]:
        config = app.spec.runtime_config
        if config is not None and config.load_from_secret:
            secret = await self.client.get("Secret", app.namespace, config.load_from_secret)
            if secret is None or RUNTIME_CONFIG_KEY not in (secret.get("data") or {}):
                self.recorder.warn(
                    body,
                    "BadRuntimeConfig",
                    f"runtimeConfig.loadFromSecret: Secret {config.load_from_secret!r} "
                    f"has no key {RUNTIME_CONFIG_KEY}; the app starts without runtime config",
                )
            return {}
        resolved: dict[ValueRef, str] = {}
        fetched: dict[tuple[str, str], dict[str, Any] | None] = {}
        for ref in references(config):
            if (ref.kind, ref.name) not in fetched:
                fetched[ref.kind, ref.name] = await self.client.get(
                    ref.kind, app.namespace, ref.name
                )
            obj = fetched[ref.kind, ref.name] or {}
            if ref.kind == "Secret":
                raw = (obj.get("data") or {}).get(ref.key)
                if raw is not None:
                    resolved[ref] = base64.b64decode(raw).decode()
            else:
                value = (obj.get("data") or {}).get(ref.key)
                if value is not None:
                    resolved[ref] = value
        return resolved

    async def reconcile(self, body: Mapping[str, Any]) -> rec.Desired:
        """Make the cluster match one SpinApp; raise ControllerError (after an Event).

        `Desired.requeue_after` says when to reconcile it again (the scale-down grace)."""
        meta = body.get("metadata") or {}
        key = (str(meta.get("namespace") or "default"), str(meta.get("name", "")))
        lock = self._app_locks.get(key)
        if lock is None:
            lock = self._app_locks[key] = asyncio.Lock()
        async with lock, self._limit():  # the app's lock first: waiting takes no slot
            if self.metrics is None:
                return await self._reconcile(body)
            started = self.metrics.clock()
            try:
                desired = await self._reconcile(body)
            except Exception as e:
                self.metrics.failed("SpinApp", started, _reason(e))
                raise
            self.metrics.done("SpinApp", started, requeue=desired.requeue_after is not None)
            return desired

    async def _reconcile(self, body: Mapping[str, Any]) -> rec.Desired:
        try:
            app = SpinApp.model_validate(dict(body))
        except ValidationError as e:
            self._fail(body, "InvalidSpec", "; ".join(pydantic_messages(e, "SpinApp")), False)
        executor = await self._executor(app, body)
        triggers = await self._triggers(app, body)
        resolved = await self._resolve(app, body)
        previous = await self.client.get("Deployment", app.namespace, app.name)
        plan = await self._plan(app, previous) if rt.is_wasmlet(app) else None
        try:
            desired = rec.desired(app, executor, resolved, self.ca_bundle(), plan, triggers)
        except RuntimeConfigError as e:
            self._fail(body, "BadRuntimeConfig", str(e), retry=True)
        except rec.ReconcileError as e:
            self._fail(body, e.reason, str(e), retry=False)
        for reason, message in desired.warnings:
            self.recorder.warn(body, reason, message)
        if desired.service is None:
            self._serviceless.add((app.namespace, app.name))
        else:
            self._serviceless.discard((app.namespace, app.name))
        await self._apply(app, body, desired)
        await self._cleanup(app, desired, previous)
        if plan is not None:
            self._warn_activator(app, body, plan)
        routing = plan.status() if plan is not None else rt.NO_ROUTING_STATUS
        await self._refresh_status(app.namespace, app.name, routing)
        return desired

    async def _triggers(self, app: SpinApp, body: Mapping[str, Any]) -> AppTriggers | None:
        """The app's trigger types, read from its image; None (an HTTP app, as SpinKube
        takes every app) when they cannot be, with one Warning per app and reason."""

        async def secret(namespace: str, name: str) -> Mapping[str, Any] | None:
            try:
                return await self.client.get("Secret", namespace, name)
            except ApiError:
                return None

        names = [str(s.get("name", "")) for s in app.spec.image_pull_secrets or []]
        found = await self.triggers.triggers(app.namespace, app.spec.image, names, secret)
        key = (app.namespace, app.name)
        if found.error is None:
            self._triggers_warned.pop(key, None)
            return found
        if self._triggers_warned.get(key) != found.error:
            self._triggers_warned[key] = found.error
            self.recorder.warn(
                body,
                "AppTriggersUnknown",
                f"cannot read the app's triggers from image {app.spec.image}: {found.error}; "
                "it is taken for an HTTP app (a Service, HTTP probes)",
            )
        return None

    async def _plan(self, app: SpinApp, deployment: Mapping[str, Any] | None) -> rt.Plan:
        """Read what the routing of an app with autoscaler type wasmlet depends on: its pods'
        and the activator's EndpointSlices, its Deployment, and (fresh, since another event
        may just have flipped it) its status."""
        pods = await self.client.list(
            "EndpointSlice", app.namespace, f"{SERVICE_NAME_LABEL}={pods_service(app.name)}"
        )
        activator = await self.client.list(
            "EndpointSlice", self.activator_namespace, f"{SERVICE_NAME_LABEL}={ACTIVATOR_NAME}"
        )
        current = None
        if deployment is not None:  # the API server defaults an unset count to 1
            current = int((deployment.get("spec") or {}).get("replicas", 1))
        fresh = await self._app(app.namespace, app.name) or app
        observed = rt.Observed.from_status(
            fresh, pod_slices=pods, activator_slices=activator, deployment_replicas=current
        )
        return rt.plan(app, observed, self.clock(), self.scale_down_grace)

    def _warn_activator(self, app: SpinApp, body: Mapping[str, Any], plan: rt.Plan) -> None:
        """One Warning while the activator is needed and has no ready endpoint."""
        key = (app.namespace, app.name)
        if plan.activator_ready or not plan.needs_activator:
            self._activator_warned.discard(key)
            return
        if key not in self._activator_warned:
            self._activator_warned.add(key)
            self.recorder.warn(
                body,
                "ActivatorUnavailable",
                f"no ready endpoint of Service {ACTIVATOR_NAME} in namespace "
                f"{self.activator_namespace}: the app's pods keep serving while they can, "
                "requests fail once it has none (install the activator: wasmlet kube install)",
            )

    async def _apply(self, app: SpinApp, body: Mapping[str, Any], desired: rec.Desired) -> None:
        for obj in desired.objects():
            try:
                await self.client.apply(obj)
            except ApiError as e:
                if obj["kind"] in ADD_ON_MISSING and e.status == 404:
                    self._fail(body, *ADD_ON_MISSING[obj["kind"]], retry=True)
                raise
        if desired.deployment is None:
            await self.client.delete("Deployment", app.namespace, app.name)

    async def _owned(self, kind: str, app: SpinApp, name: str) -> bool:
        try:
            obj = await self.client.get(kind, app.namespace, name)
        except ApiError:
            return False
        uid = app.metadata.get("uid")
        owners = (obj or {}).get("metadata", {}).get("ownerReferences") or []
        return any(o.get("uid") == uid for o in owners)

    async def _cleanup(
        self, app: SpinApp, desired: rec.Desired, previous: Mapping[str, Any] | None
    ) -> None:
        """Remove what this app owned and no longer wants: the runtime-config Secret the
        Deployment used before this rollout, and an autoscaler of the other kind."""
        current = desired.runtime_config["metadata"]["name"] if desired.runtime_config else None
        old = _runtime_config_secret(previous)
        if old and old != current and await self._owned("Secret", app, old):
            await self.client.delete("Secret", app.namespace, old)
        if desired.service is None and await self._owned("Service", app, app.name):
            await self.client.delete("Service", app.namespace, app.name)  # no HTTP trigger
        wanted = desired.autoscaler["kind"] if desired.autoscaler else None
        name = f"{app.name}-autoscaler"
        for kind in AUTOSCALER_KINDS:
            if kind != wanted and await self._owned(kind, app, name):
                await self.client.delete(kind, app.namespace, name)
        if desired.service_monitor is None and appmetrics.scraped(previous):
            for kind, leftover in (
                ("ServiceMonitor", app.name),
                ("Service", appmetrics.service_name(app.name)),
            ):
                if await self._owned(kind, app, leftover):
                    await self.client.delete(kind, app.namespace, leftover)
        was_routed = app.status is not None and app.status.served_by is not None
        if desired.plan is None and was_routed:  # no longer type wasmlet
            for kind, leftover in (
                ("EndpointSlice", rt.slice_name(app.name)),
                ("Service", pods_service(app.name)),
            ):
                if await self._owned(kind, app, leftover):
                    await self.client.delete(kind, app.namespace, leftover)

    # -- status --------------------------------------------------------------------------

    async def _patch_status(self, app: SpinApp, status: dict[str, Any]) -> None:
        old = app.status.dump() if app.status is not None else {}
        if any(old.get(k) != v for k, v in status.items()):
            await self.client.patch_status("SpinApp", app.namespace, app.name, status)

    async def refresh_status(self, namespace: str, name: str) -> None:
        """Recompute a SpinApp's status from the current Deployment and pod problems."""
        async with self._limit():
            await self._refresh_status(namespace, name)

    async def _refresh_status(
        self, namespace: str, name: str, extra: Mapping[str, Any] | None = None
    ) -> None:
        """Serialized per app and read fresh inside the lock, so a slow reconcile can never
        overwrite the status a newer Deployment event wrote. `extra`: fields a reconcile
        decided (the routing), merged in."""
        lock = self._locks.setdefault((namespace, name), asyncio.Lock())
        async with lock:
            app = await self._app(namespace, name)
            if app is None:
                self._locks.pop((namespace, name), None)
                self._serviceless.discard((namespace, name))
                self._triggers_warned.pop((namespace, name), None)
                return
            deployment = await self.client.get("Deployment", namespace, name)
            pods = self.problems.get((namespace, name), {})
            problems = [p for found in pods.values() for p in found]
            service = (namespace, name) not in self._serviceless
            status = rec.status(app, deployment, self.now(), problems, service)
            status |= dict(extra or {})
            await self._patch_status(app, status)

    async def _app(self, namespace: str, name: str) -> SpinApp | None:
        raw = await self.client.get("SpinApp", namespace, name)
        if raw is None:
            return None
        try:
            return SpinApp.model_validate(raw)
        except ValidationError:
            return None

    async def deployment_changed(self, body: Mapping[str, Any]) -> None:
        """A Deployment of ours changed: copy its state into the SpinApp's status."""
        meta = body.get("metadata", {})
        await self.refresh_status(meta.get("namespace", ""), meta.get("labels", {})[APP_NAME_LABEL])

    async def pod_changed(self, body: Mapping[str, Any], deleted: bool) -> None:
        """Surface image pull errors and crash loops in status and as Events."""
        meta = body.get("metadata", {})
        key = (meta.get("namespace", ""), meta.get("labels", {})[APP_NAME_LABEL])
        pods = self.problems.setdefault(key, {})
        before = pods.get(meta.get("name", ""), [])
        now = [] if deleted else rec.pod_problems(body)
        if now == before:
            return
        if now:
            pods[meta.get("name", "")] = now
        else:
            pods.pop(meta.get("name", ""), None)
        if not pods:
            self.problems.pop(key, None)
        app = await self._app(*key)
        if app is None:
            return
        for problem in now:
            if problem not in before:
                self.recorder.warn(app.model_dump(by_alias=True), problem.split(":", 1)[0], problem)
        await self.refresh_status(*key)

    # -- EndpointSlices (autoscaler type wasmlet) ----------------------------------------

    async def _reconcile_quietly(self, namespace: str, name: str) -> bool:
        """Reconcile an app with autoscaler type wasmlet after an event elsewhere; False if it
        failed (the failure is an Event already). A scale-down grace this starts is finished
        by the SpinApp's own handler, which `status.servedBySince` changing triggers."""
        body = await self.client.get("SpinApp", namespace, name)
        if body is None:
            return True
        try:
            app = SpinApp.model_validate(body)
        except ValidationError:
            return True
        if not rt.is_wasmlet(app):
            return True
        try:
            await self.reconcile(body)
        except ControllerError:
            return False
        return True

    async def pods_changed(self, namespace: str, app: str) -> None:
        """An EndpointSlice of Service `<app>-pods` changed: a pod became ready or went."""
        await self._reconcile_quietly(namespace, app)

    async def activator_changed(self, apps: list[tuple[str, str]]) -> list[str]:
        """An EndpointSlice of the activator changed: when its ready endpoints did, every app
        with autoscaler type wasmlet is reconciled (those in proxy mode route to them, those
        held on their pods may now go). Returns the apps that failed."""
        slices = await self.client.list(
            "EndpointSlice", self.activator_namespace, f"{SERVICE_NAME_LABEL}={ACTIVATOR_NAME}"
        )
        ready = rt.ready_endpoints(slices, rt.address_type(slices))
        if ready == self._activator_endpoints:
            return []
        done = await asyncio.gather(*(self._reconcile_quietly(ns, n) for ns, n in apps))
        failed = sorted(f"{ns}/{n}" for (ns, n), ok in zip(apps, done, strict=True) if not ok)
        # remembered only once every app follows it, so the next event retries the others
        self._activator_endpoints = None if failed else ready
        return failed

    # -- SpinAppExecutor -----------------------------------------------------------------

    async def executor_changed(self, namespace: str, apps: list[str]) -> list[str]:
        """Re-reconcile the apps of a created/changed executor; the names that failed."""
        started = self.metrics.clock() if self.metrics is not None else 0.0
        failed = []
        try:
            for name in sorted(apps):
                body = await self.client.get("SpinApp", namespace, name)
                if body is None:
                    continue
                try:
                    await self.reconcile(body)
                except ControllerError:
                    failed.append(name)
        except Exception as e:
            if self.metrics is not None:
                self.metrics.failed("SpinAppExecutor", started, _reason(e))
            raise
        if self.metrics is not None:
            if failed:  # (each app's own reason is counted under kind SpinApp)
                self.metrics.failed("SpinAppExecutor", started, "AppsNotReconciled")
            else:
                self.metrics.done("SpinAppExecutor", started)
        return failed

    def executor_deletable(self, body: Mapping[str, Any], apps: list[str]) -> None:
        """Refuse (Event + retryable error) while SpinApps still use the executor."""
        started = self.metrics.clock() if self.metrics is not None else 0.0
        if apps:
            listed = ", ".join(sorted(apps))
            if self.metrics is not None:
                self.metrics.failed("SpinAppExecutor", started, "ExecutorInUse")
            self._fail(
                body,
                "ExecutorInUse",
                f"SpinAppExecutor is used by SpinApp(s) {listed}; delete or move them first",
                retry=True,
            )
        if self.metrics is not None:
            self.metrics.done("SpinAppExecutor", started)
