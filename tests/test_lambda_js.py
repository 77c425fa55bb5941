"""AWS Lambda JavaScript and TypeScript handlers, unchanged, on wasmlet: `wasmlet port aws-sam`
of a SAM project with Node.js runtimes written for these tests (tests/fixtures/lambda/
js-sam-app: an ES-module CRUD API, an echo of the event and context, a CommonJS
callback-style function with binary bodies, a TypeScript function with an npm dependency),
built with the real toolchain (`npm install` of the Spin JS SDK's build tools, esbuild, j2w /
componentize-js), served by `wasmlet up`, asked over HTTP; `wasmlet new lambda-js` built and
served; and the builds that must fail, with the JavaScript error.

The SAM app is built in guests/build/lambda-js-sam-app, kept between runs: the first run
builds its four components (minutes), later runs check that a warm build does nothing. The
template app and the failing builds run at the same time (module fixture).
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.env import FIXTURES, ROOT, require_tool
from support.server import Server, run_cli
from test_lambda import (
    BUILD_TIMEOUT,
    Build,
    _echo,
    check_http_api_echo,
    check_rest_echo,
    check_template_app,
    check_warm_build,
)

SAM_APP = FIXTURES / "lambda" / "js-sam-app"
BUILT = ROOT / "guests" / "build" / "lambda-js-sam-app"
pytestmark = pytest.mark.timeout(2 * BUILD_TIMEOUT)

# Projects whose build must fail: a module that throws while loading, a handler that is not
# exported, a Node.js built-in the component does not have.
BROKEN = {
    "throws": (
        "app.mjs",
        "const url = process.env.NEEDED;\nif (!url) throw new Error("
        "'NEEDED is not set');\nexport const handler = async () => 'ok';\n",
    ),
    "unexported": ("app.js", "exports.handle = async () => 'ok';\n"),
    "builtin": (
        "app.mjs",
        "import { readFileSync } from 'node:fs';\n"
        "export const handler = async () => readFileSync('/etc/hostname', 'utf8');\n",
    ),
}


@dataclass
class Apps:
    port_output: str
    sam_build: Build
    template_build: Build
    broken: dict[str, Build]
    servers: dict[str, Server]


def _broken_project(root: Path, name: str) -> Path:
    file, code = BROKEN[name]
    app = root / name
    (app / "src").mkdir(parents=True)
    (app / "src" / file).write_text(code)
    (app / "template.yaml").write_text(
        "Transform: AWS::Serverless-2016-10-31\nResources:\n  Fn:\n"
        "    Type: AWS::Serverless::Function\n    Properties:\n      Runtime: nodejs22.x\n"
        "      CodeUri: src/\n      Handler: app.handler\n      Events:\n"
        "        Get:\n          Type: HttpApi\n"
    )
    r = run_cli("port", "aws-sam", cwd=app)
    assert r.returncode == 0, r.stderr
    return app


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Apps]:
    require_tool("node", "nodejs npm")
    require_tool("npm", "nodejs npm")
    root = tmp_path_factory.mktemp("lambda-js")
    shutil.copytree(SAM_APP, BUILT, dirs_exist_ok=True)
    port = run_cli("port", "aws-sam", cwd=BUILT)
    assert port.returncode == 0, port.stderr
    sam = Build.start(BUILT)
    new = run_cli("new", "lambda-js", "hello-js", cwd=root)
    assert new.returncode == 0, new.stderr
    template = Build.start(root / "hello-js")
    broken = {name: Build.start(_broken_project(root, name)) for name in BROKEN}
    apps = Apps(port.stdout, sam, template, broken, {})
    try:
        yield apps
    finally:
        for build in (sam, template, *broken.values()):
            if build.proc.poll() is None:
                build.proc.kill()
        for server in apps.servers.values():
            if server.alive():
                server.stop()


@pytest.fixture
def sam(apps: Apps, cache_dir: Path) -> Server:
    if "sam" not in apps.servers:
        apps.servers["sam"] = apps.sam_build.serve(cache_dir)
    return apps.servers["sam"]


# --- the port and the build -----------------------------------------------------------------


def test_port_reports_what_it_ported_and_what_not(apps: Apps) -> None:
    out = apps.port_output
    assert "build directory .wasmlet/lambda-js/): 4 function(s) in 4 component(s)" in out
    assert "items-function: GET,DELETE /items/:id  <- ItemsFunction (app.lambdaHandler" in out
    assert "typed-function: GET /typed/:name  <- TypedFunction (src/handler.main" in out
    assert "legacy-function: ANY /legacy/...  <- LegacyFunction (index.handler; rest event" in out
    for expected in (
        "Resources.RubyFunction.Properties.Runtime: 'ruby3.3' is not supported: wasmlet ports "
        "python3.x and nodejs18.x or later functions",
        "Resources.LegacyFunction.Properties.Events.Queue: SQS event: not an HTTP event",
        "`wasmlet up --request-timeout 20 --max-instance-memory 512Mi`",
    ):
        assert expected in out
    entry = (BUILT / ".wasmlet/lambda-js/legacy-function/entry.mjs").read_text()
    assert 'load: () => require("../../../legacy/index.js")' in entry
    spin = (BUILT / "spin.toml").read_text()
    assert 'command = "node lib/build.mjs typed-function ../../typed"' in spin


def test_the_sam_app_builds_and_a_warm_build_does_nothing(apps: Apps) -> None:
    build = apps.sam_build.wait()
    assert build.proc.returncode == 0, build.output[-6000:]
    print(f"JS SAM app build: {build.seconds:.1f}s")
    check_warm_build(BUILT, BUILT / ".wasmlet/lambda-js/items-function/app.wasm", "aws-sam")
    # the TypeScript function's own dependency, installed in its directory (not dev ones)
    assert (BUILT / "typed/node_modules/ms/package.json").is_file()
    assert not (BUILT / "typed/node_modules/typescript").exists()


# --- an ES module: CRUD on an HTTP API ---------------------------------------------------------


def test_items_crud(sam: Server) -> None:
    with sam.client() as c:
        first = c.get("/items?limit=2")  # from seed.json, imported with the module
        assert first.headers["content-type"] == "application/json"
        assert first.json() == {
            "items": [
                {"id": "1", "name": "kettle", "price": 25},
                {"id": "2", "name": "teapot", "price": 18},
            ],
            "table": "ItemsTable",  # !Ref ItemsTable, read when the module loaded
        }
        assert len(c.get("/items").json()["items"]) == 3
        created = c.post("/items", json={"name": "cup", "price": 3.5})
        assert created.status_code == 201
        item = created.json()
        assert uuid.UUID(item["id"]).version == 4  # crypto.randomUUID()
        assert created.headers["location"] == f"/items/{item['id']}"
        assert c.get("/items/2").json() == {"id": "2", "name": "teapot", "price": 18}
        missing = c.get("/items/99")
        assert missing.status_code == 404 and missing.json() == {"message": "no item 99"}
        deleted = c.delete("/items/1")
        assert deleted.status_code == 204 and deleted.headers["x-deleted-by"] == "ItemsFunction"
        patched = c.patch("/items/1")  # no PATCH route: API Gateway's answer
        assert patched.status_code == 404 and patched.json() == {"message": "Not Found"}
    assert sam.logged("[items-function] GET /items /items on table ItemsTable")


# --- the echo: events, context, environment, cookies, binary, errors ---------------------------


def test_http_api_event_context_and_response(sam: Server) -> None:
    data, second = check_http_api_echo(sam)  # the event: the Python adapter's
    event, context, env = data["event"], data["context"], data["env"]
    assert context["functionName"] == "echo-js"
    assert context["memoryLimitInMB"] == "512"
    assert context["functionVersion"] == "$LATEST"
    assert context["invokedFunctionArn"] == "arn:aws:lambda:us-east-1:000000000000:function:echo-js"
    assert context["logGroupName"] == "/aws/lambda/echo-js"
    assert context["callbackWaitsForEmptyEventLoop"] is True
    assert 15_000 < context["remainingMs"] <= 20_000  # Timeout: 20
    assert uuid.UUID(context["awsRequestId"]).version == 4
    assert context["awsRequestId"] != second["context"]["awsRequestId"]
    assert event["requestContext"]["requestId"] == context["awsRequestId"]
    assert env == {
        "GREETING": "hello",
        "ECHO_MODE": "full",
        "AWS_LAMBDA_FUNCTION_NAME": "echo-js",
        "AWS_REGION": "us-east-1",
    }
    assert data["loadedAt"] == second["loadedAt"]  # module code ran once, at build time


def test_rest_and_payload_1_events(sam: Server) -> None:
    check_rest_echo(sam)
    v1 = _echo(sam.request("POST", "/v1/echo", json={"a": 1}))["event"]
    assert v1["version"] == "1.0" and json.loads(v1["body"]) == {"a": 1}


def test_binary_both_ways_timers_and_randomness(sam: Server) -> None:
    r = sam.get("/echo/x?binary=1")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.content == bytes(range(256))  # Buffer.toString('base64'), isBase64Encoded
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    event = _echo(
        sam.request("POST", "/echo/up", content=png, headers={"content-type": "image/png"})
    )["event"]
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == png
    slept = _echo(sam.get("/echo/x?sleep=50"))
    assert slept["before"] - slept["after"] >= 45  # setTimeout, and the deadline moves
    one, two = _echo(sam.get("/echo/x?random")), _echo(sam.get("/echo/x?random"))
    assert one["uuid"] != two["uuid"] and one["random"] != two["random"]  # not the snapshot's


def test_errors_answer_as_the_gateway_and_log_lambdas_error(sam: Server) -> None:
    r = sam.get("/echo/x?fail=1")
    assert r.status_code == 500 and r.json() == {"message": "Internal Server Error"}
    assert sam.logged("echo failed on purpose")
    line = next(x for x in sam.output if "Invoke Error" in x and "echo failed on purpose" in x)
    error = json.loads(line[line.index("{") :])
    assert error["errorType"] == "Error"
    assert error["errorMessage"] == "echo failed on purpose"
    assert error["stack"][0] == "Error: echo failed on purpose"
    assert any("echo/echo.mjs" in frame for frame in error["stack"][1:])
    malformed = sam.get("/echo/x?malformed=1")
    assert malformed.status_code == 500
    assert sam.logged("malformed Lambda proxy response: statusCode")
    plain = sam.get("/echo/x?plain=1")  # 2.0 infers a response from any JSON value
    assert plain.status_code == 200 and plain.json() == {"plain": True, "items": [1, 2, 3]}
    assert plain.headers["content-type"] == "application/json"
    assert sam.get("/echo/fine").status_code == 200  # and the next request is served


def test_function_url(sam: Server) -> None:
    event = _echo(sam.get("/some/where?q=1"))["event"]
    assert event["routeKey"] == "$default" and event["rawPath"] == "/some/where"
    assert event["requestContext"]["accountId"] == "anonymous"


# --- CommonJS, callbacks, REST; TypeScript -----------------------------------------------------


def test_commonjs_callback_handler(sam: Server) -> None:
    with sam.client() as c:
        r = c.get("/legacy/x?a=1&a=2")
        assert r.json() == {
            "what": "x",
            "method": "GET",
            "query": {"a": ["1", "2"]},
            "stage": "Prod",
            "path": "/legacy/x",
            "contextPath": "/Prod/legacy/x",
        }
        assert r.headers.get_list("set-cookie") == ["a=1", "b=2"]
        pixel = c.get("/legacy/pixel.png")
        assert pixel.headers["content-type"] == "image/png"
        assert pixel.content.startswith(b"\x89PNG\r\n\x1a\n") and len(pixel.content) == 70
        data = bytes(range(200))
        turned = c.post("/legacy/upload", content=data)
        assert turned.content == data[::-1] and turned.headers["x-length"] == "200"
        assert c.get("/legacy/later").text == "later"  # a callback after a timer
        assert c.get("/legacy/succeed").text == "succeeded"  # context.succeed
        failed = c.get("/legacy/error")  # callback(error) on REST: 502
        assert failed.status_code == 502 and failed.json() == {"message": "Internal server error"}
    assert sam.logged('"errorMessage":"legacy failed on purpose"')


def test_typescript_handler_with_an_npm_dependency(sam: Server) -> None:
    body = _echo(sam.get("/typed/ann?ttl=2d"))
    assert body["greeting"] == "hello, ann"
    assert body["name"] == "TypedFunction"
    assert body["ttl"] == 2 * 24 * 3600 * 1000  # ms('2d')
    assert uuid.UUID(body["requestId"])


# --- wasmlet new lambda-js ---------------------------------------------------------------------


def test_template_builds_and_serves(apps: Apps, cache_dir: Path) -> None:
    build = apps.template_build.wait()
    assert build.proc.returncode == 0, build.output[-6000:]
    print(f"template build: {build.seconds:.1f}s")
    assert "Building component hello-js with `node lib/build.mjs hello-js ../..`" in build.output
    apps.servers["template"] = build.serve(cache_dir)
    check_template_app(apps.servers["template"], "hello-js")
    listed = run_cli("new", "--list")
    assert "lambda-js" in listed.stdout


# --- what the build refuses ----------------------------------------------------------------------


def _failed(apps: Apps, name: str) -> str:
    build = apps.broken[name].wait()
    assert build.proc.returncode == 1, build.output[-4000:]
    assert "build command for component 'fn' failed" in build.output
    return build.output


def test_a_module_that_throws_while_loading_fails_the_build(apps: Apps) -> None:
    out = _failed(apps, "throws")
    assert (
        "error: component fn: the handlers could not be loaded (Lambda's init phase, at build "
        "time): "
    ) in out
    assert (
        "Runtime.ImportModuleError: loading the module of app.handler (function Fn) threw "
        "Error: NEEDED is not set"
    ) in out


def test_a_handler_that_is_not_exported_fails_the_build(apps: Apps) -> None:
    out = _failed(apps, "unexported")
    assert "Runtime.HandlerNotFound: app.handler is undefined or not exported (function Fn)" in out


def test_a_node_builtin_module_fails_the_build_named(apps: Apps) -> None:
    out = _failed(apps, "builtin")
    assert 'Node.js built-in module "node:fs" is not supported' in out
    assert "src/app.mjs:1:" in out  # esbuild names the file and line of the import
    assert "error: component fn: bundling the handlers failed" in out


def test_fixture_handlers_are_unchanged() -> None:
    """The ported app runs the fixture's files as they are: the port writes none of them."""
    for path in SAM_APP.rglob("*"):
        if path.is_file():
            copy = BUILT / path.relative_to(SAM_APP)
            digest = hashlib.sha256(copy.read_bytes()).hexdigest()
            assert digest == hashlib.sha256(path.read_bytes()).hexdigest(), path
