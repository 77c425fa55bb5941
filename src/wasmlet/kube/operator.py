"""The kopf operator: thin handlers that hand each event to `controller.Controller`.

`run()` is what `wasmlet kube operator` (and `kopf run`) does. `build_registry()` makes a fresh
registry per operator, so tests and benchmarks can run one against kmock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

import kopf

from ..observe.endpoint import serving
from ..oci.reference import normalize_registry
from . import (
    ACTIVATOR_NAME,
    APP_NAME_LABEL,
    DEFAULT_NAMESPACE,
    FINALIZER,
    GROUP,
    SERVICE_NAME_LABEL,
    VERSION,
)
from . import admission as adm
from . import routing as rt
from .apptriggers import TriggerReader
from .client import KubeClient
from .controller import Controller, ControllerError
from .models import SpinAppExecutorSpec
from .opmetrics import ReconcileMetrics

log = logging.getLogger("wasmlet.kube")

APPS = (GROUP, VERSION, "spinapps")
EXECUTORS = (GROUP, VERSION, "spinappexecutors")
ENDPOINT_SLICES = ("discovery.k8s.io", "v1", "endpointslices")
ANNOTATION_PREFIX = "operator.wasmlet.dev"
# The in-memory indices: (namespace, executor name) -> the names of the SpinApps using it,
# and namespace -> the (name, spec) of each SpinAppExecutor there. kopf takes the namespace
# from the object's metadata, which it types as optional although both CRDs are namespaced.
# kopf passes each index to every handler as a keyword argument named after the index id;
# its handler protocols cover those only by `**kwargs`, so handlers read them from there.
AppsByExecutor = kopf.Index[tuple[str | None, str | None], str]
Executors = kopf.Index[str | None, tuple[str, dict[str, Any]]]
WasmletApps = kopf.Index[str | None, str]  # namespace -> apps with autoscaler type wasmlet

WEBHOOK_IDS = {
    "mutate_spinapp": "mutate-spinapp",
    "validate_spinapp": "validate-spinapp",
    "validate_executor": "validate-spinappexecutor",
}


class KopfRecorder:
    """Events through kopf's posting queue (batched, retried, in the operator's loop).

    kopf.warn/info annotate their target as its `Body` view, but take any raw body mapping
    (they only read apiVersion, kind and metadata), hence the `arg-type` ignores.
    """

    def warn(self, body: Mapping[str, Any], reason: str, message: str) -> None:
        kopf.warn(dict(body), reason=reason, message=message[:1024])  # type: ignore[arg-type]

    def info(self, body: Mapping[str, Any], reason: str, message: str) -> None:
        kopf.info(dict(body), reason=reason, message=message[:1024])  # type: ignore[arg-type]


@dataclass
class OperatorConfig:
    server: str | None = None  # None: kubeconfig / in-cluster
    namespaces: list[str] = field(default_factory=list)  # empty: cluster-wide
    retry_delay: float = 10.0  # seconds before a retryable failure is retried
    webhook: kopf.WebhookServer | None = None
    watch_pods: bool = True
    liveness: str | None = None  # e.g. http://0.0.0.0:8080/healthz
    max_concurrent: int = 32  # reconciles in flight at once
    activator_namespace: str = DEFAULT_NAMESPACE  # where Service wasmlet-activator is
    scale_down_grace: float = rt.GRACE_SECONDS  # traffic on the activator before pods go
    read_triggers: bool = True  # read each app's triggers from its image (apptriggers.py)
    insecure_registries: tuple[str, ...] = ()  # registries read over plain HTTP
    metrics_listen: str | None = None  # serve reconcile metrics at http://ADDR/metrics


def _raise(e: ControllerError, delay: float) -> NoReturn:
    if e.retry:
        raise kopf.TemporaryError(str(e), delay=delay) from None
    raise kopf.PermanentError(str(e)) from None


def _is_wasmlet(spec: kopf.Spec, **_: Any) -> bool:
    """kopf filter: the activator routes and scales this SpinApp (routing.is_wasmlet)."""
    autoscaler = spec.get("autoscaler") or {}
    return bool(spec.get("enableAutoscaling")) and autoscaler.get("type") == "wasmlet"


def _executor_specs(index: Executors, namespace: str | None) -> dict[str, SpinAppExecutorSpec]:
    specs = {}
    for name, spec in index.get(namespace, []):
        try:
            specs[name] = SpinAppExecutorSpec.model_validate(spec)
        except ValueError:
            continue
    return specs


def build_registry(
    config: OperatorConfig, state: dict[str, Any], metrics: ReconcileMetrics | None = None
) -> kopf.OperatorRegistry:
    """Register every handler; `state["controller"]` is set at startup (counting its
    reconciles in `metrics`, if given)."""
    registry = kopf.OperatorRegistry()
    on = kopf.on

    def controller() -> Controller:
        ctl: Controller = state["controller"]
        return ctl

    @on.startup(id="connect", registry=registry)
    async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.finalizer = FINALIZER
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
            prefix=ANNOTATION_PREFIX
        )
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
        )
        settings.posting.level = logging.WARNING  # only our warnings become Events
        settings.peering.standalone = True
        settings.execution.max_workers = 4
        if config.webhook is not None:
            settings.admission.server = config.webhook
        client = await KubeClient.connect(config.server)
        state["controller"] = Controller(
            client,
            KopfRecorder(),
            max_concurrent=config.max_concurrent,
            activator_namespace=config.activator_namespace,
            scale_down_grace=config.scale_down_grace,
            triggers=TriggerReader(
                frozenset(normalize_registry(r) for r in config.insecure_registries),
                enabled=config.read_triggers,
            ),
            metrics=metrics,
        )

    @on.cleanup(id="disconnect", registry=registry)
    async def cleanup(**_: Any) -> None:
        ctl = state.pop("controller", None)
        if ctl is not None:
            await ctl.client.close()

    if config.server is not None:

        @on.login(id="login", registry=registry)
        def login(**_: Any) -> kopf.ConnectionInfo:
            return kopf.ConnectionInfo(server=config.server or "", insecure=True)

    # -- indices (in memory, kept current by kopf's watches) ---------------------------

    @kopf.index(*APPS, id="apps_by_executor", registry=registry)
    def apps_by_executor(
        namespace: str | None, name: str, spec: kopf.Spec, **_: Any
    ) -> dict[tuple[str | None, str | None], str]:
        return {(namespace, spec.get("executor")): name}

    @kopf.index(*EXECUTORS, id="executors", registry=registry)
    def executors(
        namespace: str | None, name: str, spec: kopf.Spec, **_: Any
    ) -> dict[str | None, tuple[str, dict[str, Any]]]:
        return {namespace: (name, dict(spec))}

    @kopf.index(*APPS, id="wasmlet_apps", when=_is_wasmlet, registry=registry)
    def wasmlet_apps(namespace: str | None, name: str, **_: Any) -> dict[str | None, str]:
        return {namespace: name}

    # -- SpinApp -------------------------------------------------------------------------

    # "served-by": when an app's traffic moves to the activator (status.servedBySince), the
    # reconcile that finishes the scale-down grace runs here even if an EndpointSlice event
    # made the move; kopf's retry with a delay is the timer.
    @on.resume(*APPS, id="spinapp", registry=registry)
    @on.create(*APPS, id="spinapp", registry=registry)
    @on.update(*APPS, id="spinapp", registry=registry)
    @on.field(*APPS, field="status.servedBySince", id="served-by", registry=registry)
    async def app_changed(body: kopf.Body, name: str, **_: Any) -> None:
        try:
            desired = await controller().reconcile(body)
        except ControllerError as e:
            _raise(e, config.retry_delay)
        delay = desired.requeue_after
        if delay is not None and desired.plan is not None:
            since = desired.plan.status()["servedBySince"]
            raise kopf.TemporaryError(
                f"{name}: traffic is on the activator since {since}; its pods go after the "
                f"{config.scale_down_grace:g} s scale-down grace (in {delay:.1f} s)",
                delay=delay,
            )

    @on.event(
        "apps",
        "v1",
        "deployments",
        labels={APP_NAME_LABEL: kopf.PRESENT},
        id="deployment-status",
        registry=registry,
    )
    async def deployment_event(body: kopf.Body, type: str | None, **_: Any) -> None:
        if type in ("ADDED", "MODIFIED", None):
            await controller().deployment_changed(body)

    if config.watch_pods:

        @on.event(
            "",
            "v1",
            "pods",
            labels={APP_NAME_LABEL: kopf.PRESENT},
            id="pod-errors",
            registry=registry,
        )
        async def pod_event(body: kopf.Body, type: str | None, **_: Any) -> None:
            await controller().pod_changed(body, deleted=type == "DELETED")

    # -- EndpointSlices (autoscaler type wasmlet) ----------------------------------------

    # Kubernetes copies Service <app>-pods' labels onto its EndpointSlices; the operator's own
    # slice <app>-wasmlet has no role label, so writing it triggers nothing here.
    @on.event(
        *ENDPOINT_SLICES,
        labels={APP_NAME_LABEL: kopf.PRESENT, rt.ROLE_LABEL: rt.PODS_ROLE},
        id="pod-endpoints",
        registry=registry,
    )
    async def pod_endpoints(namespace: str | None, labels: kopf.Labels, **_: Any) -> None:
        await controller().pods_changed(namespace or "default", labels[APP_NAME_LABEL])

    @on.event(
        *ENDPOINT_SLICES,
        labels={SERVICE_NAME_LABEL: ACTIVATOR_NAME},
        when=lambda namespace, **_: namespace == config.activator_namespace,
        id="activator-endpoints",
        registry=registry,
    )
    async def activator_endpoints(**kwargs: Any) -> None:
        index: WasmletApps = kwargs["wasmlet_apps"]
        apps = [(ns or "default", name) for ns, names in index.items() for name in names]
        failed = await controller().activator_changed(sorted(apps))
        if failed:
            log.warning("activator endpoints changed; apps not reconciled: %s", failed)

    # -- SpinAppExecutor -----------------------------------------------------------------

    @on.resume(*EXECUTORS, id="executor", registry=registry)
    @on.create(*EXECUTORS, id="executor", registry=registry)
    @on.update(*EXECUTORS, id="executor", registry=registry)
    async def executor_changed(namespace: str | None, name: str, **kwargs: Any) -> None:
        if namespace is None:  # cannot happen (the CRD is namespaced), and no app could match
            return
        apps_by_executor: AppsByExecutor = kwargs["apps_by_executor"]
        apps = list(apps_by_executor.get((namespace, name), []))
        failed = await controller().executor_changed(namespace, apps)
        if failed:
            log.warning("executor %s/%s: apps not reconciled: %s", namespace, name, failed)

    @on.delete(*EXECUTORS, id="executor-in-use", registry=registry)
    async def executor_deleted(
        body: kopf.Body, namespace: str | None, name: str, **kwargs: Any
    ) -> None:
        apps_by_executor: AppsByExecutor = kwargs["apps_by_executor"]
        try:
            controller().executor_deletable(body, list(apps_by_executor.get((namespace, name), [])))
        except ControllerError as e:
            _raise(e, config.retry_delay)

    if config.webhook is not None:
        _register_admission(registry)
    return registry


def _register_admission(registry: kopf.OperatorRegistry) -> None:
    """The webhooks (served by `OperatorConfig.webhook`; configured in deploy/webhook)."""
    on = kopf.on

    @on.mutate(
        *APPS, id=WEBHOOK_IDS["mutate_spinapp"], operations=["CREATE", "UPDATE"], registry=registry
    )
    def mutate_spinapp(
        spec: kopf.Spec, namespace: str | None, patch: kopf.Patch, **kwargs: Any
    ) -> None:
        executors: Executors = kwargs["executors"]
        known = dict(executors.get(namespace, []))
        for key, value in adm.defaults(spec, known).items():
            patch.spec[key] = value

    @on.validate(
        *APPS,
        id=WEBHOOK_IDS["validate_spinapp"],
        operations=["CREATE", "UPDATE"],
        registry=registry,
    )
    def validate_spinapp(body: kopf.Body, namespace: str | None, **kwargs: Any) -> None:
        executors: Executors = kwargs["executors"]
        errors = adm.validate_app_body(body, _executor_specs(executors, namespace))
        if errors:
            raise kopf.AdmissionError("; ".join(errors), code=422)

    @on.validate(
        *EXECUTORS,
        id=WEBHOOK_IDS["validate_executor"],
        operations=["CREATE", "UPDATE", "DELETE"],
        registry=registry,
    )
    def validate_executor(
        body: kopf.Body,
        namespace: str | None,
        name: str,
        operation: str | None = None,  # always passed; WebhookFn does not declare it
        **kwargs: Any,
    ) -> None:
        apps_by_executor: AppsByExecutor = kwargs["apps_by_executor"]
        if operation == "DELETE":
            apps = sorted(apps_by_executor.get((namespace, name), []))
            if apps:
                raise kopf.AdmissionError(
                    f"SpinAppExecutor {name} is used by SpinApp(s) {', '.join(apps)}", code=409
                )
            return
        errors = adm.validate_executor_body(body)
        if errors:
            raise kopf.AdmissionError("; ".join(errors), code=422)


async def run(config: OperatorConfig, stop_flag: Any = None, ready_flag: Any = None) -> None:
    """Run the operator until `stop_flag` is set (or forever); with `metrics_listen`, its
    reconcile metrics are served there for as long (the address is bound first, so a bad one
    fails before anything is watched)."""
    state: dict[str, Any] = {}
    metrics = ReconcileMetrics() if config.metrics_listen is not None else None
    registry = build_registry(config, state, metrics)
    with serving(config.metrics_listen, registry=metrics.registry if metrics else None):
        await kopf.operator(
            registry=registry,
            clusterwide=not config.namespaces,
            namespaces=config.namespaces,
            standalone=True,
            stop_flag=stop_flag,
            ready_flag=ready_flag,
            liveness_endpoint=config.liveness,
        )


def main(config: OperatorConfig) -> int:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(config))
    return 0
