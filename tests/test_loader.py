"""Tests of `wasmlet.loader`: locking a manifest into a `LockedApp`."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from wasmlet.errors import ManifestError, NotSupportedError
from wasmlet.loader import expand_mount, load_app, lock_app
from wasmlet.locked import LockedApp, path_to_url, read_content
from wasmlet.manifest import FilePlacement, load_manifest

WASM = b"\0asm\x01\0\0\0"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def write(root: Path, files: dict[str, str | bytes]) -> None:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


def app_dir(tmp_path: Path, component: str = "", extra: str = "", head: str = "") -> Path:
    """An app with component `hello` (plus `component` lines) and its `hello.wasm`."""
    write(
        tmp_path,
        {
            "hello.wasm": WASM,
            "spin.toml": f"""spin_manifest_version = 2
[application]
name = "hello-app"
{head}
[[trigger.http]]
route = "/hello/..."
component = "hello"

[component.hello]
source = "hello.wasm"
{component}
{extra}
""",
        },
    )
    return tmp_path


def lock_error(root: Path) -> ManifestError:
    with pytest.raises(ManifestError) as info:
        load_app(root)
    return info.value


# -- sources --------------------------------------------------------------------------------------


def test_minimal_app(tmp_path: Path) -> None:
    app = load_app(app_dir(tmp_path))
    (component,) = app.components
    assert component.id == "hello"
    assert component.source.source == path_to_url(tmp_path / "hello.wasm")
    assert component.source.digest == sha(WASM)
    assert component.source.content_type == "application/wasm"
    assert read_content(component.source, "hello") == WASM
    (trigger,) = app.triggers
    assert trigger.id == "hello-http-trigger"
    assert trigger.trigger_type == "http"
    assert trigger.trigger_config == {"route": "/hello/...", "component": "hello"}


def test_load_app_accepts_file_path(tmp_path: Path) -> None:
    app_dir(tmp_path)
    assert load_app(tmp_path / "spin.toml").name == "hello-app"


def test_missing_source_fails_at_lock_not_load(tmp_path: Path) -> None:
    app_dir(tmp_path)
    (tmp_path / "hello.wasm").unlink()
    manifest = load_manifest(tmp_path)  # fine: `wasmlet build` may create it
    with pytest.raises(ManifestError) as info:
        lock_app(manifest, tmp_path / "spin.toml")
    error = info.value
    assert error.file == str(tmp_path / "spin.toml")
    assert error.path == "component.hello.source"
    assert error.message == 'file "hello.wasm" not found'


def test_source_directory_is_an_error(tmp_path: Path) -> None:
    app_dir(tmp_path)
    (tmp_path / "hello.wasm").unlink()
    (tmp_path / "hello.wasm").mkdir()
    assert lock_error(tmp_path).message == '"hello.wasm" is not a file'


def test_missing_inline_source_names_trigger(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "spin.toml": """spin_manifest_version = 2
[application]
name = "a"
[[trigger.http]]
route = "/"
component = { source = "missing.wasm" }
"""
        },
    )
    error = lock_error(tmp_path)
    assert error.path == "trigger.http[0].component.source"
    assert '"missing.wasm"' in error.message


def test_missing_v1_source_names_component_index(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "spin.toml": """spin_manifest_version = "1"
name = "a"
trigger = { type = "http" }
[[component]]
id = "hello"
source = "missing.wasm"
[component.trigger]
route = "/"
"""
        },
    )
    assert lock_error(tmp_path).path == "component[0].source"


def test_remote_source_is_downloaded_and_verified(tmp_path: Path) -> None:
    remote = tmp_path / "remote" / "r.wasm"
    write(tmp_path, {"remote/r.wasm": WASM})
    app_root = tmp_path / "app"
    app_root.mkdir()
    source = f'source = {{ url = "{remote.as_uri()}", digest = "{sha(WASM)}" }}'
    write(app_root, {"spin.toml": _single_component_manifest(source)})
    cache = tmp_path / "cache"
    app = load_app(app_root, cache_dir=cache)
    locked = app.components[0].source
    assert locked.digest == sha(WASM)
    assert locked.source is not None and locked.source.startswith(cache.as_uri())
    assert read_content(locked, "remote") == WASM
    remote.unlink()  # a second lock is served from the cache
    assert load_app(app_root, cache_dir=cache).components[0].source == locked


def test_remote_source_default_cache_honours_wasmlet_cache_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, {"remote/r.wasm": WASM})
    app_root = tmp_path / "app"
    app_root.mkdir()
    remote = (tmp_path / "remote" / "r.wasm").as_uri()
    write(
        app_root,
        {
            "spin.toml": _single_component_manifest(
                f'source = {{ url = "{remote}", digest = "{sha(WASM)}" }}'
            )
        },
    )
    monkeypatch.setenv("WASMLET_CACHE_DIR", str(tmp_path / "wasmlet-cache"))
    locked = load_app(app_root).components[0].source
    assert locked.source is not None
    assert locked.source.startswith((tmp_path / "wasmlet-cache" / "wasm").as_uri())


def test_remote_source_digest_mismatch(tmp_path: Path) -> None:
    write(tmp_path, {"r.wasm": WASM})
    wrong = "sha256:" + "0" * 64
    source = f'source = {{ url = "{(tmp_path / "r.wasm").as_uri()}", digest = "{wrong}" }}'
    write(tmp_path, {"spin.toml": _single_component_manifest(source)})
    with pytest.raises(ManifestError) as info:
        load_app(tmp_path, cache_dir=tmp_path / "cache")
    assert info.value.path == "component.hello.source"
    assert "does not match" in info.value.message


def test_registry_source_not_supported(tmp_path: Path) -> None:
    source = 'source = { package = "a:b", version = "1.0.0" }'
    write(tmp_path, {"spin.toml": _single_component_manifest(source)})
    with pytest.raises(NotSupportedError, match=r"component\.hello\.source"):
        load_app(tmp_path)


def _single_component_manifest(source_line: str) -> str:
    return f"""spin_manifest_version = 2
