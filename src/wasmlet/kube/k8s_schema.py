"""Schemas of core Kubernetes types (Container, Volume, Affinity, …) for our CRDs.

A SpinApp embeds core types (volumes, sidecar containers, tolerations, …). Their schemas come
from the Kubernetes OpenAPI definitions bundled with `kubernetes-validate` (the version in
`VALIDATED_KUBERNETES`), converted to the *structural* schema form CRDs require: `$ref`s
inlined, `type: [X, "null"]` narrowed to `X`, int-or-string marked
`x-kubernetes-int-or-string`, descriptions dropped (they would only bloat the CRD).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from . import VALIDATED_KUBERNETES

_KEEP = {
    "type",
    "properties",
    "items",
    "required",
    "enum",
    "format",
    "additionalProperties",
    "x-kubernetes-map-type",
}
_INT_OR_STRING = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString",
    "io.k8s.apimachinery.pkg.api.resource.Quantity",
}


@cache
def definitions(version: str = VALIDATED_KUBERNETES) -> dict[str, Any]:
    """The OpenAPI definitions (`io.k8s.api.core.v1.Container`, …) bundled for `version`."""
    root = resources.files("kubernetes_validate") / "kubernetes-json-schema"
    data = json.loads((root / f"v{version}-local" / "_definitions.json").read_text())
    defs: dict[str, Any] = data["$defs"]
    return defs


def _narrow_type(value: Any) -> Any:
    if isinstance(value, list):
        kinds = [t for t in value if t != "null"]
        return kinds[0] if len(kinds) == 1 else kinds
    return value


def _convert(schema: dict[str, Any], defs: dict[str, Any], seen: tuple[str, ...]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is not None:
        name = ref.rsplit("/", 1)[-1]
        if name in _INT_OR_STRING:
            return {"x-kubernetes-int-or-string": True}
        if name in seen:
            raise ValueError(f"recursive Kubernetes type {name} cannot be embedded in a CRD")
        return _convert(defs[name], defs, (*seen, name))
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key not in _KEEP:
            continue
        if key == "type":
            out["type"] = _narrow_type(value)
        elif key == "properties":
            out["properties"] = {k: _convert(v, defs, seen) for k, v in value.items()}
        elif key in ("items", "additionalProperties"):
            if isinstance(value, dict):
                out[key] = _convert(value, defs, seen)
        elif key == "format" and value not in ("int32", "int64", "double", "date-time"):
            continue
        else:
            out[key] = value
    if "oneOf" in schema:  # int-or-string written inline
        return {"x-kubernetes-int-or-string": True}
    return out


@cache
def _embedded(name: str, version: str) -> str:
    defs = definitions(version)
    if name not in defs:
        raise KeyError(f"no Kubernetes type {name} in the {version} definitions")
    return json.dumps(_convert(defs[name], defs, (name,)))


def embedded(name: str, version: str = VALIDATED_KUBERNETES) -> dict[str, Any]:
    """The structural schema of Kubernetes type `name`, e.g. `io.k8s.api.core.v1.Volume`."""
    schema: dict[str, Any] = json.loads(_embedded(name, version))
    return schema
