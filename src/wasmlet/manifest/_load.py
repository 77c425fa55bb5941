"""Reading `spin.toml`: TOML, version detection, validation, normalisation, cross-checks.

Every problem becomes a `ManifestError(file, key_path, message)`, e.g.
`spin.toml: trigger.http[0].component: trigger "hello-http-trigger" refers to unknown component
"helo"`. Pydantic errors are translated to that form (see `_describe_error`).
"""

from __future__ import annotations

import logging
import re
import tomllib
from collections.abc import Callable, Iterable
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from ..errors import ManifestError
from ._checks import (
    ERROR_TYPE,
    SHAPE_ERROR_TYPE,
    is_kebab_id,
)
from ._schema import (
    AnyTrigger,
    AppComponentDependency,
    AppManifest,
    Component,
    LocalDependency,
    PackageDependency,
    Trigger,
)
from ._templates import parse_template, quote, unknown_variables
from ._v1 import AppManifestV1, convert_v1, v1_error_location

log = logging.getLogger("wasmlet.manifest")

MANIFEST_FILE = "spin.toml"

M = TypeVar("M", bound=BaseModel)
Loc = tuple[str | int, ...]


# -- entry points -----------------------------------------------------------------------------


def manifest_file(path: Path) -> Path:
    """The manifest file `path` names: itself, or `spin.toml` inside it if it is a directory."""
    return path / MANIFEST_FILE if path.is_dir() else path


