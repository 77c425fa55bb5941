"""Tests of `wasmlet.manifest`: parsing, validation errors, v1 conversion, normalisation."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wasmlet.errors import ManifestError
from wasmlet.manifest import (
    AppComponentDependency,
    AppManifest,
    Component,
    FilePlacement,
    HttpDependency,
    HttpExecutor,
    LocalDependency,
    PackageDependency,
    PrivateRoute,
    RegistrySource,
    RemoteSource,
    StaticResponse,
    TemplateError,
    Trigger,
    convert_allowed_http_hosts,
    load_manifest,
    parse_allowed_host,
    parse_manifest,
    parse_template,
    unknown_variables,
)
from wasmlet.outbound import OutboundPolicy

DIGEST = "sha256:" + "ab" * 32

# -- a tiny TOML writer, so cases can be written as Python data -----------------------------------

_BARE = re.compile(r"[A-Za-z0-9_-]+")


def _key(key: str) -> str:
    return key if _BARE.fullmatch(key) else json.dumps(key, ensure_ascii=False)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def to_toml(data: dict[str, Any]) -> str:
    return "".join(f"{_key(k)} = {_value(v)}\n" for k, v in data.items())


def base_manifest() -> dict[str, Any]:
    return {
        "spin_manifest_version": 2,
        "application": {"name": "app"},
        "variables": {"greeting": {"default": "hi"}, "api_key": {"required": True}},
        "trigger": {"http": [{"route": "/...", "component": "hello"}]},
        "component": {"hello": {"source": "hello.wasm"}},
    }


def parse(data: dict[str, Any]) -> AppManifest:
    return parse_manifest(to_toml(data))


def error_of(data: dict[str, Any]) -> ManifestError:
    with pytest.raises(ManifestError) as info:
        parse(data)
    return info.value


def with_changes(*changes: tuple[str, Any]) -> dict[str, Any]:
    """The base manifest with `path = value` changes (`a.b[0].c` paths; None deletes)."""
    data = base_manifest()
    for path, value in changes:
        parts = [p for p in re.split(r"\.|\[(\d+)\]", path) if p]
        node: Any = data
        for part in parts[:-1]:
            node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
        last = parts[-1]
        if value is None:
            del node[int(last) if last.isdigit() else last]
        elif last.isdigit() and int(last) == len(node):
            node.append(value)
        elif last.isdigit():
            node[int(last)] = value
        else:
            node[last] = value
    return data


# -- valid manifests ------------------------------------------------------------------------------


def test_minimal_manifest_parses() -> None:
    manifest = parse(base_manifest())
    assert manifest.name == "app"
    assert list(manifest.components) == ["hello"]
    (trigger,) = manifest.triggers.http
    assert trigger.id == "hello-http-trigger"
    assert trigger.route == "/..."
    assert trigger.component == "hello"
    assert manifest.variables["api_key"].required
    assert manifest.variables["greeting"].default == "hi"


MAXIMAL = f"""
spin_manifest_version = 2

[application]
name = "maximal"
version = "9999.9.9"
description = "All the features, all the time"
authors = ["alice@example.com", "bob@example.com"]
targets = ["spin-up:3.3", {{ registry = "ghcr.io/envs", id = "my-env:1" }}, {{ path = "env.toml" }}]

[application.trigger.http]
base = "/"

[application.trigger.redis]
address = "redis://localhost:6379"

[application.tool.lint]
lint_level = "savage"

[variables]
var_one = {{ description = "Described", default = "Default" }}
var_two = {{ required = true, secret = true }}

[[trigger.http]]
id = "main"
route = "/..."
component = "maximal-component"
executor = {{ type = "http" }}

[[trigger.http]]
route = "/wagi"
component = "minimal-component"
executor = {{ type = "wagi", argv = "${{SCRIPT_NAME}} ${{ARGS}}", entrypoint = "_start" }}

[[trigger.http]]
route = {{ private = true }}
component = "minimal-component"
executor = {{ type = "spin" }}

[[trigger.http]]
route = "/static"
static_response = {{ status_code = 201, headers = {{ x-a = "b" }}, body = "hello" }}

[[trigger.http]]
route = "/inline"
component = {{ source = "inline.wasm", allowed_outbound_hosts = ["https://{{{{ var_one }}}}"] }}

[[trigger.redis]]
channel = "messages"
component = "minimal-component"

[[trigger.fake]]
components.middleware = ["minimal-component", {{ source = "mw.wasm" }}]
components.main = "maximal-component"
option = true

[component.minimal-component]
source = "max-a.wasm"

[component.maximal-component]
source = {{ url = "http://example.test/max-b.wasm", digest = "{DIGEST}" }}
description = "My fine component"
environment = {{ VAR = "val" }}
variables = {{ one = "{{{{ var_one }}}}", two = "prefix-{{{{var_two}}}}-suffix", plain = "x" }}
files = ["pattern/*", {{ source = "placement", destination = "/" }}]
exclude_files = ["**/secret"]
allowed_outbound_hosts = [
    "https://example.com:443", "redis://*:*", "*://localhost:*", "http://*.example.com",
    "postgres://10.0.0.0/8", "mysql://[::1]:3306", "http://self", "tcp://host:1000..2000",
    "https://{{{{ var_one }}}}.example.com", "http://other.spin.internal",
]
allowed_http_hosts = ["example.org", "self"]
key_value_stores = ["default", "snake_case", "kebab-case"]
sqlite_databases = ["default", "analytics"]
ai_models = ["llama2-chat"]
targets = ["spin-up:3.3"]
dependencies_inherit_configuration = true

