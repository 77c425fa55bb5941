"""Pure reconcile: SpinApp + executor -> the objects the operator applies, and status.

Same labels, selectors, env, probes and volumes as SpinKube's spin-operator, so a SpinApp
behaves the same under either operator — except for an app its image shows to have no HTTP
trigger (`apptriggers`): it gets no Service, no container port and no HTTP probes, since
nothing in it listens. Nothing here talks to the cluster.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import (
    ACTIVATOR_PORT,
    APP_NAME_LABEL,
    FIELD_MANAGER,
    SERVICE_NAME_LABEL,
    appmetrics,
    pods_service,
    ready_label,
)
from . import routing as rt
from .apptriggers import AppTriggers, activator_problem
from .autoscaling import AutoscalerSpec
from .autoscaling import render as render_autoscaler
from .meta import metadata as _metadata
from .models import HealthProbe, SpinApp, SpinAppExecutor
from .quantity import parse_bytes
from .rtconfig import RUNTIME_CONFIG_KEY, ValueRef, render, secret_name

HTTP_PORT = 80
PORT_NAME = "http-app"
RUNTIME_CONFIG_VOLUME = "spin-runtime-config"
RUNTIME_CONFIG_PATH = "/runtime-config.toml"
CA_VOLUME = "spin-ca"
CA_KEY = "ca-certificates.crt"
CA_PATH = "/etc/ssl/certs/ca-certificates.crt"
DEFAULT_CA_SECRET = "spin-ca"
COMPONENT_LABEL = "app.kubernetes.io/component"
RUNTIME_CONFIG_COMPONENT = "runtime-config"
OTEL_ENV = {
    "exporter_otlp_endpoint": "OTEL_EXPORTER_OTLP_ENDPOINT",
    "exporter_otlp_traces_endpoint": "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "exporter_otlp_metrics_endpoint": "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "exporter_otlp_logs_endpoint": "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
}


class ReconcileError(ValueError):
    """The SpinApp cannot be turned into objects (reason is an Event reason)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Desired:
    """Everything the operator wants to exist for one SpinApp."""

    service: dict[str, Any] | None  # None: the app has no HTTP trigger (delete it)
    deployment: dict[str, Any] | None  # None: the executor does not want one (delete it)
    runtime_config: dict[str, Any] | None  # None: `loadFromSecret` names the user's Secret
    ca_secret: dict[str, Any] | None
    autoscaler: dict[str, Any] | None
    # autoscaler type wasmlet (routing.is_wasmlet): Service <app>-pods, the EndpointSlice of
    # the selectorless Service <app>, and the plan they were made from
    pods_service: dict[str, Any] | None = None
    endpoint_slice: dict[str, Any] | None = None
    plan: rt.Plan | None = None
    warnings: tuple[tuple[str, str], ...] = ()  # (Event reason, message) to post
    # executor `metrics.serviceMonitor` (appmetrics.py): Service <app>-metrics, ServiceMonitor
    metrics_service: dict[str, Any] | None = None
    service_monitor: dict[str, Any] | None = None

    def objects(self) -> list[dict[str, Any]]:
        """In apply order: secrets before the Deployment that mounts them; the EndpointSlice
        before Service <app> loses its selector (so it never has no endpoints)."""
        found = [
            self.runtime_config,
            self.ca_secret,
            self.deployment,
            self.pods_service,
            self.endpoint_slice,
            self.service,
            self.autoscaler,
            self.metrics_service,
            self.service_monitor,
        ]
        return [o for o in found if o is not None]

    @property
    def requeue_after(self) -> float | None:
        """Seconds after which the app must be reconciled again (the scale-down grace)."""
        return self.plan.requeue_after if self.plan is not None else None


def selector_labels(app: str) -> dict[str, str]:
    return {APP_NAME_LABEL: app, ready_label(app): "ready"}


def selector_string(app: str) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(selector_labels(app).items()))


def _probe(probe: HealthProbe | None) -> dict[str, Any] | None:
    if probe is None or probe.http_get is None:
        return None
    get: dict[str, Any] = {"path": probe.http_get.path, "port": HTTP_PORT}
    if probe.http_get.http_headers:
        get["httpHeaders"] = [h.dump() for h in probe.http_get.http_headers]
    return {
        "httpGet": get,
        "initialDelaySeconds": probe.initial_delay_seconds,
        "timeoutSeconds": probe.timeout_seconds,
        "periodSeconds": probe.period_seconds,
        "successThreshold": probe.success_threshold,
        "failureThreshold": probe.failure_threshold,
    }


