"""Admission rules as pure functions: SpinKube's defaulting and validation, plus ours.

The kopf layer (`operator.py`) exposes them as mutating/validating webhooks; each message
names the field and says what to do.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from . import activator_apps
from .models import (
    WASMLET_ONLY,
    Autoscaler,
    ExecutorDeploymentConfig,
    SpinApp,
    SpinAppExecutor,
    SpinAppExecutorSpec,
    SpinAppSpec,
)
from .quantity import parse_bytes
from .reconcile import HTTP_PORT

MAX_APP_NAME = 52  # `core.spinkube.dev/app.<name>.status` must be a valid label key (63)
VARIABLE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
RESOURCE_TRIGGERS = {"cpu", "memory"}


def pydantic_messages(error: ValidationError, prefix: str) -> list[str]:
    out = []
    for err in error.errors():
        where = ".".join(str(p) for p in err["loc"])
        out.append(f"{prefix}.{where}: {err['msg']}" if where else f"{prefix}: {err['msg']}")
    return out


def parse_app(body: Mapping[str, Any]) -> tuple[SpinApp | None, list[str]]:
    try:
        return SpinApp.model_validate(dict(body)), []
    except ValidationError as e:
        return None, pydantic_messages(e, "SpinApp")


def default_executor(executors: Mapping[str, Any]) -> str | None:
    """SpinKube's rule: an empty executor becomes the alphabetically first one."""
    return min(executors) if executors else None


def defaults(spec: Mapping[str, Any], executors: Mapping[str, Any]) -> dict[str, Any]:
    """The spec fields the mutating webhook sets (an empty dict: nothing to change)."""
    changes: dict[str, Any] = {}
    if not spec.get("executor"):
        chosen = default_executor(executors)
        if chosen is not None:
            changes["executor"] = chosen
    if not spec.get("enableAutoscaling") and spec.get("replicas") is None:
        changes["replicas"] = 1
    return changes


def _validate_executor_ref(
    app: SpinApp, executors: Mapping[str, SpinAppExecutorSpec]
) -> tuple[list[str], SpinAppExecutorSpec | None]:
    name = app.spec.executor
    if not name:
        have = "none exists" if not executors else "none was chosen"
        return [f"spec.executor: must name a SpinAppExecutor in {app.namespace} ({have})"], None
    if name not in executors:
        have = ", ".join(sorted(executors)) or "none"
        return [
            f"spec.executor: SpinAppExecutor {name!r} does not exist in namespace "
            f"{app.namespace} (existing: {have})"
        ], None
    return [], executors[name]


def _validate_replicas(spec: SpinAppSpec) -> list[str]:
    """Whoever writes `spec.replicas` through /scale may write any count, 0 included, and the
    SpinApp must stay admissible afterwards: an autoscaler targeting the SpinApp (with
    enableAutoscaling false) or the activator (enableAutoscaling with type wasmlet). Only an
    autoscaler on the Deployment (type hpa/keda, or your own) leaves it unset."""
    wasmlet = spec.autoscaler is not None and spec.autoscaler.type == "wasmlet"
    if spec.enable_autoscaling and not wasmlet and spec.replicas not in (None, 0):
        return [
            "spec.replicas: must be unset when enableAutoscaling is true (the autoscaler owns "
            "the Deployment's replica count); with spec.autoscaler.type wasmlet the activator "
            "writes it through /scale"
        ]
    return []


def _validate_limits(spec: SpinAppSpec) -> list[str]:
    memory = (spec.invocation_limits or {}).get("memory")
    if memory is None:
        return []
    try:
        parse_bytes(memory)
    except ValueError as e:
        return [f"spec.invocationLimits.memory: {e}"]
    return []


def _validate_variables(spec: SpinAppSpec) -> list[str]:
    errors, seen = [], set()
    for i, var in enumerate(spec.variables or []):
        where = f"spec.variables[{i}]"
        if not VARIABLE_NAME.match(var.name):
            errors.append(
                f"{where}.name: {var.name!r} is not a Spin variable name "
                "(lowercase letters, digits and _, starting with a letter)"
            )
        if var.name in seen:
            errors.append(f"{where}.name: {var.name!r} is set twice")
        seen.add(var.name)
        if var.value is not None and var.value_from is not None:
            errors.append(f"{where}: set value or valueFrom, not both")
    return errors