[component.maximal-component.build]
command = ["cargo build", "cargo test"]
workdir = "my-component"
watch = ["src/**/*.rs"]

[component.maximal-component.tool.clean]
command = "cargo clean"

[component.maximal-component.dependencies]
"a:b/c" = {{ registry = "my-registry.com", version = "^1.2.3", package = "a:b", export = "foo", \
inherit_configuration = true }}
"foo:bar/baz@0.1.0" = {{ path = "path/to/component.wasm", inherit_configuration = ["ai_models"] }}
"fib:fub/fob" = {{ url = "https://example.com/c.wasm", digest = "{DIGEST}", export = "my-export" }}
"fizz:buzz" = ">=0.1.0"
"abc:xyz@0.1.0" = {{ version = "=0.1.0" }}
"dep:dep/app" = {{ component = "minimal-component" }}
plain-name = {{ version = "1.0.0", package = "some:package" }}

[component.maximal-component.profile.debug]
source = "debug.wasm"
environment = {{ DEBUG = "1" }}
build = {{ command = "cargo build" }}

[component.registry-component]
source = {{ registry = "ttl.sh", package = "user:registrytest", version = "1.0.0" }}
"""


def test_every_v2_field_is_accepted() -> None:
    manifest = parse_manifest(MAXIMAL)
    app = manifest.application
    assert (app.version, app.description) == ("9999.9.9", "All the features, all the time")
    assert app.authors == ["alice@example.com", "bob@example.com"]
    assert app.trigger["redis"] == {"address": "redis://localhost:6379"}
    assert app.tool["lint"] == {"lint_level": "savage"}
    assert manifest.variables["var_two"].secret

    http = manifest.triggers.http
    assert [t.id for t in http] == [
        "main",
        "minimal-component-http-trigger",
        "http-trigger1",
        "http-trigger2",
        "http-trigger3",
    ]
    assert http[0].executor == HttpExecutor(type="http")
    assert http[1].executor is not None and http[1].executor.argv == "${SCRIPT_NAME} ${ARGS}"
    assert http[2].route == PrivateRoute(private=True)
    assert http[3].static_response == StaticResponse(
        status_code=201, headers={"x-a": "b"}, body="hello"
    )
    assert http[4].component == "http-trigger3-component"

    redis = manifest.triggers.model_extra["redis"]
    assert redis[0].component == "minimal-component"
    assert redis[0].model_extra == {"channel": "messages"}
    fake = manifest.triggers.model_extra["fake"][0]
    assert fake.components == {
        "middleware": ["minimal-component", "inline-component1"],
        "main": "maximal-component",
    }

    component = manifest.components["maximal-component"]
    assert component.source == RemoteSource(url="http://example.test/max-b.wasm", digest=DIGEST)
    assert component.files == ["pattern/*", FilePlacement(source="placement", destination="/")]
    assert component.build is not None
    assert component.build.commands() == ["cargo build", "cargo test"]
    assert component.tool == {"clean": {"command": "cargo clean"}}
    assert component.profile["debug"].source == "debug.wasm"
    deps = component.dependencies
    assert isinstance(deps["a:b/c"], PackageDependency)
    assert isinstance(deps["foo:bar/baz@0.1.0"], LocalDependency)
    assert isinstance(deps["fib:fub/fob"], HttpDependency)
    assert deps["fizz:buzz"] == ">=0.1.0"
    assert isinstance(deps["dep:dep/app"], AppComponentDependency)
    assert isinstance(manifest.components["registry-component"].source, RegistrySource)
    assert isinstance(manifest.components["http-trigger3-component"], Component)
    assert manifest.components["inline-component1"].source == "mw.wasm"
    assert manifest.component_path("http-trigger3-component") == "trigger.http[4].component"
    assert (
        manifest.component_path("inline-component1") == "trigger.fake[0].components.middleware[1]"
    )


def test_allowed_http_hosts_are_converted() -> None:
    manifest = parse_manifest(MAXIMAL)
    hosts = manifest.components["maximal-component"].normalized_allowed_outbound_hosts()
    assert hosts[-3:] == ["http://example.org", "https://example.org", "http://self"]


def test_load_manifest_from_directory_and_file(tmp_path: Path) -> None:
    (tmp_path / "spin.toml").write_text(to_toml(base_manifest()))
    assert load_manifest(tmp_path).name == "app"
    assert load_manifest(tmp_path / "spin.toml").name == "app"
    other = tmp_path / "other.toml"
    other.write_text(to_toml(base_manifest()))
    assert load_manifest(other).name == "app"


def test_missing_source_is_not_a_manifest_error(tmp_path: Path) -> None:
    (tmp_path / "spin.toml").write_text(to_toml(base_manifest()))
    assert load_manifest(tmp_path).components["hello"].source == "hello.wasm"


def test_error_names_file_as_given(tmp_path: Path) -> None:
    data = with_changes(("component.hello.colour", "red"))
    (tmp_path / "spin.toml").write_text(to_toml(data))
    with pytest.raises(ManifestError) as info:
        load_manifest(tmp_path)
    error = info.value
    assert error.file == str(tmp_path / "spin.toml")
    assert error.path == "component.hello.colour"
    assert str(error) == f"{tmp_path / 'spin.toml'}: component.hello.colour: unknown field"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="file not found") as info:
        load_manifest(tmp_path / "nope.toml")
    assert info.value.file == str(tmp_path / "nope.toml")


def test_toml_syntax_error_has_line() -> None:
    with pytest.raises(ManifestError) as info:
        parse_manifest('spin_manifest_version = 2\n[application]\nname = "a\n')
    assert info.value.path == ""
    assert "invalid TOML" in info.value.message
    assert "line 3" in info.value.message


def test_base_slash_warns(caplog: pytest.LogCaptureFixture) -> None:
    parse(with_changes(("application.trigger", {"http": {"base": "/"}})))
    assert "base" in caplog.text and "deprecated" in caplog.text


# -- malformed manifests --------------------------------------------------------------------------

# (changes to the base manifest, expected key path, fragments the message must contain)
MALFORMED: list[tuple[list[tuple[str, Any]], str, list[str]]] = [
    # unknown and missing fields
    ([("colour", "red")], "colour", ["unknown field"]),
    ([("application.colour", "red")], "application.colour", ["unknown field"]),
    ([("component.hello.colour", "red")], "component.hello.colour", ["unknown field"]),
    ([("trigger.http[0].channel", "x")], "trigger.http[0].channel", ["unknown field"]),
    ([("variables.greeting.colour", "x")], "variables.greeting.colour", ["unknown field"]),
    ([("application.name", None)], "application.name", ["missing required field"]),
    ([("application", None)], "application", ["missing required field"]),
    ([("trigger", None)], "trigger", ["missing required field"]),
    ([("component.hello.source", None)], "component.hello.source", ["missing"]),
    ([("trigger.http[0].route", None)], "trigger.http[0].route", ["missing"]),
    # wrong types
    ([("application.name", 3)], "application.name", ["expected a string", "got 3"]),
    ([("application.authors", "me")], "application.authors", ["expected an array", '"me"']),
    ([("application.version", True)], "application.version", ["expected a string", "true"]),
    ([("component.hello", "x")], "component.hello", ["expected a table", '"x"']),
    ([("trigger.http", {"route": "/"})], "trigger.http", ["expected an array", "a table"]),
    ([("component.hello.environment", {"X": 1})], "component.hello.environment.X", ["got 1"]),
    ([("component.hello.exclude_files", [1])], "component.hello.exclude_files[0]", ["got 1"]),
    ([("component.hello.ai_models", [True])], "component.hello.ai_models[0]", ["true"]),
    (
        [("component.hello.dependencies_inherit_configuration", "yes")],
        "component.hello.dependencies_inherit_configuration",
        ['"yes"'],
    ),
    (
        [("component.hello.targets", [3])],
        "component.hello.targets[0]",
        ["expected an environment id", "got 3"],
    ),
    # manifest version
    ([("spin_manifest_version", 3)], "spin_manifest_version", ["unsupported", "3"]),
    ([("spin_manifest_version", "2")], "spin_manifest_version", ['"2"']),
    ([("spin_manifest_version", None)], "spin_manifest_version", ["missing"]),
    # ids and names
    ([("component.Hello_World", {"source": "x"})], "component.Hello_World", ['"Hello_World"']),
    ([("component.helloWorld", {"source": "x"})], "component.helloWorld", ['"helloWorld"']),
    ([("component.9lives", {"source": "x"})], "component.9lives", ['"9lives"']),
    ([("component.a--b", {"source": "x"})], "component.a--b", ['"a--b"', "empty"]),
    ([("trigger.http[0].component", "Bad_Id")], "trigger.http[0].component", ['"Bad_Id"']),
    ([("variables.Api_Key", {"default": "x"})], "variables.Api_Key", ['"Api_Key"']),
    ([("variables.api-key", {"default": "x"})], "variables.api-key", ['"api-key"']),
    ([("variables.a__b", {"default": "x"})], "variables.a__b", ['"a__b"']),
    (
        [("component.hello.variables", {"Greeting": "x"})],
        "component.hello.variables.Greeting",
        ['"Greeting"'],
    ),
    # variables
    (
        [("variables.greeting", {"default": "x", "required": True})],
        "variables.greeting",
        ["both"],
    ),
    ([("variables.greeting", {"description": "d"})], "variables.greeting", ["either"]),
    ([("variables.greeting", {"required": False})], "variables.greeting", ["either"]),
    ([("variables.greeting", {"default": 3})], "variables.greeting.default", ["got 3"]),
    ([("variables.greeting", {"default": "x", "secret": "yes"})], "variables.greeting.secret", []),
    (
        [("component.hello.variables", {"msg": "{{ nope }}"})],
        "component.hello.variables.msg",
        ["unknown application variable", '"nope"'],
    ),
    (
        [("component.hello.variables", {"msg": "a {{ greeting }} {{ greeting"})],
        "component.hello.variables.msg",
        ["unmatched", '"a {{ greeting }} {{ greeting"'],
    ),
    # triggers
    ([("trigger.http[0].component", "helo")], "trigger.http[0].component", ['"helo"', "unknown"]),
    ([("trigger.http[0].route", {"private": False})], "trigger.http[0].route", ["private = false"]),
    ([("trigger.http[0].route", {"public": True})], "trigger.http[0].route.public", ["unknown"]),
    ([("trigger.http[0].route", 5)], "trigger.http[0].route", ["route string", "got 5"]),
    (
        [("trigger.http[0].executor", {"type": "cgi"})],
        "trigger.http[0].executor.type",
        ['"wagi"', 'got "cgi"'],
    ),
    ([("trigger.http[0].executor", {})], "trigger.http[0].executor.type", ["missing"]),
    (
        [("trigger.http[0].executor", {"type": "wagi", "entrypoint": "main"})],
        "trigger.http[0].executor.entrypoint",
        ['"main"', '"_start"'],
    ),
    (
        [("trigger.http[0].executor", {"type": "http", "argv": "x"})],
        "trigger.http[0].executor",
        ["argv", '"wagi"'],
    ),
    (
        [("trigger.http[0].executor", {"type": "wagi", "env": "x"})],
        "trigger.http[0].executor.env",
        ["unknown field"],
    ),
    ([("trigger.http[0].static_response", {"body": "x"})], "trigger.http[0]", ["both"]),
    ([("trigger.http[0].component", None)], "trigger.http[0]", ["neither"]),
    (
        [("trigger.http[0]", {"route": "/", "static_response": {"status_code": 42}})],
        "trigger.http[0].static_response.status_code",
        ["42"],
    ),
    (
        [("trigger.http[0]", {"route": "/", "static_response": {"colour": "x"}})],
        "trigger.http[0].static_response.colour",
        ["unknown field"],
    ),
    (
        [("trigger.http[0]", {"route": "/", "static_response": {"headers": {"a": 1}}})],
        "trigger.http[0].static_response.headers.a",
        ["got 1"],
    ),
    (
        [
            ("trigger.http[1]", {"route": "/b", "component": "hello", "id": "x"}),
            ("trigger.http[0].id", "x"),
        ],
        "trigger.http[1].id",
        ['"x"', "duplicate"],
    ),
    (
        [("trigger.redis", [{"channel": "c", "component": "nope"}])],
        "trigger.redis[0].component",
        ['"nope"'],
    ),
    (
        [("trigger.redis", [{"components": {"mw": ["hello", "nope"]}}])],
        "trigger.redis[0].components.mw[1]",
        ['"nope"'],
    ),
    ([("trigger.redis", [{"component": 5}])], "trigger.redis[0].component", ["got 5"]),
    # inline components
    (
        [("trigger.http[0].component", {"source": "x", "colour": "red"})],
        "trigger.http[0].component.colour",
        ["unknown field"],
    ),
    ([("trigger.http[0].component", {})], "trigger.http[0].component.source", ["missing"]),
    (
        [("trigger.http[0].component", {"source": "x", "variables": {"a": "{{ nope }}"}})],
        "trigger.http[0].component.variables.a",
        ['"nope"'],
    ),
    # application trigger settings
    (
        [("application.trigger", {"http": {"base": "/foo"}})],
        "application.trigger.http.base",
        ['"/foo"'],
    ),
    ([("application.trigger", {"http": "x"})], "application.trigger.http", ["expected a table"]),
    # sources
    ([("component.hello.source", 3)], "component.hello.source", ["expected a file path", "got 3"]),
    ([("component.hello.source", {"path": "x"})], "component.hello.source", ["a table"]),
    ([("component.hello.source", {"url": "x"})], "component.hello.source.digest", ["missing"]),
    (
        [("component.hello.source", {"url": "x", "digest": "sha256:12"})],
        "component.hello.source.digest",
        ['"sha256:12"'],
    ),
    (
        [("component.hello.source", {"url": "x", "digest": DIGEST, "size": 3})],
        "component.hello.source.size",
        ["unknown field"],
    ),
    (
        [("component.hello.source", {"package": "a:b", "version": "latest"})],
        "component.hello.source.version",
        ['"latest"'],
    ),
    (
        [("component.hello.source", {"package": "ab", "version": "1.0.0"})],
        "component.hello.source.package",
        ['"ab"'],
    ),
    # files
    ([("component.hello.files", [".."])], "component.hello.files[0]", ['".."']),
    ([("component.hello.files", ["a", "static/.."])], "component.hello.files[1]", ['"static/.."']),
    ([("component.hello.files", ["."])], "component.hello.files[0]", ['"."']),
    ([("component.hello.files", ["a/."])], "component.hello.files[0]", ['"a/."']),
    ([("component.hello.files", [3])], "component.hello.files[0]", ["glob pattern", "got 3"]),
    (
        [("component.hello.files", [{"source": "a"}])],
        "component.hello.files[0].destination",
        ["missing"],
    ),
    (
        [("component.hello.files", [{"source": "a", "destination": "/", "mode": 1}])],
        "component.hello.files[0].mode",
        ["unknown field"],
    ),
    # allowed hosts
    (
        [("component.hello.allowed_outbound_hosts", ["example.com"])],
        "component.hello.allowed_outbound_hosts[0]",
        ['"example.com"', "scheme"],
    ),
    (
        [("component.hello.allowed_outbound_hosts", ["https://a.com", "https://example.com/path"])],
        "component.hello.allowed_outbound_hosts[1]",
        ['"https://example.com/path"', "path"],
    ),
    (
        [("component.hello.allowed_outbound_hosts", ["https://example.com:80/path"])],
        "component.hello.allowed_outbound_hosts[0]",
        ["path"],
    ),
    (
        [("component.hello.allowed_outbound_hosts", ["insecure:allow-all"])],
        "component.hello.allowed_outbound_hosts[0]",
        ['"insecure:allow-all"'],
    ),
    (
        [("component.hello.allowed_outbound_hosts", ["http://a.com:99999"])],
        "component.hello.allowed_outbound_hosts[0]",
        ['"99999"'],
    ),
    (
        [("component.hello.allowed_outbound_hosts", ["http://a.com:1..x"])],
        "component.hello.allowed_outbound_hosts[0]",
        ['"x"'],
    ),
    (
        [("component.hello.allowed_outbound_hosts", ["foo://a.com"])],
        "component.hello.allowed_outbound_hosts[0]",
        ['"foo"', "default port"],
    ),
    (
        [("component.hello.allowed_outbound_hosts", ["*://a.com"])],
        "component.hello.allowed_outbound_hosts[0]",
        ["default port"],
    ),
    (
        [("component.hello.allowed_outbound_hosts", ["http://a.*.com"])],
        "component.hello.allowed_outbound_hosts[0]",
        ['"http://a.*.com"', "'*'"],
    ),
    (
        [("component.hello.allowed_outbound_hosts", ["ht-tp://a.com"])],
        "component.hello.allowed_outbound_hosts[0]",
        ['"ht-tp"'],
    ),
    (
        [("component.hello.allowed_outbound_hosts", ["*"])],
        "component.hello.allowed_outbound_hosts[0]",
        ['"*"'],
    ),
    (
        [
            (
                "component.hello.allowed_outbound_hosts",
                ["https://{{ greeting }}", "https://{{ nope }}"],
            )
        ],
        "component.hello.allowed_outbound_hosts[1]",
        ['"nope"'],
    ),
    (
        [("component.hello.allowed_outbound_hosts", ["https://{{ greeting"])],
        "component.hello.allowed_outbound_hosts[0]",
        ["unmatched"],
    ),
    (
        [("component.hello.allowed_http_hosts", ["ftp://a.com"])],
        "component.hello.allowed_http_hosts[0]",
        ['"ftp://a.com"'],
    ),
    (
        [("component.hello.allowed_http_hosts", ["a.com/path"])],
        "component.hello.allowed_http_hosts[0]",
        ['"a.com/path"', "path"],
    ),
    # labels
    (
        [("component.hello.key_value_stores", ["default", "b@d"])],
        "component.hello.key_value_stores[1]",
        ['"b@d"'],
    ),
    (
        [("component.hello.sqlite_databases", ["camelCase"])],
        "component.hello.sqlite_databases[0]",
        ['"camelCase"'],
    ),
    # build
    ([("component.hello.build", {"workdir": "x"})], "component.hello.build.command", ["missing"]),
    ([("component.hello.build", {"command": 3})], "component.hello.build.command", ["got 3"]),
    ([("component.hello.build", {"command": [3]})], "component.hello.build.command[0]", ["got 3"]),
    (
        [("component.hello.build", {"command": "make", "colour": "x"})],
        "component.hello.build.colour",
        ["unknown field"],
    ),
    # profiles
    (
        [("component.hello.profile", {"debug": {"colour": 1}})],
        "component.hello.profile.debug.colour",
        ["unknown field"],
    ),
    (
        [("component.hello.profile", {"debug": {"build": {"command": "x", "workdir": "y"}}})],
        "component.hello.profile.debug.build.workdir",
        ["unknown field"],
    ),
    # dependencies
    (
        [("component.hello.dependencies", {"a:b": {"version": "1", "foo": 2}})],
        'component.hello.dependencies."a:b".foo',
        ["unknown field"],
    ),
    (
        [("component.hello.dependencies", {"Bad Name": "1.0"})],
        'component.hello.dependencies."Bad Name"',
        ['"Bad Name"'],
    ),
    (
        [("component.hello.dependencies", {"a:b@x.y": "1.0"})],
        'component.hello.dependencies."a:b@x.y"',
        ['"a:b@x.y"'],
    ),
    (
        [("component.hello.dependencies", {"plain": ">=1.0"})],
        "component.hello.dependencies.plain",
        ['"plain"', "package"],
    ),
    (
        [("component.hello.dependencies", {"a:b": {"path": "x.wasm", "export": "e"}})],
        'component.hello.dependencies."a:b".export',
        ['"a:b"'],
    ),
    (
        [("component.hello.dependencies", {"a:b/c": {"component": "nope"}})],
        'component.hello.dependencies."a:b/c".component',
        ['"nope"'],
    ),
    (
        [
            ("component.dep", {"source": "d.wasm", "files": ["x"]}),
            ("component.hello.dependencies", {"a:b/c": {"component": "dep"}}),
        ],
        'component.hello.dependencies."a:b/c".component',
        ['"dep"', "files"],
    ),
    (
        [("component.hello.dependencies", {"a:b/c": {"url": "u", "digest": "md5:x"}})],
        'component.hello.dependencies."a:b/c".digest',
        ['"md5:x"'],
    ),
    (
        [
            (
                "component.hello.dependencies",
                {"a:b/c": {"version": "1", "inherit_configuration": "x"}},
            )
        ],
        'component.hello.dependencies."a:b/c".inherit_configuration',
        ['"x"'],
    ),
]


@pytest.mark.parametrize(("changes", "path", "fragments"), MALFORMED)
def test_malformed_manifest(
    changes: list[tuple[str, Any]], path: str, fragments: list[str]
) -> None:
    error = error_of(with_changes(*changes))
    assert error.file == "spin.toml"
    assert error.path == path, str(error)
    for fragment in fragments:
        assert fragment in error.message, str(error)
    assert str(error) == f"spin.toml: {path}: {error.message}"


# -- version 1 ------------------------------------------------------------------------------------

V1 = """
spin_manifest_version = "1"
name = "old-app"
version = "1.0.0"
description = "An old app"
authors = ["me"]
trigger = { type = "http", base = "/" }