def variable_env_name(name: str) -> str:
    return f"SPIN_VARIABLE_{name.upper()}"


def _env(app: SpinApp, executor: SpinAppExecutor) -> list[dict[str, Any]]:
    spec = app.spec
    env: list[dict[str, Any]] = []
    for var in spec.variables or []:
        item: dict[str, Any] = {"name": variable_env_name(var.name)}
        if var.value_from is not None:
            item["valueFrom"] = var.value_from
        else:
            item["value"] = var.value or ""
        env.append(item)
    env.append({"name": "SPIN_HTTP_LISTEN_ADDR", "value": f"0.0.0.0:{HTTP_PORT}"})
    config = executor.spec.deployment_config
    if config is not None and config.otel is not None:
        otel = config.otel.model_dump()
        env += [{"name": OTEL_ENV[k], "value": v} for k, v in otel.items() if v]
    metrics = appmetrics.config(executor)
    if metrics is not None:
        env.append(appmetrics.env(metrics))
    if spec.components:
        env.append({"name": "SPIN_COMPONENTS_TO_RETAIN", "value": ",".join(spec.components)})
    memory = (spec.invocation_limits or {}).get("memory")
    if memory is not None:
        try:
            env.append({"name": "SPIN_MAX_INSTANCE_MEMORY", "value": str(parse_bytes(memory))})
        except ValueError as e:
            raise ReconcileError(
                "InvalidInvocationLimits", f"invocationLimits.memory: {e}"
            ) from None
    return env + list(spec.env or [])


def _app_container(
    app: SpinApp, executor: SpinAppExecutor, has_ca: bool, runtime_config: bool, http: bool = True
) -> dict[str, Any]:
    spec = app.spec
    config = executor.spec.deployment_config
    container: dict[str, Any] = {"name": app.name}
    if config is not None and config.spin_image:
        args = ["up", "--listen", f"0.0.0.0:{HTTP_PORT}", "-f", spec.image]
        args += ["--runtime-config-file", RUNTIME_CONFIG_PATH]
        for component in spec.components or []:
            args += ["--component-id", component]
        container |= {"image": config.spin_image, "args": args}
    else:
        container |= {"image": spec.image, "command": ["/"]}
    if spec.image_pull_policy:
        container["imagePullPolicy"] = spec.image_pull_policy
    ports = []
    if http:  # (an app without an HTTP trigger listens on nothing)
        ports.append({"name": PORT_NAME, "containerPort": HTTP_PORT, "protocol": "TCP"})
    metrics = appmetrics.config(executor)
    if metrics is not None:
        ports.append(appmetrics.container_port(metrics))
    if ports:
        container["ports"] = ports
    container["env"] = _env(app, executor)
    if spec.resources is not None:
        resources = spec.resources.dump()
        if resources:
            container["resources"] = resources
    mounts = list(spec.volume_mounts or [])
    if runtime_config:
        mounts.append(
            {
                "name": RUNTIME_CONFIG_VOLUME,
                "mountPath": RUNTIME_CONFIG_PATH,
                "subPath": RUNTIME_CONFIG_KEY,
                "readOnly": True,
            }
        )
    if has_ca:
        mounts.append(
            {"name": CA_VOLUME, "mountPath": CA_PATH, "subPath": CA_KEY, "readOnly": True}
        )
    if mounts:
        container["volumeMounts"] = mounts
    checks = spec.checks if http else None  # nothing would answer an HTTP probe
    for field, probe in (
        ("readinessProbe", checks.readiness if checks else None),
        ("livenessProbe", checks.liveness if checks else None),
    ):
        rendered = _probe(probe)
        if rendered is not None:
            container[field] = rendered
    return container


def _ca_secret_name(executor: SpinAppExecutor) -> str | None:
    config = executor.spec.deployment_config
    if config is None:
        return None
    if config.ca_cert_secret:
        return config.ca_cert_secret
    return DEFAULT_CA_SECRET if config.install_default_ca_certs else None