[application]
name = "a"
[[trigger.http]]
route = "/"
component = "hello"
[component.hello]
{source_line}
"""


# -- files ----------------------------------------------------------------------------------------

STATIC = {
    "static/a.txt": "a",
    "static/b.html": "b",
    "static/sub/c.txt": "c",
    "static/.hidden": "h",
    "static/secret/key.txt": "k",
    "assets/logo.png": b"\x89PNG",
    "top.txt": "t",
}


def locked_files(tmp_path: Path, files: str, exclude: str = "[]") -> dict[str, str]:
    app_dir(tmp_path, component=f"files = {files}\nexclude_files = {exclude}")
    write(tmp_path, STATIC)
    (component,) = load_app(tmp_path).components
    out = {}
    for f in component.files:
        assert f.source is not None and f.digest == sha(read_content(f, f.path))
        out[f.path] = Path(f.source.removeprefix("file://")).read_text(errors="replace")
    return out


@pytest.mark.parametrize(
    ("files", "exclude", "expected"),
    [
        ('["static/*.txt"]', "[]", {"/static/a.txt"}),
        (
            '["static/**/*.txt"]',
            "[]",
            {"/static/a.txt", "/static/sub/c.txt", "/static/secret/key.txt"},
        ),
        ('["top.txt"]', "[]", {"/top.txt"}),
        ('["./top.txt"]', "[]", {"/top.txt"}),
        (
            '["static"]',
            "[]",
            {
                "/static/a.txt",
                "/static/b.html",
                "/static/sub/c.txt",
                "/static/.hidden",
                "/static/secret/key.txt",
            },
        ),
        (
            '["static/**/*"]',
            '["static/secret/*", "**/*.html"]',
            {"/static/a.txt", "/static/sub/c.txt", "/static/.hidden"},
        ),
        ('["nothing/*.txt"]', "[]", set()),
        ('[{ source = "assets", destination = "/" }]', "[]", {"/logo.png"}),
        ('[{ source = "assets", destination = "/img/" }]', "[]", {"/img/logo.png"}),
        ('[{ source = "assets", destination = "img" }]', "[]", {"/img/logo.png"}),
        ('[{ source = "top.txt", destination = "/etc/config.txt" }]', "[]", {"/etc/config.txt"}),
        (
            '[{ source = "static/sub", destination = "/" }, "top.txt"]',
            '["static/sub/*"]',
            {"/top.txt"},
        ),
    ],
)
def test_files_are_expanded(tmp_path: Path, files: str, exclude: str, expected: set[str]) -> None:
    assert set(locked_files(tmp_path, files, exclude)) == expected


def test_file_contents_are_the_host_files(tmp_path: Path) -> None:
    mounted = locked_files(tmp_path, '["static/*.txt", { source = "top.txt", destination = "/t" }]')
    assert mounted == {"/static/a.txt": "a", "/t": "t"}


@pytest.mark.parametrize(
    ("files", "fragment"),
    [
        ('[{ source = "nope", destination = "/" }]', '"nope" does not exist'),
        ('["missing.txt"]', '"missing.txt" does not exist'),
        ('[{ source = "top.txt", destination = "/dir/" }]', '"/dir/" is not a valid destination'),
        ('["../outside/*"]', "outside the application directory"),
    ],
)
def test_bad_files_entry(tmp_path: Path, files: str, fragment: str) -> None:
    write(tmp_path, {"outside/x.txt": "x"})
    app_dir(tmp_path / "app", component=f"files = {files}")
    write(tmp_path / "app", STATIC)
    error = lock_error(tmp_path / "app")
    assert error.path == "component.hello.files[0]"
    assert fragment in error.message


def test_expand_mount_placement_keeps_last_duplicate(tmp_path: Path) -> None:
    write(tmp_path, {"a/x.txt": "1", "b/x.txt": "2"})
    mounted = expand_mount(tmp_path, FilePlacement(source="a", destination="/d"), [])
    mounted |= expand_mount(tmp_path, FilePlacement(source="b", destination="/d"), [])
    assert mounted == {"/d/x.txt": tmp_path / "b/x.txt"}


# -- metadata, triggers, variables ----------------------------------------------------------------

FULL = """spin_manifest_version = 2
[application]
name = "full"
version = "1.2.3"
description = "The full app"
authors = ["me <me@example.com>"]
[application.trigger.http]
base = "/"

