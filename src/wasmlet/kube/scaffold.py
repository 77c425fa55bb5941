"""`wasmlet kube scaffold`: a SpinApp (and its autoscaler) from an image reference.

Flags and rules are those of `spin kube scaffold`: the app is named after the image's last
path segment, an autoscaler needs CPU and memory limits, targets are 1-100 percent, and
replicas may not exceed --max-replicas. Output: the SpinApp, a `<name>-runtime-config` Secret
when a runtime config file is given, and an HPA or a KEDA ScaledObject (never both).
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from . import API_VERSION
from ._yaml import dump
from .autoscaling import AutoscalerSpec, Target
from .autoscaling import render as render_autoscaler
from .quantity import parse_bytes
from .rtconfig import RUNTIME_CONFIG_KEY

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class ScaffoldError(ValueError):
    pass


@dataclass
class ScaffoldOptions:
    image: str
    replicas: int = 2
    max_replicas: int = 3
    executor: str = "containerd-shim-spin"
    autoscaler: Literal["hpa", "keda"] | None = None
    autoscaler_target: Target = "deployment"
    cpu_utilization: int = 60
    memory_utilization: int = 60
    cpu_limit: str | None = None
    cpu_request: str | None = None
    memory_limit: str | None = None
    memory_request: str | None = None
    runtime_config: str | None = None  # the file's content
    image_pull_secrets: list[str] = field(default_factory=list)
    variables: list[tuple[str, str]] = field(default_factory=list)
    components: list[str] = field(default_factory=list)
    namespace: str | None = None


def app_name(image: str) -> str:
    """`ghcr.io/org/hello-world:v1` -> `hello-world`."""
    ref = image.split("@", 1)[0]
    last = ref.rsplit("/", 1)[-1]
    name = last.split(":", 1)[0]
    if not DNS_LABEL.match(name) or len(name) > 52:
        raise ScaffoldError(
            f"cannot name the app after {image!r}: {name!r} is not a valid Kubernetes name "
            "(lowercase letters, digits and '-', at most 52 characters)"
        )
    return name


def _check(opts: ScaffoldOptions) -> None:
    if opts.replicas < 0 or opts.max_replicas < 0:
        raise ScaffoldError("--replicas and --max-replicas cannot be negative")
    if opts.autoscaler is None:
        return
    if not opts.cpu_limit or not opts.memory_limit:
        raise ScaffoldError("an autoscaler needs --cpu-limit and --memory-limit")
    for flag, value in (
        ("--autoscaler-target-cpu-utilization", opts.cpu_utilization),
        ("--autoscaler-target-memory-utilization", opts.memory_utilization),
    ):
        if not 1 <= value <= 100:
            raise ScaffoldError(f"{flag} must be between 1 and 100, got {value}")
    if opts.replicas > opts.max_replicas:
        raise ScaffoldError(
            f"--replicas ({opts.replicas}) cannot exceed --max-replicas ({opts.max_replicas})"
        )
    if opts.autoscaler == "hpa" and opts.replicas < 1:
        raise ScaffoldError("an HPA needs --replicas of at least 1 (it cannot scale to zero)")
    for flag, quantity in (
        ("--memory-limit", opts.memory_limit),
        ("--memory-request", opts.memory_request),
    ):
        if quantity is not None:
            try:
                parse_bytes(quantity)
            except ValueError as e:
                raise ScaffoldError(f"{flag}: {e}") from None


def _resources(opts: ScaffoldOptions) -> dict[str, Any] | None:
    limits = {k: v for k, v in (("cpu", opts.cpu_limit), ("memory", opts.memory_limit)) if v}
    requests = {k: v for k, v in (("cpu", opts.cpu_request), ("memory", opts.memory_request)) if v}
    out: dict[str, Any] = {}
    if limits:
        out["limits"] = limits
    if requests:
        out["requests"] = requests
    return out or None


def scaffold(opts: ScaffoldOptions) -> list[dict[str, Any]]:
    """The objects, SpinApp first."""
    _check(opts)
    name = app_name(opts.image)
    meta: dict[str, Any] = {"name": name}
    if opts.namespace:
        meta["namespace"] = opts.namespace
    spec: dict[str, Any] = {"image": opts.image, "executor": opts.executor}
    # An autoscaler on the Deployment owns its replica count; one on the SpinApp's /scale
    # subresource writes spec.replicas, so the SpinApp keeps a (starting) count.
    if opts.autoscaler is not None and opts.autoscaler_target == "deployment":
        spec["enableAutoscaling"] = True
    else:
        spec["replicas"] = opts.replicas
    resources = _resources(opts)
    if resources:
        spec["resources"] = resources
    if opts.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": s} for s in opts.image_pull_secrets]
    if opts.variables:
        spec["variables"] = [{"name": k, "value": v} for k, v in opts.variables]
    if opts.components:
        spec["components"] = list(opts.components)
    objs: list[dict[str, Any]] = []
    if opts.runtime_config is not None:
        secret = f"{name}-runtime-config"
        spec["runtimeConfig"] = {"loadFromSecret": secret}
        encoded = base64.b64encode(opts.runtime_config.encode()).decode()
        objs.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {**meta, "name": secret},
                "type": "Opaque",
                "data": {RUNTIME_CONFIG_KEY: encoded},
            }
        )
    app = {"apiVersion": API_VERSION, "kind": "SpinApp", "metadata": dict(meta), "spec": spec}
    objs.insert(0, app)
    if opts.autoscaler is not None:
        objs.append(
            render_autoscaler(
                AutoscalerSpec(
                    kind=opts.autoscaler,
                    name=f"{name}-autoscaler",
                    namespace=opts.namespace,
                    app=name,
                    target=opts.autoscaler_target,
                    min_replicas=opts.replicas,
                    max_replicas=opts.max_replicas,
                    cpu_utilization=opts.cpu_utilization,
                    memory_utilization=opts.memory_utilization,
                )
            )
        )
    return objs


def scaffold_yaml(opts: ScaffoldOptions) -> str:
    return dump(scaffold(opts))