def deployment(
    app: SpinApp,
    executor: SpinAppExecutor,
    runtime_config_secret: str,
    replicas: int | None = None,
    http: bool = True,
) -> dict[str, Any]:
    """`replicas`: the count the activator's routing allows now (autoscaler type wasmlet);
    `http`: whether the app has an HTTP trigger (a port and probes)."""
    spec = app.spec
    config = executor.spec.deployment_config
    ca = _ca_secret_name(executor)
    volumes = list(spec.volumes or [])
    volumes.append(
        {
            "name": RUNTIME_CONFIG_VOLUME,
            "secret": {"secretName": runtime_config_secret, "optional": True},
        }
    )
    if ca is not None:
        volumes.append({"name": CA_VOLUME, "secret": {"secretName": ca, "optional": True}})
    pod: dict[str, Any] = {}
    if config is not None and config.runtime_class_name:
        pod["runtimeClassName"] = config.runtime_class_name
    if spec.service_account_name:
        pod["serviceAccountName"] = spec.service_account_name
    pod["containers"] = [_app_container(app, executor, ca is not None, True, http)]
    pod["containers"] += list(spec.containers or [])
    if spec.image_pull_secrets:
        pod["imagePullSecrets"] = list(spec.image_pull_secrets)
    if spec.node_selector:
        pod["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        pod["tolerations"] = list(spec.tolerations)
    if spec.affinity:
        pod["affinity"] = spec.affinity
    pod["volumes"] = volumes
    template_meta: dict[str, Any] = {
        "labels": dict(spec.pod_labels or {}) | selector_labels(app.name)
    }
    metrics = appmetrics.config(executor)
    annotations = appmetrics.pod_annotations(metrics) if metrics is not None else {}
    annotations |= spec.pod_annotations or {}
    if annotations:
        template_meta["annotations"] = annotations
    body: dict[str, Any] = {}
    if replicas is not None:
        body["replicas"] = replicas
    elif not spec.enable_autoscaling:
        body["replicas"] = spec.replicas if spec.replicas is not None else 1
    body["selector"] = {"matchLabels": selector_labels(app.name)}
    body["template"] = {"metadata": template_meta, "spec": pod}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(app, app.name, spec.deployment_annotations),
        "spec": body,
    }


def service(app: SpinApp) -> dict[str, Any]:
    """Service `<app>`, selecting the app's ready pods (SpinKube's)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(app, app.name, app.spec.service_annotations),
        "spec": {
            "type": "ClusterIP",
            "ports": [
                {"name": PORT_NAME, "port": HTTP_PORT, "protocol": "TCP", "targetPort": PORT_NAME}
            ],
            "selector": {ready_label(app.name): "ready"},
        },
    }


def pods_service_object(app: SpinApp) -> dict[str, Any]:
    """Autoscaler type wasmlet: Service `<app>-pods`, what Service `<app>` is otherwise."""
    obj = service(app)
    obj["metadata"] = _metadata(app, pods_service(app.name), labels={rt.ROLE_LABEL: rt.PODS_ROLE})
    return obj


def public_service(app: SpinApp) -> dict[str, Any]:
    """Autoscaler type wasmlet: Service `<app>` without a selector; the operator writes its
    endpoints (`endpoint_slice`), so clients keep using `<app>` / `<app>.<ns>.svc`."""
    port = {"name": rt.PUBLIC_PORT_NAME, "port": HTTP_PORT, "protocol": "TCP"}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(app, app.name, app.spec.service_annotations),
        "spec": {"type": "ClusterIP", "ports": [port]},
    }


def endpoint_slice(app: SpinApp, plan: rt.Plan) -> dict[str, Any]:
    """The one EndpointSlice of Service `<app>`: the app's ready pods (serve mode) or the
    activator's (proxy mode)."""
    labels = {SERVICE_NAME_LABEL: app.name, rt.MANAGED_BY_LABEL: FIELD_MANAGER}
    port = HTTP_PORT if plan.served_by == rt.PODS else ACTIVATOR_PORT
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": _metadata(app, rt.slice_name(app.name), labels=labels),
        "addressType": plan.address_type,
        "endpoints": plan.endpoints,
        "ports": [{"name": rt.PUBLIC_PORT_NAME, "port": port, "protocol": "TCP"}],
    }


def runtime_config_secret(app: SpinApp, toml: str) -> dict[str, Any]:
    name = secret_name(app.name, toml)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(app, name, labels={COMPONENT_LABEL: RUNTIME_CONFIG_COMPONENT}),
        "type": "Opaque",
        "stringData": {RUNTIME_CONFIG_KEY: toml},
    }