def _validate_runtime_config(spec: SpinAppSpec) -> list[str]:
    config = spec.runtime_config
    if config is None:
        return []
    errors = []
    groups = {
        "keyValueStores": config.key_value_stores or [],
        "sqliteDatabases": config.sqlite_databases or [],
    }
    for field, stores in groups.items():
        names = [s.name for s in stores]
        for dup in sorted({n for n in names if names.count(n) > 1}):
            errors.append(f"spec.runtimeConfig.{field}: {dup!r} is defined twice")
    for field, stores in groups.items():
        for i, store in enumerate(stores):
            for j, option in enumerate(store.options or []):
                if (option.value is None) == (option.value_from is None):
                    errors.append(
                        f"spec.runtimeConfig.{field}[{i}].options[{j}]: "
                        "set exactly one of value and valueFrom"
                    )
    if config.load_from_secret and (groups["keyValueStores"] or groups["sqliteDatabases"]):
        errors.append(
            "spec.runtimeConfig: loadFromSecret replaces the whole runtime config; "
            "remove keyValueStores/sqliteDatabases or move them into that Secret"
        )
    return errors


def _requests(spec: SpinAppSpec, resource: str) -> bool:
    res = spec.resources
    if res is None:
        return False
    return resource in (res.requests or {}) or resource in (res.limits or {})


def _validate_autoscaler(spec: SpinAppSpec, executor: SpinAppExecutorSpec | None) -> list[str]:
    auto = spec.autoscaler
    if auto is None:
        return []
    where = "spec.autoscaler"
    errors = []
    if not spec.enable_autoscaling:
        unset = "" if auto.type == "wasmlet" else " (and replicas unset)"
        errors.append(f"{where}: needs enableAutoscaling: true{unset}")
    if executor is not None and not executor.create_deployment:
        errors.append(f"{where}: the executor creates no Deployment, so there is nothing to scale")
    if auto.type == "wasmlet":
        return errors + _validate_wasmlet(spec, auto)
    for name in sorted(WASMLET_ONLY):
        if name in auto.model_fields_set:
            field = Autoscaler.model_fields[name].alias or name
            errors.append(f"{where}.{field}: only for type: wasmlet")
    zero = auto.scale_to_zero is not None and auto.scale_to_zero.enabled
    minimum = auto.min_replicas if auto.min_replicas is not None else (0 if zero else 1)
    if auto.max_replicas < max(minimum, 1):
        errors.append(f"{where}.maxReplicas: must be at least minReplicas ({minimum}) and 1")
    if minimum == 0 and not zero:
        errors.append(f"{where}.minReplicas: 0 needs scaleToZero.enabled")
    if auto.type == "hpa":
        if zero:
            errors.append(
                f"{where}.scaleToZero: an HPA cannot scale to zero (alpha HPAScaleToZero gate); "
                "use type: keda"
            )
        if auto.triggers:
            errors.append(f"{where}.triggers: only for type: keda")
        if auto.cpu_utilization is None and auto.memory_utilization is None:
            errors.append(f"{where}: an HPA needs cpuUtilization or memoryUtilization")
    else:
        extra = [t for t in auto.triggers or [] if t.get("type") not in RESOURCE_TRIGGERS]
        if zero and not extra:
            errors.append(
                f"{where}.scaleToZero: CPU and memory cannot wake an app at zero replicas; "
                "add a request-based trigger (e.g. prometheus) under triggers"
            )
        if auto.cpu_utilization is None and auto.memory_utilization is None and not auto.triggers:
            errors.append(f"{where}: KEDA needs cpuUtilization, memoryUtilization or triggers")
    for resource, target in (("cpu", auto.cpu_utilization), ("memory", auto.memory_utilization)):
        if target is not None and not _requests(spec, resource):
            errors.append(
                f"{where}.{resource}Utilization: set spec.resources requests or limits for "
                f"{resource} (utilization is a percentage of the request)"
            )
    return errors