def load_manifest(path: Path) -> AppManifest:
    """Read, validate and normalise the manifest at `path` (a file or a directory)."""
    file = manifest_file(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(str(file), "", "file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ManifestError(str(file), "", f"cannot read: {e}") from None
    return parse_manifest(text, str(file))


def parse_manifest(text: str, file: str = MANIFEST_FILE) -> AppManifest:
    """Parse manifest text; `file` is the name error messages give it."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ManifestError(file, "", f"invalid TOML: {e}") from None
    if _manifest_version(data, file) == 1:
        manifest = _load_v1(data, file)
    else:
        manifest = validate_model(AppManifest, data, file)
    _normalize(manifest)
    _check(manifest, file)
    return manifest


def _manifest_version(data: dict[str, Any], file: str) -> int:
    if "spin_version" in data:
        if "spin_manifest_version" in data:
            raise ManifestError(file, "spin_version", "not allowed with spin_manifest_version")
        data["spin_manifest_version"] = data.pop("spin_version")
    if "spin_manifest_version" not in data:
        raise ManifestError(
            file, "spin_manifest_version", "missing (add `spin_manifest_version = 2` at the top)"
        )
    version = data["spin_manifest_version"]
    if version == 2 and type(version) is int:
        return 2
    if version == "1":
        return 1
    raise ManifestError(
        file,
        "spin_manifest_version",
        f'unsupported manifest version {describe_value(version)}: expected 2 (or "1")',
    )


def _load_v1(data: dict[str, Any], file: str) -> AppManifest:
    v1 = validate_model(AppManifestV1, data, file)
    v2, paths = convert_v1(v1, file)
    manifest = validate_model(AppManifest, v2, file, lambda loc: v1_error_location(loc, v2))
    manifest.set_origin(paths, source_version=1)
    return manifest


# -- pydantic errors → ManifestError ------------------------------------------------------------


def validate_model(
    model: type[M], data: Any, file: str, relocate: Callable[[Loc], Loc] | None = None
) -> M:
    """`model.model_validate(data)`, reporting the first problem as a `ManifestError`."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        errors = e.errors(include_url=False)
        # A misspelt key shows up as both "missing" and "unknown": the unknown one says more.
        error = next((x for x in errors if x["type"] == "extra_forbidden"), errors[0])
        loc = tuple(error["loc"])
        if relocate is not None:
            loc = relocate(loc)
        raise ManifestError(file, key_path(loc), _describe_error(error)) from None


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def key_path(loc: Iterable[str | int]) -> str:
    """A dotted TOML key path: `component.hello.files[0]`, `dependencies."a:b"`."""
    parts = list(loc)
    if parts and parts[-1] == "[key]":  # a dict key failed validation: point at the key
        parts.pop()
    path = ""
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not (part.startswith("<") and part.endswith(">")):  # union member tags
            path = join_key(path, part)
    return path


def join_key(path: str, key: str) -> str:
    """Append one key to a key path, quoting it unless it is a bare TOML key."""
    key = key if _BARE_KEY.fullmatch(key) else quote(key)
    return f"{path}.{key}" if path else key


_EXPECTED = {
    "string_type": "a string",
    "int_type": "an integer",
    "bool_type": "a boolean",
    "float_type": "a number",
    "list_type": "an array",
    "dict_type": "a table",
    "model_type": "a table",
    "model_attributes_type": "a table",
}


def _describe_error(error: ErrorDetails) -> str:
    kind = error["type"]
    value = error.get("input")
    if kind == "missing":
        return "missing required field"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == ERROR_TYPE:
        return error["msg"]
    if kind == SHAPE_ERROR_TYPE:
        return f"{error['msg']}, got {describe_value(value)}"
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {describe_value(value)}"
    if kind == "literal_error":
        expected = str((error.get("ctx") or {}).get("expected", "")).replace("'", '"')
        return f"expected {expected}, got {describe_value(value)}"
    return f"{error['msg']}, got {describe_value(value)}"


def describe_value(value: Any) -> str:
    """A TOML value as an error message shows it: strings quoted, tables and arrays named."""
    if isinstance(value, str):
        return quote(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, datetime | date | time):
        return f"the date/time {value.isoformat()}"
    return repr(value)


# -- normalisation (Spin's `normalize.rs`) -------------------------------------------------------


def _normalize(manifest: AppManifest) -> None:
    """Give every trigger an id and move inline components into `components`."""
    _assign_trigger_ids(manifest)
    for trigger_type, triggers in manifest.triggers.by_type().items():
        for index, trigger in enumerate(triggers):
            _extract_inline_components(
                manifest, trigger, manifest.trigger_path(trigger_type, index)
            )


def _assign_trigger_ids(manifest: AppManifest) -> None:
    taken = {t.id for _, t in manifest.all_triggers() if t.id}
    for trigger_type, triggers in manifest.triggers.by_type().items():
        counter = 1
        for trigger in triggers:
            if trigger.id:
                continue
            natural = f"{trigger.component}-{trigger_type}-trigger"
            if isinstance(trigger.component, str) and natural not in taken:
                trigger.id = natural
            else:
                while f"{trigger_type}-trigger{counter}" in taken:
                    counter += 1
                trigger.id = f"{trigger_type}-trigger{counter}"
            taken.add(trigger.id)


def _extract_inline_components(manifest: AppManifest, trigger: AnyTrigger, path: str) -> None:
    slots = _component_slots(trigger)
    counter = 1
    for key, get, put in slots:
        component = get()
        if not isinstance(component, Component):
            continue
        component_id = f"{trigger.id}-component"
        if len(slots) > 1 or not is_kebab_id(component_id) or component_id in manifest.components:
            while f"inline-component{counter}" in manifest.components:
                counter += 1
            component_id = f"inline-component{counter}"
        manifest.add_component(component_id, component, f"{path}.{key}")
        put(component_id)


Slot = tuple[str, Callable[[], Any], Callable[[str], None]]


def _component_slots(trigger: AnyTrigger) -> list[Slot]:
    """Every place a trigger names a component: (key path, getter, setter)."""
    slots: list[Slot] = []
    if trigger.component is not None:
        slots.append(
            ("component", lambda: trigger.component, lambda v: setattr(trigger, "component", v))
        )
    if isinstance(trigger, Trigger):
        for key, specs in trigger.components.items():
            if isinstance(specs, list):
                path = join_key("components", key)
                slots += [_list_slot(f"{path}[{i}]", specs, i) for i in range(len(specs))]
            else:
                slots.append(_dict_slot(join_key("components", key), trigger.components, key))
    return slots


def _list_slot(path: str, items: list[Any], index: int) -> Slot:
    return path, lambda: items[index], lambda v: items.__setitem__(index, v)


def _dict_slot(path: str, table: dict[str, Any], key: str) -> Slot:
    return path, lambda: table[key], lambda v: table.__setitem__(key, v)


# -- cross-checks ------------------------------------------------------------------------------


def _check(manifest: AppManifest, file: str) -> None:
    _check_base(manifest, file)
    _check_triggers(manifest, file)
    for component_id, component in manifest.components.items():
        _check_component(manifest, component_id, component, file)


def _check_base(manifest: AppManifest, file: str) -> None:
    http = manifest.application.trigger.get("http", {})
    if "base" not in http:
        return
    path = join_key(manifest.app_trigger_path("http"), "base")
    if http["base"] != "/":
        raise ManifestError(
            file,
            path,
            f"unsupported base {describe_value(http['base'])}: `base` is deprecated and only "
            '"/" is accepted; put the prefix in each route instead',
        )
    log.warning("%s: %s: `base` is deprecated and has no effect; remove it", file, path)


def _check_triggers(manifest: AppManifest, file: str) -> None:
    seen: set[str] = set()
    for trigger_type, triggers in manifest.triggers.by_type().items():
        for index, trigger in enumerate(triggers):
            path = manifest.trigger_path(trigger_type, index)
            if trigger.id in seen:
                raise ManifestError(file, f"{path}.id", f"duplicate trigger id {quote(trigger.id)}")
            seen.add(trigger.id)
            for key, get, _ in _component_slots(trigger):
                ref = get()
                if isinstance(ref, str) and ref not in manifest.components:
                    raise ManifestError(
                        file,
                        f"{path}.{key}",
                        f"trigger {quote(trigger.id)} refers to unknown component {quote(ref)}",
                    )


def _check_component(
    manifest: AppManifest, component_id: str, component: Component, file: str
) -> None:
    known = manifest.variables.keys()
    variables_path = manifest.component_path(component_id, "variables")
    for name, text in component.variables.items():
        for unknown in unknown_variables(parse_template(text), known):
            raise ManifestError(
                file,
                join_key(variables_path, name),
                f"unknown application variable {quote(unknown)}",
            )
    hosts_path = manifest.component_path(component_id, "allowed_outbound_hosts")
    for index, host in enumerate(component.allowed_outbound_hosts):
        for unknown in unknown_variables(parse_template(host), known):
            raise ManifestError(
                file, f"{hosts_path}[{index}]", f"unknown application variable {quote(unknown)}"
            )
    if component.allowed_http_hosts:
        converted = component.normalized_allowed_outbound_hosts()
        log.warning(
            "%s: %s: `allowed_http_hosts` is deprecated; use `allowed_outbound_hosts = %s`",
            file,
            manifest.component_path(component_id, "allowed_http_hosts"),
            converted,
        )
    _check_dependencies(manifest, component_id, component, file)


def _check_dependencies(
    manifest: AppManifest, component_id: str, component: Component, file: str
) -> None:
    deps_path = manifest.component_path(component_id, "dependencies")
    for name, dependency in component.dependencies.items():
        path = join_key(deps_path, name)
        plain = ":" not in name and "/" not in name
        no_package = isinstance(dependency, str) or (
            isinstance(dependency, PackageDependency) and dependency.package is None
        )
        if plain and no_package:
            raise ManifestError(file, path, f"dependency {quote(name)} must specify a `package`")
        exported = isinstance(dependency, PackageDependency | LocalDependency) and dependency.export
        if not plain and "/" not in name.split("@")[0] and exported:
            raise ManifestError(
                file,
                f"{path}.export",
                f"an export cannot satisfy the package dependency {quote(name)}; "
                "name an interface (package/interface) instead",
            )
        if isinstance(dependency, AppComponentDependency):
            _check_component_dependency(manifest, dependency.component, f"{path}.component", file)


# Component fields a component used as a dependency must leave empty (Spin's "surprises").
_DEPENDENCY_FORBIDDEN = (
    "ai_models",
    "allowed_http_hosts",
    "allowed_outbound_hosts",
    "dependencies",
    "files",
    "key_value_stores",
    "sqlite_databases",
    "variables",
)


def _check_component_dependency(manifest: AppManifest, ref: str, path: str, file: str) -> None:
    target = manifest.components.get(ref)
    if target is None:
        raise ManifestError(file, path, f"unknown component {quote(ref)}")
    surprises = [field for field in _DEPENDENCY_FORBIDDEN if getattr(target, field)]
    if surprises:
        raise ManifestError(
            file,
            path,
            f"component {quote(ref)} cannot be used as a dependency because it specifies "
            f"{', '.join(surprises)}; dependencies may not have resources or permissions",
        )