def ca_secret(executor: SpinAppExecutor, namespace: str, bundle: str) -> dict[str, Any]:
    """Secret `spin-ca`: shared by the executor's apps in a namespace, so owned by the executor."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": DEFAULT_CA_SECRET,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": FIELD_MANAGER},
            "ownerReferences": [
                {
                    "apiVersion": executor.api_version,
                    "kind": "SpinAppExecutor",
                    "name": executor.name,
                    "uid": str(executor.metadata.get("uid", "")),
                }
            ],
        },
        "type": "Opaque",
        "stringData": {CA_KEY: bundle},
    }


def autoscaler(app: SpinApp) -> dict[str, Any] | None:
    """The operator-owned HPA or ScaledObject for `spec.autoscaler` (never both; none for
    type wasmlet, whose activator scales the app through /scale)."""
    wanted = app.spec.autoscaler
    if wanted is None or wanted.type == "wasmlet" or not app.spec.enable_autoscaling:
        return None
    zero = wanted.scale_to_zero
    minimum = wanted.min_replicas
    if minimum is None:
        minimum = 0 if zero is not None and zero.enabled else 1
    spec = AutoscalerSpec(
        kind=wanted.type,
        name=f"{app.name}-autoscaler",
        namespace=app.namespace,
        app=app.name,
        min_replicas=minimum,
        max_replicas=wanted.max_replicas,
        cpu_utilization=wanted.cpu_utilization,
        memory_utilization=wanted.memory_utilization,
        cooldown_period=zero.cooldown_period_seconds if zero is not None else None,
        polling_interval=zero.polling_interval_seconds if zero is not None else None,
        extra_triggers=list(wanted.triggers or []),
    )
    obj = render_autoscaler(spec)
    obj["metadata"] = _metadata(app, spec.name)
    return obj


def desired(
    app: SpinApp,
    executor: SpinAppExecutor,
    resolved: Mapping[ValueRef, str] | None = None,
    ca_bundle: str | None = None,
    plan: rt.Plan | None = None,
    triggers: AppTriggers | None = None,
) -> Desired:
    """What should exist for `app` run by `executor`.

    `resolved` holds the ConfigMap/Secret values the runtime config references
    (`rtconfig.references`); `ca_bundle` the PEM bundle for `installDefaultCACerts`; `plan`
    the routing of an app with autoscaler type wasmlet (`routing.plan`; without one, the plan
    of an app nothing has been observed for: the activator serves, no pods yet); `triggers`
    the app's trigger types, read from its image (None: an HTTP app, as SpinKube takes every
    app). Raises ReconcileError for autoscaler type wasmlet on an app the activator cannot
    stand in for (`apptriggers.activator_problem`).
    """
    http = triggers is None or triggers.http
    warnings: list[tuple[str, str]] = []
    if triggers is not None and rt.is_wasmlet(app) and app.spec.autoscaler is not None:
        fewest = min(rt.bounds(app.spec.autoscaler))  # (maxReplicas wins when they cross)
        problem = activator_problem(triggers, fewest)
        if problem is not None:
            raise ReconcileError("NotActivatable", problem)
    checks = app.spec.checks
    if not http and triggers is not None and checks and (checks.readiness or checks.liveness):
        warnings.append(
            (
                "ProbesIgnored",
                f"spec.checks: the app has no HTTP trigger (it has {', '.join(triggers.messages)}"
                " triggers), so nothing answers an HTTP probe; its pods get none (wasmlet's "
                "shim reports a pod running only once its triggers are subscribed)",
            )
        )
    config = app.spec.runtime_config
    secret: dict[str, Any] | None = None
    if config is not None and config.load_from_secret:
        secret_ref = config.load_from_secret
    else:
        secret = runtime_config_secret(app, render(config, resolved))
        secret_ref = secret["metadata"]["name"]
    ca: dict[str, Any] | None = None
    exec_config = executor.spec.deployment_config
    if (
        exec_config is not None
        and exec_config.install_default_ca_certs
        and not exec_config.ca_cert_secret
        and ca_bundle
    ):
        ca = ca_secret(executor, app.namespace, ca_bundle)
    make_deployment = executor.spec.create_deployment
    metrics = appmetrics.config(executor) if make_deployment else None
    monitoring: dict[str, Any] = {}
    if metrics is not None and metrics.service_monitor is not None:
        monitoring["metrics_service"] = appmetrics.service(app, metrics)
        monitoring["service_monitor"] = appmetrics.service_monitor(app, metrics)
    if rt.is_wasmlet(app):
        plan = plan if plan is not None else rt.plan(app)
        return Desired(
            service=public_service(app),
            deployment=(
                deployment(app, executor, secret_ref, plan.deployment_replicas)
                if make_deployment
                else None
            ),
            runtime_config=secret,
            ca_secret=ca if make_deployment else None,
            autoscaler=None,
            pods_service=pods_service_object(app),
            endpoint_slice=endpoint_slice(app, plan),
            plan=plan,
            **monitoring,
        )
    return Desired(
        service=service(app) if http else None,
        deployment=deployment(app, executor, secret_ref, http=http) if make_deployment else None,
        runtime_config=secret,
        ca_secret=ca if make_deployment else None,
        autoscaler=autoscaler(app) if make_deployment else None,
        warnings=tuple(warnings),
        **monitoring,
    )


# -- status -------------------------------------------------------------------------------

WATCHED_CONDITIONS = ("Available", "Progressing")
POD_ERRORS = {
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
}


def pod_problems(pod: Mapping[str, Any]) -> list[str]:
    """Why a pod's containers cannot run (image pull errors, crash loops), one line each."""
    problems = []
    name = pod.get("metadata", {}).get("name", "?")
    status = pod.get("status") or {}
    for cs in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        waiting = (cs.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if reason in POD_ERRORS:
            detail = waiting.get("message") or reason
            problems.append(f"{reason}: pod {name} container {cs.get('name')}: {detail}")
    return problems


def _condition(
    kind: str,
    status: str,
    reason: str,
    message: str,
    now: str,
    previous: Mapping[str, Mapping[str, Any]],
    generation: int | None,
    since: str | None = None,
) -> dict[str, Any]:
    old = previous.get(kind)
    changed = old is None or old.get("status") != status
    cond = {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": (since or now) if changed else old["lastTransitionTime"],  # type: ignore[index]
    }
    if generation is not None:
        cond["observedGeneration"] = generation
    return cond


def status(
    app: SpinApp,
    deployment: Mapping[str, Any] | None,
    now: str,
    problems: Sequence[str] = (),
    service: bool = True,
) -> dict[str, Any]:
    """SpinApp status from its Deployment (conditions copied, as SpinKube does) and pods;
    `service`: whether the app has its Service (not without an HTTP trigger)."""
    previous = {c["type"]: c for c in (app.status.conditions if app.status else None) or []}
    generation = app.metadata.get("generation")
    dep_status = (deployment or {}).get("status") or {}
    dep_conditions = {c.get("type"): c for c in dep_status.get("conditions") or []}
    conditions = []
    for kind in WATCHED_CONDITIONS:
        found = dep_conditions.get(kind)
        if deployment is None:
            cond = _condition(kind, "Unknown", "DeploymentNotFound", "", now, previous, generation)
        elif found is None:
            cond = _condition(
                kind, "Unknown", "Pending", "not reported yet", now, previous, generation
            )
        else:
            cond = _condition(
                kind,
                str(found.get("status", "Unknown")),
                str(found.get("reason") or "Unknown"),
                str(found.get("message") or ""),
                now,
                previous,
                generation,
                since=found.get("lastTransitionTime") or found.get("lastUpdateTime"),
            )
        conditions.append(cond)
    if problems:
        reason = problems[0].split(":", 1)[0]
        conditions.append(
            _condition(
                "ContainersHealthy", "False", reason, "\n".join(problems), now, previous, generation
            )
        )
    elif deployment is not None:
        conditions.append(
            _condition("ContainersHealthy", "True", "NoErrors", "", now, previous, generation)
        )
    out: dict[str, Any] = {
        "conditions": conditions,
        "activeScheduler": app.spec.executor,
        "readyReplicas": int(dep_status.get("readyReplicas") or 0),
        "replicas": int(dep_status.get("replicas") or 0),
        "selector": selector_string(app.name),
        "serviceName": app.name if service else None,
    }
    if deployment is not None:
        out["deploymentName"] = app.name
    return out