[variables]
api_key = { required = true, secret = true }
greeting = { default = "hi", description = "How to greet" }

[[trigger.http]]
route = "/hello/..."
component = "hello"
executor = { type = "wagi", argv = "${SCRIPT_NAME}" }

[[trigger.http]]
id = "private-one"
route = { private = true }
component = "hello"

[[trigger.http]]
route = "/gone"
static_response = { status_code = 410, headers = { content-type = "text/plain" }, body = "gone" }

[[trigger.http]]
route = "/inline"
component = { source = "hello.wasm", environment = { A = "1" } }

[component.hello]
source = "hello.wasm"
description = "Says hello"
environment = { LANG = "en" }
variables = { message = "{{ greeting }}, {{ api_key }}!", plain = "x" }
allowed_outbound_hosts = ["https://api.example.com", "http://backend.spin.internal"]
allowed_http_hosts = ["example.org"]
key_value_stores = ["default", "cache"]
sqlite_databases = ["default"]
ai_models = ["llama2-chat"]
build = { command = "make", watch = ["src/*"] }
"""


@pytest.fixture
def full_app(tmp_path: Path) -> LockedApp:
    write(tmp_path, {"spin.toml": FULL, "hello.wasm": WASM})
    return load_app(tmp_path)


def test_app_metadata(full_app: LockedApp, tmp_path: Path) -> None:
    assert full_app.metadata == {
        "name": "full",
        "version": "1.2.3",
        "description": "The full app",
        "authors": ["me <me@example.com>"],
        "trigger": {"base": "/", "type": "http"},
        "triggers": {"http": {"base": "/"}},
        "origin": path_to_url(tmp_path / "spin.toml"),
    }
    assert full_app.name == "full"
    assert full_app.version == "1.2.3"


def test_metadata_without_optional_fields(tmp_path: Path) -> None:
    metadata = load_app(app_dir(tmp_path)).metadata
    assert metadata["trigger"] == {"type": "http"}
    assert metadata["triggers"] == {"http": {}}
    assert metadata["authors"] == []
    assert "version" not in metadata and "description" not in metadata


def test_component_metadata(full_app: LockedApp) -> None:
    hello = full_app.component("hello")
    assert hello.metadata == {
        "description": "Says hello",
        "allowed_outbound_hosts": [
            "https://api.example.com",
            "http://backend.spin.internal",
            "http://example.org",
            "https://example.org",
        ],
        "key_value_stores": ["default", "cache"],
        "databases": ["default"],
        "ai_models": ["llama2-chat"],
        "build": {"command": "make", "watch": ["src/*"]},
    }
    assert hello.env == {"LANG": "en"}
    assert hello.config == {"message": "{{ greeting }}, {{ api_key }}!", "plain": "x"}
    assert hello.host_requirements == {"local_service_chaining": "required"}
    assert full_app.must_understand == ["component_host_requirements"]


def test_triggers(full_app: LockedApp) -> None:
    configs = {t.id: t.trigger_config for t in full_app.triggers}
    assert configs == {
        "hello-http-trigger": {
            "route": "/hello/...",
            "component": "hello",
            "executor": {"type": "wagi", "argv": "${SCRIPT_NAME}"},
        },
        "private-one": {"route": {"private": True}, "component": "hello"},
        "http-trigger1": {
            "route": "/gone",
            "static_response": {
                "status_code": 410,
                "headers": {"content-type": "text/plain"},
                "body": "gone",
            },
        },
        "http-trigger2": {"route": "/inline", "component": "http-trigger2-component"},
    }
    assert full_app.component("http-trigger2-component").env == {"A": "1"}


def test_variables(full_app: LockedApp) -> None:
    api_key, greeting = full_app.variables["api_key"], full_app.variables["greeting"]
    assert api_key.required and api_key.secret and api_key.default is None
    assert greeting.default == "hi" and greeting.description == "How to greet"
    assert not greeting.required


def test_json_round_trip(full_app: LockedApp) -> None:
    text = full_app.to_json()
    assert LockedApp.from_json(text) == full_app
    data = json.loads(text)
    assert data["spin_lock_version"] == 1
    assert data["components"][0]["source"]["content_type"] == "application/wasm"
    assert data["triggers"][0]["trigger_config"]["route"] == "/hello/..."
    assert "default" not in data["variables"]["api_key"]


def test_v1_app_locks(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "hello.wasm": WASM,
            "spin.toml": """spin_manifest_version = "1"