[variables]
message = { default = "hello" }

[[component]]
id = "hello_World"
source = "hello.wasm"
allowed_http_hosts = ["example.com:8080", "self"]
files = ["static/*"]
key_value_stores = ["default"]
[component.trigger]
route = "/hello"
executor = { type = "wagi" }
[component.config]
msg = "{{ message }}"

[[component]]
id = "restricted"
source = { url = "https://example.com/r.wasm", digest = "sha256:%s" }
allowed_outbound_hosts = ["https://api.example.com"]
allowed_http_hosts = ["insecure:allow-all"]
[component.trigger]
route = "/r/..."
""" % ("ab" * 32)


def test_v1_conversion() -> None:
    manifest = parse_manifest(V1)
    assert manifest.source_version == 1
    app = manifest.application
    assert (app.name, app.version, app.description, app.authors) == (
        "old-app",
        "1.0.0",
        "An old app",
        ["me"],
    )
    assert app.trigger == {"http": {}}
    assert list(manifest.components) == ["hello-world", "restricted"]
    assert [t.id for t in manifest.triggers.http] == ["trigger-hello-world", "trigger-restricted"]
    first = manifest.triggers.http[0]
    assert (first.route, first.component) == ("/hello", "hello-world")
    assert first.executor == HttpExecutor(type="wagi")
    hello = manifest.components["hello-world"]
    assert hello.variables == {"msg": "{{ message }}"}
    assert hello.files == ["static/*"]
    assert hello.allowed_outbound_hosts == [
        "redis://*:*",
        "mysql://*:*",
        "postgres://*:*",
        "http://example.com:8080",
        "https://example.com:8080",
        "http://self",
    ]
    restricted = manifest.components["restricted"]
    assert restricted.allowed_outbound_hosts == [
        "https://api.example.com",
        "http://*:*",
        "https://*:*",
        "http://self",
    ]


def test_v1_spin_version_alias_and_redis_trigger() -> None:
    text = """
