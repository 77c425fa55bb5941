"""Version 1 manifests (`spin_manifest_version = "1"`) and their conversion to version 2.

Spin (`schema/v1.rs`, `compat.rs`): one application-wide trigger type, `[[component]]` arrays
with `id`, a per-component `trigger` table and `config` (the component variables). Conversion
names each trigger `trigger-<component id>` and, when a component has no
`allowed_outbound_hosts`, grants what version 1 allowed by default: any Redis, MySQL and
PostgreSQL host, plus the converted `allowed_http_hosts`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from ..errors import ManifestError
from ._checks import (
    HttpHost,
    Label,
    OutboundHost,
    TemplateStr,
    VariableName,
    convert_allowed_http_hosts,
    id_error,
)
from ._schema import (
    BuildConfig,
    ComponentSource,
    FilesMount,
    Model,
    Variable,
)
from ._templates import quote


class AppTriggerV1(Model):
    model_config = ConfigDict(extra="allow", strict=True)

    type: str


class ComponentV1(Model):
    id: str
    source: ComponentSource
    description: str = ""
    config: dict[VariableName, TemplateStr] = Field(default_factory=dict)
    environment: dict[str, str] = Field(default_factory=dict)
    files: list[FilesMount] = Field(default_factory=list)
    exclude_files: list[str] = Field(default_factory=list)
    allowed_http_hosts: list[HttpHost] = Field(default_factory=list)
    allowed_outbound_hosts: list[OutboundHost] | None = None
    key_value_stores: list[Label] = Field(default_factory=list)
    sqlite_databases: list[Label] = Field(default_factory=list)
    ai_models: list[str] = Field(default_factory=list)
    build: BuildConfig | None = None
    trigger: dict[str, Any]


class AppManifestV1(Model):
    spin_manifest_version: Literal["1"]
    name: str
    version: str = ""
    description: str = ""
    authors: list[str] = Field(default_factory=list)
    trigger: AppTriggerV1
    variables: dict[VariableName, Variable] = Field(default_factory=dict)
    components: list[ComponentV1] = Field(default_factory=list, alias="component")


# Fields copied unchanged from a version 1 component to its version 2 table.
_SAME_FIELDS = (
    "source",
    "description",
    "environment",
    "files",
    "exclude_files",
    "key_value_stores",
    "sqlite_databases",
    "ai_models",
    "build",
)


def convert_v1(manifest: AppManifestV1, file: str) -> tuple[dict[str, Any], dict[str, str]]:
    """A version 2 manifest table equivalent to `manifest`, and the key paths (for errors)
    of its components and triggers in the version 1 file."""
    trigger_type = manifest.trigger.type
    components: dict[str, Any] = {}
    triggers: list[dict[str, Any]] = []
    paths: dict[str, str] = {}
    for i, component in enumerate(manifest.components):
        component_id = _component_id(component.id, f"component[{i}].id", file)
        if component_id in components:
            raise ManifestError(
                file, f"component[{i}].id", f"duplicate component id {quote(component_id)}"
            )
        components[component_id] = _convert_component(component)
        triggers.append(
            {"id": f"trigger-{component_id}", "component": component_id, **component.trigger}
        )
        paths[f"component:{component_id}"] = f"component[{i}]"
        paths[f"trigger:{trigger_type}[{i}]"] = f"component[{i}].trigger"
    application = {
        "name": manifest.name,
        "version": manifest.version,
        "description": manifest.description,
        "authors": manifest.authors,
        "trigger": {trigger_type: _app_trigger_config(manifest.trigger)},
    }
    v2 = {
        "spin_manifest_version": 2,
        "application": application,
        "variables": {k: v.model_dump(exclude_unset=True) for k, v in manifest.variables.items()},
        "trigger": {trigger_type: triggers},
        "component": components,
    }
    return v2, paths


def v1_error_location(loc: tuple[str | int, ...], v2: dict[str, Any]) -> tuple[str | int, ...]:
    """Map the location of an error in the converted table back to the version 1 file."""
    if loc[:1] == ("trigger",) and len(loc) >= 3:
        return ("component", loc[2], "trigger", *loc[3:])
    if loc[:1] == ("component",) and len(loc) >= 2:
        index = list(v2.get("component", {})).index(loc[1])
        rest = loc[2:]
        if rest[:1] == ("variables",):
            rest = ("config", *rest[1:])
        return ("component", index, *rest)
    if loc[:2] == ("application", "trigger"):
        return ("trigger", *loc[3:])
    return loc


def _component_id(raw: str, path: str, file: str) -> str:
    """Spin's fix-up of version 1 ids: `under_scores` and `mixedCase` become kebab-case."""
    if id_error(raw, "-", lower=False) is None:
        return raw
    fixed = raw.replace("_", "-").lower()
    reason = id_error(fixed, "-", lower=False)
    if reason:
        raise ManifestError(file, path, f"invalid component id {quote(raw)}: {reason}")
    return fixed


def _convert_component(component: ComponentV1) -> dict[str, Any]:
    table = component.model_dump(include=set(_SAME_FIELDS), exclude_unset=True, exclude_none=True)
    if component.config:
        table["variables"] = dict(component.config)
    default_network = component.allowed_outbound_hosts is None
    hosts = list(component.allowed_outbound_hosts or [])
    hosts += convert_allowed_http_hosts(component.allowed_http_hosts, default_network)
    if hosts:
        table["allowed_outbound_hosts"] = hosts
    return table


def _app_trigger_config(trigger: AppTriggerV1) -> dict[str, Any]:
    config = dict(trigger.model_extra or {})
    if config.get("base") == "/":
        del config["base"]  # the version 1 default: nothing to warn about
    return config