def _validate_wasmlet(spec: SpinAppSpec, auto: Autoscaler) -> list[str]:
    """Type wasmlet: the activator scales on concurrency, from zero pods by default, and
    serves the app itself at zero pods, so it must be able to run it as its pods would."""
    where = "spec.autoscaler"
    errors = []
    minimum = auto.min_replicas if auto.min_replicas is not None else 0
    if minimum == 0:
        errors += [
            f"{problem} (with type: wasmlet and minReplicas 0 the activator serves the app "
            "at zero pods; set minReplicas >= 1 to keep it)"
            for problem in activator_apps.unsupported(spec)
        ]
    if auto.max_replicas < minimum:
        errors.append(
            f"{where}.maxReplicas: must be at least minReplicas ({minimum}); 0 means the "
            "activator alone serves the app"
        )
    unsupported = (
        ("cpuUtilization", auto.cpu_utilization),
        ("memoryUtilization", auto.memory_utilization),
        ("triggers", auto.triggers),
    )
    for field, value in unsupported:
        if value is not None:
            errors.append(
                f"{where}.{field}: not with type: wasmlet (the activator scales on requests in "
                "flight: set targetConcurrency)"
            )
    return errors


def _validate_containers(app: SpinApp) -> list[str]:
    errors: list[str] = []
    seen: set[str | None] = {app.name}
    for i, container in enumerate(app.spec.containers or []):
        name = container.get("name")
        if not name or not container.get("image"):
            errors.append(f"spec.containers[{i}]: a sidecar needs a name and an image")
        elif name in seen:
            errors.append(
                f"spec.containers[{i}].name: {name!r} is taken (the app's own container is "
                f"named after the app)"
            )
        seen.add(name)
    return errors


def validate_app(app: SpinApp, executors: Mapping[str, SpinAppExecutorSpec]) -> list[str]:
    """Every reason to reject `app`; an empty list admits it."""
    errors: list[str] = []
    if len(app.name) > MAX_APP_NAME:
        errors.append(
            f"metadata.name: at most {MAX_APP_NAME} characters (it is part of the label "
            f"key core.spinkube.dev/app.<name>.status)"
        )
    ref_errors, executor = _validate_executor_ref(app, executors)
    errors += ref_errors
    spec = app.spec
    errors += _validate_replicas(spec)
    if executor is not None and not executor.create_deployment:
        annotations = (
            ("deploymentAnnotations", spec.deployment_annotations),
            ("podAnnotations", spec.pod_annotations),
        )
        for field, value in annotations:
            if value:
                errors.append(
                    f"spec.{field}: executor {spec.executor!r} does not create a Deployment, "
                    "so these annotations would have no effect"
                )
    errors += _validate_limits(spec)
    errors += _validate_variables(spec)
    errors += _validate_runtime_config(spec)
    errors += _validate_autoscaler(spec, executor)
    errors += _validate_containers(app)
    return errors


def validate_app_body(
    body: Mapping[str, Any], executors: Mapping[str, SpinAppExecutorSpec]
) -> list[str]:
    app, errors = parse_app(body)
    return errors if app is None else validate_app(app, executors)


def _validate_observability(config: ExecutorDeploymentConfig) -> list[str]:
    """The otel endpoints are URLs (the OTel SDKs take nothing else); the metrics port is
    not the app's."""
    errors = []
    otel = config.otel.model_dump() if config.otel is not None else {}
    for field, value in otel.items():
        parsed = urllib.parse.urlsplit(value or "")
        if value and (parsed.scheme not in ("http", "https") or not parsed.hostname):
            errors.append(
                f"spec.deploymentConfig.otel.{field}: {value!r} is not an http:// or https:// "
                "URL (e.g. http://otel-collector.observability.svc.cluster.local:4318)"
            )
    if config.metrics is not None and config.metrics.port == HTTP_PORT:
        errors.append(
            f"spec.deploymentConfig.metrics.port: {HTTP_PORT} is the app's own port; "
            "choose another (default 9090)"
        )
    return errors


def validate_executor(spec: SpinAppExecutorSpec) -> list[str]:
    config = spec.deployment_config
    runtime_class = config.runtime_class_name if config else None
    image = config.spin_image if config else None
    errors = _validate_observability(config) if config is not None else []
    if runtime_class and image:
        errors.append(
            "spec.deploymentConfig: set runtimeClassName or spinImage, not both "
            "(a runtime class runs the app in a shim; spinImage runs it in a container)"
        )
    elif spec.create_deployment and not (runtime_class or image):
        errors.append(
            "spec.deploymentConfig: createDeployment needs runtimeClassName "
            "(e.g. wasmtime-spin-v2) or spinImage (e.g. the wasmlet image)"
        )
    return errors


def validate_executor_body(body: Mapping[str, Any]) -> list[str]:
    try:
        executor = SpinAppExecutor.model_validate(dict(body))
    except ValidationError as e:
        return pydantic_messages(e, "SpinAppExecutor")
    return validate_executor(executor.spec)
