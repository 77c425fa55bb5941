"""Validate generated objects the strict way, offline.

Built-in kinds go through `kubernetes-validate` in strict mode (unknown fields are errors)
for Kubernetes 1.32 and the newest version it bundles; SpinApp/SpinAppExecutor through our CRD
schemas; KEDA's ScaledObject and the Prometheus Operator's ServiceMonitor through schemas of
the fields we emit. cert-manager objects have no schema here and are reported as not
validated.
"""

from __future__ import annotations

from typing import Any

import jsonschema
import kubernetes_validate
from kubernetes_validate.utils import latest_version

from . import API_VERSION, VALIDATED_KUBERNETES
from .appmetrics import SERVICE_MONITOR_API, SERVICE_MONITOR_SCHEMA
from .autoscaling import SCALED_OBJECT_SCHEMA
from .crds import validate_custom_resource

UNCHECKED_GROUPS = ("cert-manager.io/",)
SCHEMAS = {"keda.sh/v1alpha1": SCALED_OBJECT_SCHEMA, SERVICE_MONITOR_API: SERVICE_MONITOR_SCHEMA}


def versions() -> list[str]:
    return [VALIDATED_KUBERNETES, latest_version()]


def validate(obj: dict[str, Any]) -> bool:
    """Raise ValueError if `obj` is invalid; False if no schema exists for its kind."""
    api_version = obj.get("apiVersion", "")
    if api_version == API_VERSION:
        validate_custom_resource(obj)
        return True
    if api_version in SCHEMAS:
        try:
            jsonschema.validate(obj, SCHEMAS[api_version])
        except jsonschema.ValidationError as e:
            raise ValueError(f"{obj.get('kind')}: {e.message}") from None
        return True
    if api_version.startswith(UNCHECKED_GROUPS):
        return False
    for version in versions():
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            where = ".".join(str(p) for p in e.path)
            raise ValueError(
                f"{obj.get('kind')} (Kubernetes {version}) {where}: {e.message}"
            ) from None
    return True
