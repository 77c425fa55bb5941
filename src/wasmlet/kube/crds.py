"""The SpinApp and SpinAppExecutor CRDs, generated from the typed models.

`python -m wasmlet.kube.crds DIR` (or `wasmlet kube crds`) writes them; the copies committed
under `deploy/crds/` are checked against this generator by the tests.
"""

from __future__ import annotations

import sys
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from pydantic import BaseModel

from . import GROUP, VERSION
from .k8s_schema import embedded
from .models import SpinAppExecutorSpec, SpinAppExecutorStatus, SpinAppSpec, SpinAppStatus

_KEEP = {
    "type",
    "properties",
    "items",
    "required",
    "enum",
    "format",
    "description",
    "additionalProperties",
    "minimum",
    "maximum",
    "minItems",
    "pattern",
    "default",
    "x-kubernetes-int-or-string",
    "x-kubernetes-preserve-unknown-fields",
}


def _structural(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Pydantic's JSON schema -> a CRD structural schema."""
    if "$ref" in schema:
        target = defs[schema["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        return _structural(merged, defs)
    if "x-wasmlet-k8s-type" in schema:
        kube_schema = embedded(schema["x-wasmlet-k8s-type"])
        if "description" in schema:
            kube_schema["description"] = schema["description"]
        return kube_schema
    if "anyOf" in schema:  # Optional[X]: drop the null branch
        branches = [b for b in schema["anyOf"] if b.get("type") != "null"]
        if len(branches) != 1:
            raise ValueError(f"cannot express {schema} in a structural schema")
        rest = {k: v for k, v in schema.items() if k != "anyOf"}
        return _structural({**branches[0], **rest}, defs)
    if "const" in schema:
        schema = {**schema, "enum": [schema["const"]], "type": "string"}
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key not in _KEEP:
            continue
        if key == "properties":
            out[key] = {k: _structural(v, defs) for k, v in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = _structural(value, defs)
        elif key == "default" and (value is None or isinstance(value, list | dict)):
            continue
        else:
            out[key] = value
    if out.get("type") == "object" and "properties" in out and "additionalProperties" in out:
        del out["additionalProperties"]
    return out


def model_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The structural schema of one model (spec or status)."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return _structural(raw, raw.get("$defs", {}))


def _root(kind: str, spec: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    return {
        "description": f"{kind} is the Schema for the {kind.lower()}s API",
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    }


def _crd(kind: str, schema: dict[str, Any], version_extra: dict[str, Any]) -> dict[str, Any]:
    plural = f"{kind.lower()}s"
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "wasmlet"},
        },
        "spec": {
            "group": GROUP,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                    **version_extra,
                }
            ],
        },
    }


@cache
def _spinapp_crd() -> dict[str, Any]:
    spec = model_schema(SpinAppSpec)
    spec["required"] = ["executor", "image"]  # SpinKube's: the webhook defaults `executor`
    status = model_schema(SpinAppStatus)
    status["required"] = ["readyReplicas"]
    return _crd(
        "SpinApp",
        _root("SpinApp", spec, status),
        {
            "additionalPrinterColumns": [
                {"jsonPath": ".status.readyReplicas", "name": "Ready", "type": "integer"},
                {"jsonPath": ".spec.replicas", "name": "Desired", "type": "integer"},
                {"jsonPath": ".spec.executor", "name": "Executor", "type": "string"},
                # wasmlet (autoscaler type wasmlet), in `kubectl get -o wide`
                {
                    "jsonPath": ".status.servedBy",
                    "name": "Served-By",
                    "type": "string",
                    "priority": 1,
                },
            ],
            "subresources": {
                "status": {},
                "scale": {
                    "specReplicasPath": ".spec.replicas",
                    "statusReplicasPath": ".status.replicas",
                    "labelSelectorPath": ".status.selector",
                },
            },
        },
    )


@cache
def _executor_crd() -> dict[str, Any]:
    spec = model_schema(SpinAppExecutorSpec)
    status = model_schema(SpinAppExecutorStatus)
    status.pop("properties", None)
    return _crd(
        "SpinAppExecutor",
        _root("SpinAppExecutor", spec, status),
        {"subresources": {"status": {}}},
    )


def crds() -> list[dict[str, Any]]:
    """Both CRDs, SpinApp first."""
    import copy

    return [copy.deepcopy(_spinapp_crd()), copy.deepcopy(_executor_crd())]


def crd_yaml(crd: dict[str, Any]) -> str:
    return "---\n" + yaml.safe_dump(crd, sort_keys=False, width=100)


def write(directory: Path) -> list[Path]:
    """Write each CRD as `<group>_<plural>.yaml` (the files under deploy/crds/)."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for crd in crds():
        path = directory / f"{GROUP}_{crd['spec']['names']['plural']}.yaml"
        path.write_text(crd_yaml(crd))
        written.append(path)
    return written


# -- validating custom resources ----------------------------------------------------------


def _strict(schema: dict[str, Any]) -> dict[str, Any]:
    """Reject unknown fields, as the API server's strict field validation does."""
    out = dict(schema)
    if "properties" in out:
        out["properties"] = {k: _strict(v) for k, v in out["properties"].items()}
        if not out.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    for key in ("items", "additionalProperties"):
        if isinstance(out.get(key), dict):
            out[key] = _strict(out[key])
    if out.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
    return out


@cache
def _validators() -> dict[str, jsonschema.protocols.Validator]:
    found = {}
    for crd in crds():
        schema = _strict(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
        found[crd["spec"]["names"]["kind"]] = cls(schema)
    return found


def validate_custom_resource(obj: dict[str, Any]) -> None:
    """Validate a SpinApp / SpinAppExecutor against our CRD schema; raise ValueError."""
    if obj.get("apiVersion") != f"{GROUP}/{VERSION}":
        raise ValueError(f"apiVersion must be {GROUP}/{VERSION}, not {obj.get('apiVersion')!r}")
    validator = _validators().get(obj.get("kind", ""))
    if validator is None:
        raise ValueError(f"unknown kind {obj.get('kind')!r}")
    error = jsonschema.exceptions.best_match(validator.iter_errors(obj))
    if error is not None:
        where = ".".join(str(p) for p in error.absolute_path) or "(root)"
        raise ValueError(f"{obj['kind']} {where}: {error.message}")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        sys.stdout.write("".join(crd_yaml(c) for c in crds()))
        return 0
    for path in write(Path(args[0])):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