name = "old"
version = "0.1.0"
trigger = { type = "http", base = "/" }
[[component]]
id = "hello"
source = "hello.wasm"
[component.trigger]
route = "/..."
""",
        },
    )
    app = load_app(tmp_path)
    assert [t.id for t in app.triggers] == ["trigger-hello"]
    assert app.metadata["trigger"] == {"type": "http"}
    assert app.component("hello").metadata["allowed_outbound_hosts"] == [
        "redis://*:*",
        "mysql://*:*",
        "postgres://*:*",
    ]


def test_generic_triggers_are_kept(tmp_path: Path) -> None:
    extra = """
[[trigger.redis]]
channel = "messages"
component = "hello"
[application.trigger.redis]
address = "redis://localhost"
"""
    app = load_app(app_dir(tmp_path, extra=extra))
    redis = app.triggers_of("redis")
    assert [(t.id, t.trigger_config) for t in redis] == [
        ("hello-redis-trigger", {"channel": "messages", "component": "hello"})
    ]
    assert "trigger" not in app.metadata  # more than one trigger type
    assert app.metadata["triggers"] == {"http": {}, "redis": {"address": "redis://localhost"}}


# -- dependencies ---------------------------------------------------------------------------------


def test_dependencies(tmp_path: Path) -> None:
    extra = """
[component.hello.dependencies]
"a:b/c" = { path = "deps/dep.wasm", export = "x:y/z", inherit_configuration = ["ai_models"] }
"d:e/f" = { component = "helper" }

[component.helper]
source = "helper.wasm"
"""
    app_dir(tmp_path, extra=extra)
    write(tmp_path, {"deps/dep.wasm": b"dep", "helper.wasm": b"helper"})
    deps = load_app(tmp_path).component("hello").dependencies
    assert deps == {
        "a:b/c": {
            "source": {
                "content_type": "application/wasm",
                "source": path_to_url(tmp_path / "deps/dep.wasm"),
                "digest": sha(b"dep"),
            },
            "export": "x:y/z",
            "inherit": {"Some": ["ai_models"]},
        },
        "d:e/f": {
            "source": {
                "content_type": "application/wasm",
                "source": path_to_url(tmp_path / "helper.wasm"),
                "digest": sha(b"helper"),
            },
            "export": None,
        },
    }


def test_missing_dependency_file(tmp_path: Path) -> None:
    extra = '[component.hello.dependencies]\n"a:b/c" = { path = "nope.wasm" }\n'
    error = lock_error(app_dir(tmp_path, extra=extra))
    assert error.path == 'component.hello.dependencies."a:b/c".path'
    assert '"nope.wasm"' in error.message


def test_registry_dependency_not_supported(tmp_path: Path) -> None:
    extra = '[component.hello.dependencies]\n"a:b/c" = ">=1.0"\n'
    with pytest.raises(NotSupportedError, match="registry"):
        load_app(app_dir(tmp_path, extra=extra))
