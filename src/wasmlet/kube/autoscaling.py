"""HPA (`autoscaling/v2`) and KEDA ScaledObject manifests; never both for one target.

Used by `wasmlet kube scaffold` (standalone manifests, as `spin kube scaffold` writes) and by
the operator for `spec.autoscaler` (then owned by the SpinApp).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from . import API_VERSION

Target = Literal["deployment", "spinapp"]


@dataclass(frozen=True)
class AutoscalerSpec:
    kind: Literal["hpa", "keda"]
    name: str
    namespace: str | None
    app: str
    target: Target = "deployment"
    min_replicas: int = 1
    max_replicas: int = 3
    cpu_utilization: int | None = None
    memory_utilization: int | None = None
    cooldown_period: int | None = None
    polling_interval: int | None = None
    extra_triggers: list[dict[str, Any]] = field(default_factory=list)


def scale_target(app: str, target: Target) -> dict[str, str]:
    """The Deployment, or the SpinApp itself through its /scale subresource."""
    if target == "spinapp":
        return {"apiVersion": API_VERSION, "kind": "SpinApp", "name": app}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "name": app}


def _metadata(spec: AutoscalerSpec) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": spec.name}
    if spec.namespace:
        meta["namespace"] = spec.namespace
    return meta


def hpa(spec: AutoscalerSpec) -> dict[str, Any]:
    metrics = [
        {
            "type": "Resource",
            "resource": {
                "name": resource,
                "target": {"type": "Utilization", "averageUtilization": target},
            },
        }
        for resource, target in (("cpu", spec.cpu_utilization), ("memory", spec.memory_utilization))
        if target is not None
    ]
    body: dict[str, Any] = {
        "scaleTargetRef": scale_target(spec.app, spec.target),
        "minReplicas": spec.min_replicas,
        "maxReplicas": spec.max_replicas,
    }
    if metrics:
        body["metrics"] = metrics
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(spec),
        "spec": body,
    }


def scaled_object(spec: AutoscalerSpec) -> dict[str, Any]:
    triggers: list[dict[str, Any]] = [
        {"type": resource, "metricType": "Utilization", "metadata": {"value": str(target)}}
        for resource, target in (("cpu", spec.cpu_utilization), ("memory", spec.memory_utilization))
        if target is not None
    ]
    triggers += spec.extra_triggers
    body: dict[str, Any] = {
        "scaleTargetRef": scale_target(spec.app, spec.target),
        "minReplicaCount": spec.min_replicas,
        "maxReplicaCount": spec.max_replicas,
    }
    if spec.cooldown_period is not None:
        body["cooldownPeriod"] = spec.cooldown_period
    if spec.polling_interval is not None:
        body["pollingInterval"] = spec.polling_interval
    body["triggers"] = triggers
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": _metadata(spec),
        "spec": body,
    }


def render(spec: AutoscalerSpec) -> dict[str, Any]:
    return hpa(spec) if spec.kind == "hpa" else scaled_object(spec)


#: A minimal schema of KEDA's ScaledObject (keda.sh/v1alpha1) for the fields we emit; KEDA is a
#: custom resource, so `kubernetes-validate` has no schema for it.
SCALED_OBJECT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": {"type": "object"},
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "name": {"type": "string"},
                        "envSourceContainerName": {"type": "string"},
                    },
                },
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "idleReplicaCount": {"type": "integer", "enum": [0]},
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "fallback": {"type": "object"},
                "advanced": {"type": "object"},
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["type", "metadata"],
                        "properties": {
                            "type": {"type": "string"},
                            "name": {"type": "string"},
                            "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                            "metadata": {
                                "type": "object",
                                "additionalProperties": {"type": "string"},
                            },
                            "authenticationRef": {"type": "object"},
                            "useCachedMetrics": {"type": "boolean"},
                        },
                        "additionalProperties": False,
                    },
                },
            },
        },
    },
}
