"""Azure Functions apps, unchanged, on wasmlet: `wasmlet port azure-functions` of three apps
written for these tests in the style of Microsoft's samples (tests/fixtures/azure: a Python
v1 app with an echo of the request and an in-memory CRUD API, a Python v2 function_app.py, a
JavaScript v4 app), built with the real toolchains (componentize-py with the real
azure-functions library; esbuild and j2w with the real @azure/functions package), served by
`wasmlet up` and asked over HTTP; `wasmlet new azure-python` and `azure-js` built and
served; and builds that fail with the Python or JavaScript error of an app that cannot load.

The ported apps are built in guests/build/azure-*, kept between runs like the tools cache
(a first run takes minutes: componentize-py, pip, npm). All builds run at the same time.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from support.env import FIXTURES, ROOT, TOOLS_CACHE, path_without, require_tool
from support.server import Server, run_cli, start_server

BUILT = ROOT / "guests" / "build"
APPS = ("v1-app", "v2-app", "js-app")
BUILD_TIMEOUT = 1800.0
ENV = {"WASMLET_CACHE_DIR": str(TOOLS_CACHE), "PATH": path_without("componentize-py")}
pytestmark = pytest.mark.timeout(2 * BUILD_TIMEOUT)


def _build(app: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wasmlet.cli", "build"],
        cwd=app,
        env={**os.environ, **ENV},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=BUILD_TIMEOUT,
    )


@dataclass
class Apps:
    dirs: dict[str, Path]
    ports: dict[str, str]
    builds: dict[str, Future[subprocess.CompletedProcess[str]]]
    cache_dir: Path
    servers: dict[str, Server] = field(default_factory=dict)

    def server(self, name: str) -> Server:
        if name not in self.servers:
            build = self.builds[name].result()
            assert build.returncode == 0, build.stdout[-6000:]
            self.servers[name] = start_server(self.dirs[name], cache_dir=self.cache_dir,
                                              timeout=600)  # fmt: skip
        return self.servers[name]


def _broken(root: Path, runtime: str, files: dict[str, str]) -> Path:
    app = root / f"broken-{runtime}"
    for name, text in {"host.json": '{"version": "2.0"}', **files}.items():
        (app / name).parent.mkdir(parents=True, exist_ok=True)
        (app / name).write_text(text)
    settings = {"Values": {"FUNCTIONS_WORKER_RUNTIME": runtime}}
    (app / "local.settings.json").write_text(json.dumps(settings))
    assert run_cli("port", "azure-functions", str(app)).returncode == 0
    return app


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Iterator[Apps]:
    require_tool("node", "nodejs npm")
    root = tmp_path_factory.mktemp("azure")
    dirs: dict[str, Path] = {}
    ports: dict[str, str] = {}
    for name in APPS:
        dirs[name] = BUILT / f"azure-{name}"
        shutil.copytree(FIXTURES / "azure" / name, dirs[name], dirs_exist_ok=True)
        r = run_cli("port", "azure-functions", str(dirs[name]))
        assert r.returncode == 0, r.stderr
        ports[name] = r.stdout
    for template in ("azure-python", "azure-js"):
        r = run_cli("new", template, f"hello-{template}", cwd=root)
        assert r.returncode == 0, r.stderr
        ports[template] = r.stdout
        dirs[template] = root / f"hello-{template}"
    dirs["broken-python"] = _broken(
        root,
        "python",
        {
            "function_app.py": "import azure.functions as func\nimport requests\n\n"
            "app = func.FunctionApp()\n\n\n@app.route(route='fetch')\ndef fetch(req):\n"
            "    return requests.get('https://example.com').text\n"
        },
    )
    dirs["broken-node"] = _broken(
        root,
        "node",
        {
            "package.json": json.dumps(
                {"main": "index.js", "dependencies": {"@azure/functions": "4.16.5"}}
            ),
            "index.js": "const { app } = require('@azure/functions');\n"
            "app.http('x', { handler: () => ({}) });\nthrow new Error('no settings file');\n",
        },
    )
    with ThreadPoolExecutor(len(dirs)) as pool:
        builds = {name: pool.submit(_build, path) for name, path in dirs.items()}
        result = Apps(dirs, ports, builds, cache_dir)
        try:
            yield result
        finally:
            for server in result.servers.values():
                if server.alive():
                    server.stop()


def _json(response: httpx.Response) -> dict[str, object]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return json.loads(response.text)  # type: ignore[no-any-return]


# --- Python, v1 model ------------------------------------------------------------------------


def test_v1_echo(apps: Apps) -> None:
    server = apps.server("v1-app")
    r = server.get("/api/echo/bob/a%20b/c?x=1&x=2&y=&z=3", headers=[("X-Rep", "1"), ("X-Rep", "2")])
    data = _json(r)
    assert r.headers["x-echo"] == "yes"
    assert data["method"] == "GET"
    assert data["url"] == f"{server.url}/api/echo/bob/a%20b/c?x=1&x=2&y=&z=3"
    assert data["params"] == {"x": "1,2", "z": "3"}  # as the host: joined, empty dropped
    assert data["route_params"] == {"name": "bob", "rest": "a b/c"}
    assert data["headers"] == {"x-rep": "1,2"}
    assert data["greeting"] == "hello" and data["store"] == "inventory"
    assert data["function_name"] == "Echo"
    assert uuid.UUID(str(data["invocation_id"])).version == 4
    posted = _json(server.request("POST", "/api/echo/ann/x", json={"a": [1, 2]}))
    assert posted["json"] == {"a": [1, 2]} and posted["content_type"] == "application/json"
    assert server.request("PUT", "/api/echo/ann/x").status_code == 404  # not its method
    assert server.get("/api/echo/ann").status_code == 200  # the catch-all may be empty


def test_v1_items_crud(apps: Apps) -> None:
    with apps.server("v1-app").client() as c:
        listed = _json(c.get("/api/items"))
        assert listed["store"] == "inventory"
        assert [i["id"] for i in listed["items"]] == ["1", "2", "3"]  # type: ignore[index]
        assert len(_json(c.get("/api/items?limit=2"))["items"]) == 2  # type: ignore[arg-type]
        assert _json(c.get("/api/items/2")) == {"id": "2", "name": "teapot", "price": 18.0}
        missing = c.get("/api/items/99")
        assert missing.status_code == 404 and missing.json() == {"error": "no item 99"}
        created = c.post("/api/items", json={"name": "cup"})
        assert created.status_code == 201
        assert created.json() == {"id": "4", "name": "cup"}
        assert created.headers["location"] == "/api/items/4"
        assert c.post("/api/items", content=b"nope").status_code == 400
        assert c.put("/api/items/3", json={"price": 7}).json()["price"] == 7
        assert c.delete("/api/items/1").status_code == 204
        assert c.delete("/api/items/99").status_code == 404
        # no PATCH, and {id:int} does not match "abc": no function, Azure's 404
        for method, path in (("PATCH", "/api/items/1"), ("GET", "/api/items/abc")):
            refused = c.request(method, path)
            assert refused.status_code == 404 and refused.content == b""


def test_v1_keys_errors_and_unported(apps: Apps) -> None:
    server = apps.server("v1-app")
    assert server.get("/api/Secret").status_code == 401  # authLevel function, no keys
    assert server.request("POST", "/api/Enqueue").status_code == 404  # not ported
    failed = server.get("/api/echo/x/y?fail=1")
    assert failed.status_code == 500 and failed.content == b""
    assert server.logged("Executed 'Functions.Echo' (Failed, Id=")
    assert server.logged("Exception: RuntimeError: echo failed on purpose")
    assert server.get("/api/echo/x/y").status_code == 200  # the next one is served
    out = apps.ports["v1-app"]
    assert "GET,POST,PUT,DELETE /api/items /api/items/:id  <- Items" in out
    assert "Nightly/function.json: bindings[0].type: timerTrigger" in out


# --- Python, v2 model ------------------------------------------------------------------------


def test_v2_functions(apps: Apps) -> None:
    with apps.server("v2-app").client() as c:
        assert c.get("/api/hello?name=ann").text.startswith("hey, ann. This HTTP triggered")
        assert c.post("/api/hello", json={"name": "bo"}).text.startswith("hey, bo.")
        hello = c.get("/api/hello")
        assert hello.headers["content-type"] == "text/plain; charset=utf-8"
        assert c.delete("/api/hello").status_code == 404
        product = _json(c.get("/api/products/tools/42?tag=a&tag=b"))
        assert product["category"] == "tools" and product["id"] == "42"
        assert product["tags"] == "a,b" and product["function"] == "products"
        assert _json(c.get("/api/products/tools"))["id"] is None  # {id:int?}
        assert c.get("/api/products/123").status_code == 404  # {category:alpha}
        cookies = c.post("/api/cookies", content=bytes(range(10)))
        assert cookies.status_code == 201
        assert cookies.content == bytes(range(10))[::-1]
        assert cookies.headers["content-type"] == "application/octet-stream"
        assert cookies.headers["x-custom"] == "v2"
        assert sorted(cookies.headers.get_list("set-cookie")) == [
            "session=abc123; HttpOnly; Path=/",
            "theme=dark",
        ]
        assert c.get("/api/keyed").status_code == 401
        assert c.post("/api/enqueue").status_code == 404  # a queue output: not served
        assert c.get("/api/fail").status_code == 500
    server = apps.server("v2-app")
    assert server.logged("Exception: ValueError: failed on purpose")
    assert server.logged("function enqueue is not served") or "enqueue" in apps.ports["v2-app"]


# --- JavaScript, v4 model --------------------------------------------------------------------


def test_js_functions(apps: Apps) -> None:
    server = apps.server("js-app")
    with server.client() as c:
        hello = c.get("/v4/hello?name=ann")
        assert hello.status_code == 200 and hello.text == "Hello, ann!"
        assert c.post("/v4/hello", content="bo").text == "Hello, bo!"
        r = c.get("/v4/echo/bob/a%20b/c?x=1&x=2&y=&tag=a&tag=b", headers={"X-One": "1"})
        echo = _json(r)
        assert r.headers["x-echo"] == "yes"
        assert echo["query"] == {"x": "1,2", "tag": "a,b"}
        assert echo["tags"] == ["a,b"]  # the host joins repeated keys before the library
        assert echo["params"] == {"name": "bob", "rest": "a b/c"}
        assert echo["headers"] == {"x-one": "1"}
        assert echo["greeting"] == "hi" and echo["functionName"] == "echo"
        assert uuid.UUID(str(echo["invocationId"]))
        assert c.post("/v4/echo/a/b").status_code == 404  # app.get: GET only
        created = c.post("/v4/items", json={"name": "cup"})
        assert created.status_code == 201 and created.json() == {"id": "3", "name": "cup"}
        assert created.headers["location"] == "/v4/items/3"
        assert created.headers.get_list("set-cookie") == ["last=3; Path=/; HttpOnly", "theme=dark"]
        assert _json(c.get("/v4/items/2")) == {"id": "2", "name": "teapot"}
        assert c.get("/v4/items/abc").status_code == 404
        assert c.patch("/v4/items/1").status_code == 404
        assert c.delete("/v4/items/2").status_code == 204
        assert c.get("/v4/secret").status_code == 401
        assert c.get("/v4/echo/x/y?fail=1").status_code == 500
    assert server.logged("Executed 'Functions.echo' (Failed, Id=")
    assert server.logged("Exception: Error: echo failed on purpose")
    assert server.logged('Http function processed request for url "')


# --- the templates and failing builds --------------------------------------------------------


@pytest.mark.parametrize("template", ["azure-python", "azure-js"])
def test_template_builds_and_serves(apps: Apps, template: str) -> None:
    assert f"Ported Azure Functions app hello-{template}" in apps.ports[template]
    r = apps.server(template).get("/api/hello?name=you")
    assert r.status_code == 200, apps.server(template).log
    assert f"Hello, you. This is hello-{template}." in r.text or r.text == (
        f"Hello, you! This is hello-{template}."
    )


def test_a_warm_build_does_nothing(apps: Apps) -> None:
    for name in ("v1-app", "js-app"):
        assert apps.builds[name].result().returncode == 0
        again = _build(apps.dirs[name])
        assert again.returncode == 0, again.stdout
        assert "Nothing to build: every component is up to date" in again.stdout


def test_an_app_that_cannot_load_fails_the_build(apps: Apps) -> None:
    python = apps.builds["broken-python"].result()
    assert python.returncode == 1
    assert "FunctionLoadError: cannot load function_app.py: ModuleNotFoundError: No module " \
        "named 'requests'" in python.stdout  # fmt: skip
    node = apps.builds["broken-node"].result()
    assert node.returncode == 1, node.stdout
    assert "Error: no settings file" in node.stdout
    assert "j2w did not write broken-node/app.wasm" in node.stdout
