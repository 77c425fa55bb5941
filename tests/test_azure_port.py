"""`wasmlet port azure-functions` without builds: what it reads and writes, every input it
refuses (named with file, field and value), what it reports as not ported; Azure's route
templates as Spin routes and as the adapters match them (the Python adapter's routes.py on
the host; the JavaScript adapter's routes.js, Buffer and sha256 under Node.js); and
`wasmlet new`/`add` with the Azure templates. The ported apps built and served:
tests/test_azure.py."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pytest
from support.env import FIXTURES, ROOT
from support.server import run_cli

from wasmlet.port.azure import spin_routes
from wasmlet.port.azure_app import port_azure_functions, read, report
from wasmlet.port.cfn import PortError

AZURE = FIXTURES / "azure"
PY_LIB = ROOT / "src/wasmlet/templates/azure-python/content/dot-wasmlet/azure/lib/wasmlet_azure"
JS_LIB = ROOT / "src/wasmlet/templates/azure-js/content/dot-wasmlet/azure/lib"


def _load_routes() -> ModuleType:
    """The Python adapter's routes.py (standard library only), loaded by path: the package
    itself imports azure.functions, which only the component has."""
    spec = importlib.util.spec_from_file_location("azure_routes", PY_LIB / "routes.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _copy(name: str, tmp_path: Path) -> Path:
    app = tmp_path / name
    shutil.copytree(AZURE / name, app)
    return app


# --- what it reads and writes -----------------------------------------------------------------


def test_v1_app(tmp_path: Path) -> None:
    app_dir = _copy("v1-app", tmp_path)
    app = port_azure_functions(app_dir)
    assert [f.name for f in app.functions] == ["Echo", "Items", "Secret"]
    spin = tomllib.loads((app_dir / "spin.toml").read_text())
    routes = [t["route"] for t in spin["trigger"]["http"]]
    assert routes == ["/api/echo/:name/...", "/api/items", "/api/items/:id", "/api/Secret"]
    component = spin["component"]["v1-app"]
    assert component["environment"]["GREETING"] == "hello"
    assert component["environment"]["FUNCTIONS_WORKER_RUNTIME"] == "python"
    assert component["source"] == ".wasmlet/azure/v1-app/app.wasm"
    workdir = app_dir / ".wasmlet/azure"
    built = ("lib/wasmlet_azure/worker.py", "lib/wasmlet_lambda/runtime.py", "requirements.txt")
    for name in (*built, "lib/wasmlet_lambda/deps.py", "v1-app/wasmlet_entry.py"):
        assert (workdir / name).is_file(), name
    text = report(app)
    assert "Enqueue/function.json: bindings[1].type: queue binding 'msg'" in text
    assert "Nightly/function.json: bindings[0].type: timerTrigger of function Nightly" in text
    assert "authLevel 'function' of function Secret: wasmlet has no function keys" in text
    # porting again changes nothing (the build keeps its state)
    entry = workdir / "v1-app/wasmlet_entry.py"
    before = entry.stat().st_mtime_ns
    port_azure_functions(app_dir)
    assert entry.stat().st_mtime_ns == before


def test_v2_app_read_from_its_decorators(tmp_path: Path) -> None:
    app = read(_copy("v2-app", tmp_path))
    found = {f.name: (f.route, f.methods, f.auth) for f in app.functions}
    assert found == {
        "hello": ("hello", ("GET", "POST"), "anonymous"),
        "products": ("products/{category:alpha}/{id:int?}", ("GET",), "anonymous"),
        "Cookies": ("cookies", ("POST",), "anonymous"),
        "fail": ("fail", (), "anonymous"),
        "keyed": ("keyed", (), "function"),
    }
    notes = "\n".join(map(str, app.notes))
    assert "function_app.py:69: @queue_output (line 68) of function enqueue: not supported" in notes
    assert "function_app.py:75: @timer_trigger of function tick: not an HTTP trigger" in notes


def test_js_v4_app(tmp_path: Path) -> None:
    app_dir = _copy("js-app", tmp_path)
    app = port_azure_functions(app_dir, without_auth=True)
    found = {f.name: (f.route, f.methods, f.auth) for f in app.functions}
    assert found == {
        "echo": ("echo/{name}/{*rest}", ("GET",), "anonymous"),
        "secret": ("secret", ("GET",), "function"),
        "hello": ("hello", ("GET", "POST"), "anonymous"),
        "items": ("items/{id:int?}", ("GET", "POST", "DELETE"), "anonymous"),
    }
    notes = "\n".join(map(str, app.notes))
    assert "src/functions/echo.js:38: app.timer('nightly'): not an HTTP trigger" in notes
    assert "secret: served WITHOUT any key check (--without-auth)" in notes
    entry = (app_dir / ".wasmlet/azure/js-app/entry.js").read_text()
    assert 'import "../../../src/functions/hello.js";' in entry
    assert '"withoutAuth": true' in entry
    spin = tomllib.loads((app_dir / "spin.toml").read_text())
    assert spin["component"]["js-app"]["build"]["command"] == "node build.mjs js-app"
    routes = [t["route"] for t in spin["trigger"]["http"]]
    assert routes[:2] == ["/v4/echo/:name/...", "/v4/secret"]


def test_a_route_known_only_at_build_time_is_served_by_the_catch_all(tmp_path: Path) -> None:
    app_dir = _app(tmp_path, "python")
    (app_dir / "function_app.py").write_text(
        "import azure.functions as func\nROUTE = 'computed'\n"
        "app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)\n\n"
        "@app.route(route=ROUTE)\ndef f(req):\n    return 'x'\n"
    )
    app = port_azure_functions(app_dir)
    assert app.functions[0].route is None
    spin = tomllib.loads((app_dir / "spin.toml").read_text())
    assert [t["route"] for t in spin["trigger"]["http"]] == ["/api/..."]


# --- routes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prefix", "template", "routes"),
    [
        ("api", "items/{id}", ["/api/items/:id"]),
        ("api", "items/{id:int:min(1)}/x", ["/api/items/:id/x"]),
        ("api", "files/{*path}", ["/api/files/..."]),
        ("api", "items/{id?}", ["/api/items", "/api/items/:id"]),
        ("", "{name=home}", ["/", "/:name"]),
        ("v1/x", "", ["/v1/x"]),
        ("api", None, ["/api/..."]),
    ],
)
def test_spin_routes(prefix: str, template: str | None, routes: list[str]) -> None:
    assert spin_routes(prefix, template, "here") == routes


def test_the_adapters_route_as_azure_does() -> None:
    routes = _load_routes()
    item = routes.parse("items/{id:int}")
    assert routes.match(item, "/items/42") == {"id": "42"}
    assert routes.match(item, "/Items/42") == {"id": "42"}  # literals ignore case
    assert routes.match(item, "/items/abc") is None
    assert routes.match(item, "/items/42/more") is None
    rest = routes.parse("files/{*path}")
    assert routes.match(rest, "/files/a%20b/c") == {"path": "a b/c"}
    assert routes.match(rest, "/files") == {}
    optional = routes.parse("users/{name:alpha?}")
    assert routes.match(optional, "/users") == {}
    assert routes.match(optional, "/users/ann") == {"name": "ann"}
    assert routes.match(routes.parse("x/{y=7}"), "/x") == {"y": "7"}
    assert routes.match(routes.parse("r/{n:range(1,5)}"), "/r/6") is None
    assert routes.match(routes.parse("g/{id:guid}"), "/g/" + "0" * 32) == {"id": "0" * 32}
    # the most specific template first: literal, constrained, plain, catch-all
    templates = ["{*all}", "items/{id}", "items/{id:int}", "items/new"]
    ordered = sorted(templates, key=lambda t: routes.precedence(routes.parse(t)))
    assert ordered == ["items/new", "items/{id:int}", "items/{id}", "{*all}"]
    with pytest.raises(routes.RouteError, match="constraint 'nope' is not supported"):
        routes.parse("a/{b:nope}")


JS_CHECK = """
import { parse, match, compare } from '%(lib)s/routes.js';
import { Buffer } from '%(lib)s/buffer.js';
import { createHash } from '%(lib)s/node/crypto.js';
import { format } from '%(lib)s/node/util.js';
import node from 'node:crypto';
const out = {
  item: match(parse('items/{id:int}'), '/Items/42'),
  bad: match(parse('items/{id:int}'), '/items/x'),
  rest: match(parse('files/{*path}'), '/files/a%%20b/c'),
  order: ['{*all}', 'items/{id}', 'items/new'].map((t) => [t, parse(t)])
      .sort((a, b) => compare(a[1], b[1])).map((p) => p[0]),
  b64: Buffer.from('aGVsbG8gd29ybGQ=', 'base64').toString(),
  hex: Buffer.from('hi').toString('hex') + ' ' + Buffer.from('hi').toString('base64'),
  sha: ['', 'abc', 'x'.repeat(100)].every((s) =>
      createHash('sha256').update(s).digest('hex') ===
      node.createHash('sha256').update(s).digest('hex')),
  format: format('%%s has %%d items', 'cart', 3, {a: 1}),
};
console.log(JSON.stringify(out));
"""


def test_the_js_adapter_helpers_under_node(tmp_path: Path) -> None:
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    script = tmp_path / "check.mjs"
    script.write_text(JS_CHECK % {"lib": JS_LIB.as_posix()})
    r = subprocess.run(["node", str(script)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {
        "item": {"id": "42"},
        "bad": None,
        "rest": {"path": "a b/c"},
        "order": ["items/new", "items/{id}", "{*all}"],
        "b64": "hello world",
        "hex": "6869 aGk=",
        "sha": True,
        "format": 'cart has 3 items {"a":1}',
    }


# --- what it refuses -------------------------------------------------------------------------

FUNCTION_JSON = {
    "bindings": [
        {"authLevel": "anonymous", "type": "httpTrigger", "direction": "in", "name": "req"},
        {"type": "http", "direction": "out", "name": "$return"},
    ]
}


def _app(tmp_path: Path, runtime: str | None, host: object = None) -> Path:
    app = tmp_path / "app"
    app.mkdir(exist_ok=True)
    (app / "host.json").write_text(json.dumps(host if host is not None else {"version": "2.0"}))
    if runtime is not None:
        values = {"FUNCTIONS_WORKER_RUNTIME": runtime}
        (app / "local.settings.json").write_text(json.dumps({"Values": values}))
    return app


def _v1(tmp_path: Path, function: object, script: str = "def main(req):\n    pass\n") -> Path:
    app = _app(tmp_path, "python")
    (app / "Fn").mkdir()
    (app / "Fn" / "function.json").write_text(json.dumps(function))
    (app / "Fn" / "__init__.py").write_text(script)
    return app


def _with(binding: dict[str, object], index: int = 0) -> dict[str, object]:
    bindings = [dict(b) for b in FUNCTION_JSON["bindings"]]
    bindings[index].update(binding)
    return {"bindings": bindings}


@pytest.mark.parametrize(
    ("runtime", "message"),
    [
        ("dotnet-isolated", 'Values.FUNCTIONS_WORKER_RUNTIME: "dotnet-isolated": .NET (C#, F#)'),
        ("java", 'Values.FUNCTIONS_WORKER_RUNTIME: "java": Java is not supported'),
        ("powershell", '"powershell": PowerShell is not supported'),
        ("custom", '"custom": custom handlers is not supported'),
        ("cobol", '"cobol" is not a worker runtime'),
    ],
)
def test_other_languages_are_refused(tmp_path: Path, runtime: str, message: str) -> None:
    with pytest.raises(PortError, match="wasmlet ports Python apps") as error:
        read(_app(tmp_path, runtime))
    assert str(error.value).startswith("local.settings.json: Values.FUNCTIONS_WORKER_RUNTIME: ")
    assert message in str(error.value)


def test_language_inferred_from_the_project_files(tmp_path: Path) -> None:
    app = _app(tmp_path, None)
    (app / "Api.csproj").write_text("<Project/>")
    with pytest.raises(PortError, match=r"Api.csproj: a .NET \(C#, F#\) app is not supported"):
        read(app)


@pytest.mark.parametrize(
    ("host", "message"),
    [
        ({"version": "1.0"}, 'host.json: version: "1.0": wasmlet ports apps of Functions'),
        ({"version": "2.0", "customHandler": {}}, "host.json: customHandler: custom handlers"),
        ({"version": "2.0", "extensions": {"http": {"routePrefix": 5}}},
         "host.json: extensions.http.routePrefix: 5: expected a path"),
    ],
)  # fmt: skip
def test_host_json_refused(tmp_path: Path, host: object, message: str) -> None:
    with pytest.raises(PortError, match=message):
        read(_app(tmp_path, "python", host))


def test_json_errors_and_settings(tmp_path: Path) -> None:
    app = _app(tmp_path, "python")
    (app / "host.json").write_text('{"version": "2.0",}')
    with pytest.raises(
        PortError, match=re.escape("host.json: line 1 column 19: Expecting property name")
    ):
        read(app)
    (app / "host.json").write_text('{"version": "2.0"}')
    (app / "local.settings.json").write_text('{"IsEncrypted": true, "Values": {}}')
    with pytest.raises(PortError, match="IsEncrypted: true: the settings are encrypted"):
        read(app)
    (app / "local.settings.json").write_text('{"Values": {"A": {"b": 1}}}')
    with pytest.raises(PortError, match=r'Values.A: \{"b": 1\}: app settings are strings'):
        read(app)
    with pytest.raises(PortError, match=re.escape("no host.json: not an Azure Functions app")):
        read(tmp_path)


@pytest.mark.parametrize(
    ("function", "message"),
    [
        ({"bindings": []}, "Fn/function.json: bindings: expected a list of bindings"),
        ({"bindings": [{"type": "http", "name": "$return"}]}, "expected one trigger, found 0"),
        (_with({"methods": ["get", "fetch"]}),
         "Fn/function.json: bindings[0].methods: 'FETCH': expected an HTTP method"),
        (_with({"authLevel": "user"}), 'bindings[0].authLevel: "user": expected anonymous'),
        (_with({"route": "a/{b:nope}"}), "route constraint 'nope' is not supported"),
        (_with({"route": "a/{b}.{c}"}), "segment '{b}.{c}' is not supported"),
        (_with({"route": "a/{*b}/c"}), "{*b} must be the last segment"),
        ({**FUNCTION_JSON, "scriptFile": "missing.py"},
         'Fn/function.json: scriptFile: "missing.py": no such file in Fn/'),
        ({**FUNCTION_JSON, "entryPoint": "not valid"}, 'entryPoint: "not valid": expected'),
        (_with({"type": "queueTrigger"}), "nothing to port: no HTTP function:\n  Fn/function.json: "
         "bindings[0].type: queueTrigger of function Fn: not an HTTP trigger"),
        (_with({"type": "blob", "direction": "in"}, 1),
         "nothing to port: no HTTP function:\n  Fn/function.json: bindings[1].type: blob binding "
         "'$return' of function Fn: not supported"),
    ],
)  # fmt: skip
def test_v1_function_json_refused(tmp_path: Path, function: object, message: str) -> None:
    with pytest.raises(PortError) as error:
        read(_v1(tmp_path, function))
    assert message in str(error.value)


def test_v2_errors(tmp_path: Path) -> None:
    app = _app(tmp_path, "python")
    (app / "function_app.py").write_text("app = func.FunctionApp(\n")
    with pytest.raises(PortError, match=r"function_app.py:1: '\(' was never closed"):
        read(app)
    (app / "function_app.py").write_text(
        "import azure.functions as func\napp = func.FunctionApp()\n\n"
        "@app.route(route='x', methods=['GET', 'FETCH'])\ndef f(req):\n    return 'x'\n"
    )
    with pytest.raises(
        PortError, match=re.escape("function_app.py:5: methods: 'FETCH': expected an HTTP")
    ):
        read(app)


@pytest.mark.parametrize(
    ("package", "message"),
    [
        ({"main": "index.js"}, "package.json: dependencies: no @azure/functions: wasmlet ports"),
        ({"main": "index.js", "dependencies": {"@azure/functions": "^3.5.0"}},
         'dependencies.@azure/functions: "^3.5.0": wasmlet ports the v4 model'),
        ({"main": "dist/src/functions/*.js", "dependencies": {"@azure/functions": "^4.0.0"}},
         'package.json: main: "dist/src/functions/*.js": matches no file (a TypeScript app'),
        ({"main": "src/index.ts", "dependencies": {"@azure/functions": "^4.0.0"}},
         "src/index.ts is not JavaScript"),
    ],
)  # fmt: skip
def test_js_refused(tmp_path: Path, package: object, message: str) -> None:
    app = _app(tmp_path, "node")
    (app / "src").mkdir()
    (app / "src" / "index.ts").write_text("export {}\n")
    (app / "package.json").write_text(json.dumps(package))
    with pytest.raises(PortError) as error:
        read(app)
    assert message in str(error.value)


def test_a_spin_toml_not_written_by_the_port_is_kept(tmp_path: Path) -> None:
    app = _copy("v1-app", tmp_path)
    (app / "spin.toml").write_text("spin_manifest_version = 2\n")
    r = run_cli("port", "azure-functions", str(app))
    assert r.returncode == 1
    assert "exists and was not written by wasmlet port; move it away or pass --force" in r.stderr
    assert run_cli("port", "azure-functions", str(app), "--force").returncode == 0


# --- the templates ---------------------------------------------------------------------------


def test_templates_are_listed_and_not_added(tmp_path: Path) -> None:
    listed = run_cli("new", "--list").stdout
    assert "azure-python" in listed and "azure-js" in listed
    assert run_cli("new", "http-py", "app", cwd=tmp_path).returncode == 0
    r = run_cli("add", "azure-python", "fn", cwd=tmp_path / "app")
    assert r.returncode == 1
    assert "template azure-python is a whole serverless app" in r.stderr
    r = run_cli("new", "azure-js", "other", "--route", "/x/...", cwd=tmp_path)
    assert r.returncode == 1
    assert "--route /x/...: template azure-js takes its routes from its functions" in r.stderr
