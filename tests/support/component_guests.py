"""Test helpers for the wasi:http test components built by guests/build_components.py.

    from support.component_guests import component, write_component_app, python_app

`component(name)` returns the path of a built component: the committed ones
(tests/fixtures/components/) directly, the large ones (`python-app`, `js-app`) from the cache in
guests/build/components/, building them first when they are missing or stale. A missing
toolchain skips the test, or fails it under CI=true.

`write_component_app` / `write_manifest` write a spin.toml whose component sources are absolute
paths to such components (the cached ones cannot be referenced relatively from a fixture).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import sys
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import pytest

from .env import IN_CI, ROOT

BUILD_SCRIPT = ROOT / "guests" / "build_components.py"


def _load_build_script() -> ModuleType:
    name = "guests_build_components"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BUILD_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


build_components = _load_build_script()


def missing(message: str) -> None:
    """Skip the test, or fail it under CI=true, where every toolchain must be installed."""
    if IN_CI:
        pytest.fail(f"{message} — required under CI=true")
    pytest.skip(message)


def require_toolchain(kind: str) -> None:
    """Skip (or, under CI=true, fail) unless the toolchain for `kind` (wat/python/js) works."""
    problem = build_components.toolchain_problem(kind)
    if problem is not None:
        missing(f"{problem} (install: {build_components.INSTALL_HINTS[kind]})")


@functools.cache
def component(name: str) -> Path:
    """The built component `name` (a target of guests/build_components.py)."""
    target = build_components.target(name)
    if target.committed and target.output.is_file():
        return Path(target.output)
    require_toolchain(target.kind)
    try:
        output, _ = build_components.ensure_built(target)
    except build_components.BuildError as exc:
        pytest.fail(f"building component {name} failed: {exc}")
    return Path(output)


def _toml(value: object) -> str:
    """A TOML value for a string, bool, int, list or table of those (JSON strings are TOML)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | str):
        return json.dumps(value)
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, Sequence):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


@dataclass
class ComponentSpec:
    """One `[component.<id>]` with its `[[trigger.http]]`, for `write_manifest`."""

    source: str | Path
    """A component name (`component(name)` builds it) or a path to a `.wasm` file."""
    id: str = "app"
    route: str = "/..."
    key_value_stores: Sequence[str] = ()
    allowed_outbound_hosts: Sequence[str] = ()
    variables: Mapping[str, str] = field(default_factory=dict)
    """Component variables (`variables = {name = "template"}`)."""
    environment: Mapping[str, str] = field(default_factory=dict)
    files: Sequence[str | Mapping[str, str]] = ()
    extra: str = ""
    """Extra TOML lines for the component table, verbatim."""

    def source_path(self) -> Path:
        if isinstance(self.source, Path) or self.source.endswith(".wasm"):
            return Path(self.source).resolve()
        return component(self.source)


def manifest_text(
    components: Sequence[ComponentSpec],
    *,
    name: str = "component-app",
    variables: Mapping[str, Mapping[str, str | bool]] | None = None,
) -> str:
    """A spin.toml (manifest version 2) for `components`; `variables` is `[variables]`."""
    lines = ["spin_manifest_version = 2", "", "[application]", f"name = {_toml(name)}", ""]
    if variables:
        lines.append("[variables]")
        lines += [f"{key} = {_toml(dict(spec))}" for key, spec in variables.items()]
        lines.append("")
    for spec in components:
        lines += [
            "[[trigger.http]]",
            f"route = {_toml(spec.route)}",
            f"component = {_toml(spec.id)}",
            "",
            f"[component.{spec.id}]",
            f"source = {_toml(str(spec.source_path()))}",
        ]
        optional: dict[str, object] = {
            "key_value_stores": list(spec.key_value_stores),
            "allowed_outbound_hosts": list(spec.allowed_outbound_hosts),
            "variables": dict(spec.variables),
            "environment": dict(spec.environment),
            "files": list(spec.files),
        }
        lines += [f"{key} = {_toml(value)}" for key, value in optional.items() if value]
        if spec.extra:
            lines.append(textwrap.dedent(spec.extra).strip())
        lines.append("")
    return "\n".join(lines)


def write_manifest(
    directory: Path,
    components: Sequence[ComponentSpec],
    *,
    name: str = "component-app",
    variables: Mapping[str, Mapping[str, str | bool]] | None = None,
    files: Mapping[str, str | bytes] | None = None,
) -> Path:
    """Write `directory`/spin.toml for `components` plus extra `files`; returns `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "spin.toml").write_text(manifest_text(components, name=name, variables=variables))
    for relative, content in (files or {}).items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return directory


def write_component_app(
    directory: Path,
    source: str | Path,
    *,
    route: str = "/...",
    variables: Mapping[str, Mapping[str, str | bool]] | None = None,
    files: Mapping[str, str | bytes] | None = None,
    **component_fields: object,
) -> Path:
    """An app with one component (`source`: a component name or a path) at `route`.

    `component_fields` are `ComponentSpec` fields: `key_value_stores`, `allowed_outbound_hosts`,
    `variables` for the component is spelled `component_variables` here, `environment`, ...
    """
    fields_ = dict(component_fields)
    if "component_variables" in fields_:
        fields_["variables"] = fields_.pop("component_variables")
    spec = ComponentSpec(source=source, route=route, **fields_)  # type: ignore[arg-type]
    return write_manifest(directory, [spec], variables=variables, files=files)


def python_app(
    directory: Path,
    *,
    key_value_stores: Sequence[str] = ("default",),
    allowed_outbound_hosts: Sequence[str] = (),
    variables: Mapping[str, Mapping[str, str | bool]] | None = None,
    component_variables: Mapping[str, str] | None = None,
    **component_fields: object,
) -> Path:
    """The spin-sdk Python app (guests/components/python/app.py) at `/...`, id `app`.

    By default it may use the `default` key-value store and nothing else (so `/kv-denied`,
    which opens `forbidden`, gets access-denied) and no outbound hosts.
    """
    return write_component_app(
        directory,
        "python-app",
        key_value_stores=key_value_stores,
        allowed_outbound_hosts=allowed_outbound_hosts,
        variables=variables,
        component_variables=dict(component_variables or {}),
        **component_fields,
    )


def js_app(directory: Path, **component_fields: object) -> Path:
    """The jco JavaScript app (guests/components/js/app.js) at `/...`, id `app`."""
    return write_component_app(directory, "js-app", **component_fields)
