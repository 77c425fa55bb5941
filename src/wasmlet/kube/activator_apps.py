"""What the activator needs of a SpinApp to run it as its pods would: the image, the
variables (values, or read from the Secrets and ConfigMaps they name), the runtime config
(generated from `spec.runtimeConfig` exactly as the operator generates the pods' one, or the
user's `loadFromSecret`), the memory limit. Reading the cluster is the caller's (`Lookup`);
the rest is pure.

An app the activator cannot run as its pods would is refused with the reason: variables from
a pod field (`fieldRef`, `resourceFieldRef`: there is no pod), volumes (the pods' files are not
the activator's), `components` (selective deployment, which `wasmlet up` does not do either).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .models import SpinApp, SpinAppSpec
from .quantity import parse_bytes
from .rtconfig import RUNTIME_CONFIG_KEY, ValueRef, references, render

VARIABLE_ENV_PREFIX = "SPIN_VARIABLE_"

# (kind "Secret" | "ConfigMap", namespace, name) -> the object, or None when it is missing
Lookup = Callable[[str, str, str], Awaitable[Mapping[str, Any] | None]]


class NotActivatable(ValueError):
    """The activator cannot run this app as its pods would (the message says why)."""


@dataclass(frozen=True)
class AppConfig:
    """One SpinApp as the activator runs it."""

    namespace: str
    name: str
    image: str
    variables: dict[str, str] = field(default_factory=dict)
    runtime_config: str = ""  # runtime-config.toml ("" = none)
    max_instance_memory: int | None = None

    @property
    def key(self) -> str:
        """How the activator names it: `<name>.<namespace>` (what its Service's Host says)."""
        return f"{self.name}.{self.namespace}"

    def fingerprint(self) -> str:
        """Changes exactly when what the app runs with changes."""
        text = json.dumps(
            [self.image, sorted(self.variables.items()), self.runtime_config,
             self.max_instance_memory]
        )  # fmt: skip
        return hashlib.sha256(text.encode()).hexdigest()


def _value(obj: Mapping[str, Any] | None, kind: str, key: str) -> str | None:
    if obj is None:
        return None
    if kind == "Secret":
        raw = (obj.get("data") or {}).get(key)
        return base64.b64decode(raw).decode() if raw is not None else None
    value = (obj.get("data") or {}).get(key)
    return str(value) if value is not None else None


async def _read(lookup: Lookup, namespace: str, ref: ValueRef) -> str | None:
    value = _value(await lookup(ref.kind, namespace, ref.name), ref.kind, ref.key)
    if value is None and not ref.optional:
        raise NotActivatable(f"{ref} is missing")
    return value


_SELECTORS = (("Secret", "secretKeyRef"), ("ConfigMap", "configMapKeyRef"))


def _ref(source: Mapping[str, Any], what: str) -> ValueRef:
    for kind, selector_key in _SELECTORS:
        selector = source.get(selector_key)
        if selector is not None:
            return ValueRef(
                kind=kind,  # type: ignore[arg-type]  # (one of the two literals)
                name=str(selector.get("name", "")),
                key=str(selector.get("key", "")),
                optional=bool(selector.get("optional", False)),
            )
    raise NotActivatable(f"{what}: only values from a Secret or ConfigMap (no pod here)")


def unsupported(spec: SpinAppSpec) -> list[str]:
    """Why the activator cannot run an app with this spec as its pods would (pure; admission
    refuses these for an app that may have no pod)."""
    problems = []
    if spec.volume_mounts or spec.volumes:
        problems.append("spec.volumes: the pods' files are not the activator's")
    if spec.components:
        problems.append("spec.components: selective deployment is not supported")
    for i, var in enumerate(spec.variables or []):
        source = var.value_from
        if var.value is None and source is not None and not any(k in source for _, k in _SELECTORS):
            problems.append(
                f"spec.variables[{i}] ({var.name}).valueFrom: only a Secret or ConfigMap "
                "(there is no pod to read a field of)"
            )
    return problems


async def app_config(app: SpinApp, lookup: Lookup) -> AppConfig:
    """How to run `app` in the activator; raises NotActivatable."""
    spec = app.spec
    namespace = app.namespace
    problems = unsupported(spec)
    if problems:
        raise NotActivatable("; ".join(problems))
    variables: dict[str, str] = {}
    for var in spec.variables or []:
        if var.value is not None:
            variables[var.name] = var.value
        elif var.value_from is not None:
            value = await _read(lookup, namespace, _ref(var.value_from, f"variable {var.name}"))
            if value is not None:
                variables[var.name] = value
    for env in spec.env or []:  # SPIN_VARIABLE_X in the container env sets variable x
        name = str(env.get("name", ""))
        if name.startswith(VARIABLE_ENV_PREFIX) and env.get("value") is not None:
            variables[name.removeprefix(VARIABLE_ENV_PREFIX).lower()] = str(env["value"])
    config = spec.runtime_config
    if config is not None and config.load_from_secret:
        ref = ValueRef("Secret", config.load_from_secret, RUNTIME_CONFIG_KEY)
        toml = await _read(lookup, namespace, ref) or ""
    else:
        resolved = {}
        for ref in references(config):
            value = await _read(lookup, namespace, ref)
            if value is not None:
                resolved[ref] = value
        toml = render(config, resolved) if config is not None else ""
    memory = (spec.invocation_limits or {}).get("memory")
    try:
        limit = parse_bytes(memory) if memory is not None else None
    except ValueError as e:
        raise NotActivatable(f"invocationLimits.memory: {e}") from None
    return AppConfig(namespace, app.name, spec.image, variables, toml, limit)