spin_version = "1"
name = "redis-app"
trigger = { type = "redis", address = "redis://localhost" }
[[component]]
id = "echo"
source = "echo.wasm"
[component.trigger]
channel = "messages"
"""
    manifest = parse_manifest(text)
    assert manifest.application.trigger == {"redis": {"address": "redis://localhost"}}
    (trigger,) = manifest.triggers.model_extra["redis"]
    assert isinstance(trigger, Trigger)
    assert trigger.id == "trigger-echo"
    assert trigger.config() == {"channel": "messages", "component": "echo"}
    assert manifest.components["echo"].allowed_outbound_hosts == [
        "redis://*:*",
        "mysql://*:*",
        "postgres://*:*",
    ]


V1_HEAD = 'spin_manifest_version = "1"\nname = "a"\ntrigger = { type = "http" }\n'
V1_COMPONENT = '[[component]]\nid = "hello"\nsource = "h.wasm"\n[component.trigger]\nroute = "/"\n'

V1_MALFORMED: list[tuple[str, str, list[str]]] = [
    (V1_HEAD + V1_COMPONENT + "colour = 1\n", "component[0].trigger.colour", ["unknown field"]),
    (
        V1_HEAD + V1_COMPONENT.replace('source = "h.wasm"\n', 'source = "h.wasm"\ncolour = 1\n'),
        "component[0].colour",
        ["unknown"],
    ),
    (V1_HEAD + V1_COMPONENT.replace('"hello"', '"9lives"'), "component[0].id", ['"9lives"']),
    (V1_HEAD + V1_COMPONENT.replace('"hello"', '"a b"'), "component[0].id", ['"a b"']),
    (
        V1_HEAD + V1_COMPONENT.replace('route = "/"\n', ""),
        "component[0].trigger.route",
        ["missing"],
    ),
    (
        V1_HEAD + V1_COMPONENT + '[component.config]\nmsg = "{{ nope }}"\n',
        "component[0].config.msg",
        ['"nope"'],
    ),
    (V1_HEAD.replace('trigger = { type = "http" }\n', ""), "trigger", ["missing"]),
    (
        V1_HEAD.replace('{ type = "http" }', '{ type = "http", base = "/api" }') + V1_COMPONENT,
        "trigger.base",
        ['"/api"'],
    ),
    (V1_HEAD + V1_COMPONENT + V1_COMPONENT, "component[1].id", ["duplicate", '"hello"']),
    (
        V1_HEAD
        + V1_COMPONENT.replace(
            'source = "h.wasm"\n', 'source = "h.wasm"\nallowed_outbound_hosts = ["x"]\n'
        ),
        "component[0].allowed_outbound_hosts[0]",
        ['"x"'],
    ),
    ('spin_version = "2"\n', "spin_manifest_version", ['"2"']),
    ('spin_version = "1"\nspin_manifest_version = "1"\n', "spin_version", []),
]


@pytest.mark.parametrize(("text", "path", "fragments"), V1_MALFORMED)
def test_v1_malformed(text: str, path: str, fragments: list[str]) -> None:
    with pytest.raises(ManifestError) as info:
        parse_manifest(text)
    assert info.value.path == path, str(info.value)
    for fragment in fragments:
        assert fragment in info.value.message


# -- normalisation --------------------------------------------------------------------------------


def test_trigger_ids_follow_spin() -> None:
    data = base_manifest()
    data["trigger"] = {
        "http": [
            {"route": "/a", "component": "hello"},
            {"route": "/b", "component": "hello"},
            {"route": "/c", "component": {"source": "inline.wasm"}},
            {"route": "/d", "component": "hello", "id": "http-trigger1"},
        ],
        "redis": [{"channel": "x", "component": "hello"}],
    }
    manifest = parse(data)
    ids = [t.id for _, t in manifest.all_triggers()]
    assert ids == [
        "hello-http-trigger",
        "http-trigger2",
        "http-trigger3",
        "http-trigger1",
        "hello-redis-trigger",
    ]
    assert manifest.triggers.http[2].component == "http-trigger3-component"


def test_inline_component_id_falls_back_when_taken() -> None:
    data = base_manifest()
    data["component"]["t-component"] = {"source": "x.wasm"}
    data["trigger"]["http"] = [{"id": "t", "route": "/", "component": {"source": "i.wasm"}}]
    manifest = parse(data)
    assert manifest.triggers.http[0].component == "inline-component1"
    assert manifest.components["inline-component1"].source == "i.wasm"


def test_static_response_trigger_has_no_component() -> None:
    data = with_changes(("trigger.http[0]", {"route": "/s", "static_response": {"body": "x"}}))
    (trigger,) = parse(data).triggers.http
    assert trigger.component is None
    assert trigger.config() == {"route": "/s", "static_response": {"body": "x"}}


# -- allowed hosts, templates ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "scheme", "host", "ports"),
    [
        ("https://example.com", "https", "example.com", ((443, 444),)),
        ("http://example.com:8080", "http", "example.com", ((8080, 8081),)),
        ("*://localhost:*", "*", "localhost", None),
        ("redis://*.example.com", "redis", "*.example.com", ((6379, 6380),)),
        ("tcp://10.0.0.0/8:1..100", "tcp", "10.0.0.0/8", ((1, 100),)),
        ("http://self", "http", "self", ((80, 81),)),
        ("http://self.alt", "http", "self", ((80, 81),)),
        ("mqtt://broker/", "mqtt", "broker", ((1883, 1884),)),
        ("tcp://[::1]:80", "tcp", "::1", ((80, 81),)),
        ("https://[2001:db8::1]", "https", "2001:db8::1", ((443, 444),)),
        ("tcp://[fd00::/8]:*", "tcp", "fd00::/8", None),
    ],
)
def test_parse_allowed_host(text: str, scheme: str, host: str, ports: Any) -> None:
    parsed = parse_allowed_host(text)
    assert (parsed.scheme, parsed.host, parsed.ports) == (scheme, host, ports)


def test_allowed_host_cidr_network() -> None:
    network = parse_allowed_host("postgres://192.168.0.0/16").network
    assert network is not None and network.prefixlen == 16


def test_bracketed_ipv6_hosts_match_addresses() -> None:
    policy = OutboundPolicy.parse(["tcp://[::1]:5000", "http://[fd00::/8]"])
    assert policy.allows("tcp", "::1", 5000)
    assert policy.allows("tcp", "[::1]", 5000)
    assert not policy.allows("tcp", "::1", 5001)
    assert policy.allows("http", "fd12::7", 80)
    assert not policy.allows("http", "fe80::1", 80)
    with pytest.raises(ValueError, match="IPv6"):
        parse_allowed_host("tcp://[::1")


def test_convert_allowed_http_hosts() -> None:
    assert convert_allowed_http_hosts(["a.com", "http://b.com:81/", "self"], False) == [
        "http://a.com",
        "https://a.com",
        "http://b.com:81",
        "https://b.com:81",
        "http://self",
    ]
    assert convert_allowed_http_hosts([], True) == ["redis://*:*", "mysql://*:*", "postgres://*:*"]


def test_templates() -> None:
    template = parse_template("https://{{ host }}:{{port}}/{{ host }}")
    assert template.variables == ["host", "port"]
    assert not template.is_literal
    assert template.render({"host": "h", "port": "1"}.__getitem__) == "https://h:1/h"
    assert parse_template("plain").is_literal
    assert parse_template("").parts == ()
    assert unknown_variables(template, ["host"]) == ["port"]
    with pytest.raises(TemplateError, match="unmatched"):
        parse_template("{{ open")


# -- properties -----------------------------------------------------------------------------------

# Tables that reject unknown fields, as (path to the table in the base manifest, its known keys).
CLOSED_TABLES: list[tuple[list[str | int], set[str]]] = [
    ([], {"spin_manifest_version", "application", "variables", "trigger", "component"}),
    (["application"], {"name", "version", "description", "authors", "targets", "trigger", "tool"}),
    (["variables", "greeting"], {"description", "required", "default", "secret"}),
    (["trigger", "http", 0], {"id", "component", "route", "executor", "static_response"}),
    (["trigger", "http", 0, "executor"], {"type", "argv", "entrypoint"}),
    (["component", "hello"], set(Component.model_fields)),
    (["component", "hello", "build"], {"command", "workdir", "watch"}),
    (["component", "hello", "source"], {"url", "digest", "package", "version", "registry"}),
    (["component", "hello", "files", 0], {"source", "destination"}),
    (
        ["component", "hello", "profile", "debug"],
        {"source", "environment", "dependencies", "build"},
    ),
    (
        ["component", "hello", "dependencies", "a:b/c"],
        {
            "path",
            "url",
            "digest",
            "component",
            "version",
            "export",
            "inherit_configuration",
            "environment",
            "registry",
            "package",
        },
    ),
]


def _rich_manifest() -> dict[str, Any]:
    data = base_manifest()
    data["trigger"]["http"][0]["executor"] = {"type": "wagi"}
    data["component"]["hello"] = {
        "source": {"url": "https://x", "digest": DIGEST},
        "build": {"command": "make"},
        "files": [{"source": "a", "destination": "/"}],
        "profile": {"debug": {}},
        "dependencies": {"a:b/c": {"path": "dep.wasm"}},
    }
    return data


def _node(data: Any, path: list[str | int]) -> Any:
    for part in path:
        data = data[part]
    return data


def _toml_path(path: list[str | int]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + _key(part)
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    table=st.sampled_from(CLOSED_TABLES),
    key=st.from_regex(r"[a-z][a-z0-9_]{0,12}|[A-Z][a-zA-Z-]{0,8}|[a-z]+:[a-z]+", fullmatch=True),
    value=st.one_of(st.text(alphabet="ab -_.é", max_size=5), st.integers(), st.booleans()),
)
def test_unknown_keys_are_rejected_with_their_path(
    table: tuple[list[str | int], set[str]], key: str, value: Any
) -> None:
    path, known = table
    if key in known:
        return
    data = _rich_manifest()
    assert parse(copy.deepcopy(data))  # the unchanged manifest is valid
    _node(data, path)[key] = value
    error = error_of(data)
    assert error.path == _toml_path([*path, key])
    assert error.message == "unknown field"


# Spin's kebab-case ids: words of letters and digits (plus ':'), all lowercase or all uppercase,
# the first word starting with a letter.
KEBAB_ID = re.compile(
    r"(?:[a-z][a-z0-9:]*|[A-Z][A-Z0-9:]*)(?:-(?:[a-z0-9][a-z0-9:]*|[A-Z][A-Z0-9:]*))*"
)
LOWER_SNAKE_ID = re.compile(r"[a-z][a-z0-9:]*(?:_[a-z0-9][a-z0-9:]*)*")


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet="abZ09-_:.@ é", min_size=0, max_size=8))
def test_component_ids(candidate: str) -> None:
    data = base_manifest()
    data["component"][candidate] = {"source": "x.wasm"}
    if KEBAB_ID.fullmatch(candidate):
        assert candidate in parse(data).components
    else:
        error = error_of(data)
        assert error.path == _toml_path(["component", candidate])
        assert json.dumps(candidate, ensure_ascii=False) in error.message


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet="abZ09-_:. ", min_size=0, max_size=8))
def test_variable_names(candidate: str) -> None:
    data = base_manifest()
    data["variables"][candidate] = {"default": "x"}
    if LOWER_SNAKE_ID.fullmatch(candidate):
        assert candidate in parse(data).variables
    else:
        error = error_of(data)
        assert error.path == _toml_path(["variables", candidate])
        assert json.dumps(candidate) in error.message


@settings(max_examples=100, deadline=None)
@given(
    scheme=st.sampled_from(["http", "https", "redis", "mysql", "postgres", "mqtt", "tcp", "*"]),
    host=st.sampled_from(
        ["*", "example.com", "*.example.com", "10.0.0.0/8", "self", "{{ greeting }}"]
    ),
    port=st.sampled_from(["", ":*", ":8080", ":80..90", ":{{ greeting }}"]),
)
def test_allowed_outbound_host_syntax(scheme: str, host: str, port: str) -> None:
    entry = f"{scheme}://{host}{port}"
    data = with_changes(("component.hello.allowed_outbound_hosts", [entry]))
    templated = "{{" in entry
    valid = templated or not (port == "" and scheme in ("tcp", "*"))
    if valid:
        assert parse(data).components["hello"].allowed_outbound_hosts == [entry]
    else:
        error = error_of(data)
        assert error.path == "component.hello.allowed_outbound_hosts[0]"
        assert json.dumps(entry) in error.message


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.text(alphabet="ab }-", max_size=4).filter(lambda s: "{{" not in s),
            st.sampled_from(["x", "y_1", "zz"]),
            st.sampled_from(["", " ", "  "]),
        ),
        max_size=4,
    )
)
def test_template_round_trip(parts: list[tuple[str, str, str]]) -> None:
    text = "".join(f"{lit}{{{{{pad}{name}{pad}}}}}" for lit, name, pad in parts)
    template = parse_template(text)
    assert template.variables == list(dict.fromkeys(name for _, name, _ in parts))
    rendered = template.render(lambda name: f"<{name}>")
    assert rendered == "".join(f"{lit}<{name}>" for lit, name, _ in parts)
