"""AWS Lambda Python handlers, unchanged, on wasmlet: `wasmlet port aws-sam` of a SAM project
written for these tests (tests/fixtures/lambda/sam-app: a CRUD API, an echo of the event and
context, a Powertools APIGatewayHttpResolver app, a Starlette app behind mangum), built with
the real toolchains (componentize-py 0.18.0 and spin-sdk, installed by `wasmlet build` into
the tests' tools cache; the functions' requirements with pip), served by `wasmlet up`, asked
over HTTP; `wasmlet new lambda-python` built and served; and the errors of every input the
port or the build refuses.

The SAM app is built in guests/build/lambda-sam-app, kept between runs like the tools cache:
the first run builds its four components (minutes, componentize-py); later runs check that a
warm build of the unchanged project does nothing. The template app and the failing build
run at the same time as the SAM build (module fixture).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.env import FIXTURES, ROOT, TOOLS_CACHE, path_without
from support.server import Server, run_cli, start_server

SAM_APP = FIXTURES / "lambda" / "sam-app"
BUILT = ROOT / "guests" / "build" / "lambda-sam-app"
DEPS = ROOT / "src/wasmlet/templates/lambda-python/content/dot-wasmlet/lambda/lib/wasmlet_lambda"
BUILD_TIMEOUT = 1800.0
ENV = {"WASMLET_CACHE_DIR": str(TOOLS_CACHE), "PATH": path_without("componentize-py")}
# A test may wait for the first (cold) builds: componentize-py, pip, minutes on this machine.
pytestmark = pytest.mark.timeout(2 * BUILD_TIMEOUT)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "wasmlet.cli", *args]


@dataclass
class Build:
    """A `wasmlet build` in the background (and the time it took)."""

    app: Path
    proc: subprocess.Popen[str]
    started: float
    output: str = ""
    seconds: float = 0.0
    thread: threading.Thread | None = None

    @classmethod
    def start(cls, app: Path, *args: str) -> Build:
        proc = subprocess.Popen(
            _cli("build", *args),
            cwd=app,
            env={**os.environ, **ENV},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        build = cls(app, proc, time.monotonic())
        build.thread = threading.Thread(target=build._wait, daemon=True)
        build.thread.start()
        return build

    def _wait(self) -> None:
        try:
            self.output, _ = self.proc.communicate(timeout=BUILD_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.output = self.proc.communicate()[0] + f"\n(no end in {BUILD_TIMEOUT}s)"
        self.seconds = time.monotonic() - self.started

    def wait(self) -> Build:
        assert self.thread is not None
        self.thread.join(BUILD_TIMEOUT + 60)
        return self

    def serve(self, cache_dir: Path) -> Server:
        """`wasmlet up` of the built app (the build must have succeeded)."""
        self.wait()
        assert self.proc.returncode == 0, self.output[-6000:]
        return start_server(self.app, "--request-timeout", "20", cache_dir=cache_dir, timeout=600)


@dataclass
class Apps:
    port_output: str
    port_seconds: float
    sam_build: Build
    template_build: Build
    broken_build: Build
    template_app: Path
    servers: dict[str, Server]


def _sync_fixture() -> None:
    """The fixture project into BUILT, whose build state survives between runs."""
    shutil.copytree(SAM_APP, BUILT, dirs_exist_ok=True)


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Iterator[Apps]:
    root = tmp_path_factory.mktemp("lambda")
    _sync_fixture()
    started = time.monotonic()
    port = run_cli("port", "aws-sam", cwd=BUILT)
    port_seconds = time.monotonic() - started
    assert port.returncode == 0, port.stderr
    sam = Build.start(BUILT)

    new = run_cli("new", "lambda-python", "hello-lambda", cwd=root)
    assert new.returncode == 0, new.stderr
    template = Build.start(root / "hello-lambda")

    broken = root / "broken"
    (broken / "src").mkdir(parents=True)
    (broken / "src" / "app.py").write_text("import requests\n\ndef handler(e, c):\n    return 1\n")
    (broken / "template.yaml").write_text(
        "Transform: AWS::Serverless-2016-10-31\nResources:\n  Fetch:\n"
        "    Type: AWS::Serverless::Function\n    Properties:\n      Runtime: python3.12\n"
        "      CodeUri: src/\n      Handler: app.handler\n      Events:\n"
        "        Get:\n          Type: HttpApi\n"
    )
    assert run_cli("port", "aws-sam", cwd=broken).returncode == 0
    failing = Build.start(broken)

    servers: dict[str, Server] = {}
    result = Apps(port.stdout, port_seconds, sam, template, failing, root / "hello-lambda", servers)
    try:
        yield result
    finally:
        for build in (sam, template, failing):
            if build.proc.poll() is None:
                build.proc.kill()
        for server in servers.values():
            if server.alive():
                server.stop()


def _server(apps: Apps, name: str, cache_dir: Path) -> Server:
    """The SAM app's (`sam`) or the template app's (`template`) `wasmlet up`, started once."""
    if name not in apps.servers:
        build = apps.sam_build if name == "sam" else apps.template_build
        apps.servers[name] = build.serve(cache_dir)
    return apps.servers[name]


@pytest.fixture
def sam(apps: Apps, cache_dir: Path) -> Server:
    return _server(apps, "sam", cache_dir)


def _echo(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    return json.loads(response.text)  # type: ignore[no-any-return]


# --- the port ---------------------------------------------------------------------------------


def test_port_reports_what_it_ported_and_what_not(apps: Apps) -> None:
    out = apps.port_output
    print(f"port took {apps.port_seconds:.2f}s")
    assert "5 function(s) in 4 component(s)" in out
    assert "items-function: DELETE /items/:id  <- DeleteItemFunction" in out
    assert (
        "echo-function: GET /rest/echo/:name  <- EchoFunction (app.handler; rest event, stage Prod)"
        in out
    )
    for expected in (
        "template.yaml: Resources.ReportsFunction.Properties.Runtime: 'java21' is not supported",
        "Resources.EchoFunction.Properties.Events.Nightly: Schedule event: not an HTTP event",
        "Events.Secret: the route requires authorizer MyJwt, not served",
        "Resources.EchoFunction.Properties.Layers: layers",
        "TABLE_NAME: !Ref ItemsTable (AWS::DynamoDB::Table) is replaced by its logical id",
        "ItemsTable (AWS::DynamoDB::Table): wasmlet creates no AWS resources",
        "`wasmlet up --request-timeout 20 --max-instance-memory 512Mi`",
    ):
        assert expected in out
    spin = (BUILT / "spin.toml").read_text()
    assert spin.startswith("# Written by `wasmlet port aws-sam template.yaml`")
    assert (BUILT / ".wasmlet/lambda/lib/wasmlet_lambda/runtime.py").is_file()


def test_the_sam_app_builds(apps: Apps) -> None:
    build = apps.sam_build.wait()
    assert build.proc.returncode == 0, build.output[-6000:]
    print(f"SAM app build: {build.seconds:.1f}s (port {apps.port_seconds:.2f}s)")
    for cid in ("items-function", "echo-function", "tools-function", "web-function"):
        assert (BUILT / ".wasmlet/lambda" / cid / "app.wasm").is_file()


def check_warm_build(app: Path, wasm: Path, *port: str) -> None:
    """Porting a built app again and building it changes nothing."""
    before = wasm.stat().st_mtime_ns
    again = run_cli("port", *port, cwd=app)  # porting again changes nothing either
    assert again.returncode == 0, again.stderr
    started = time.monotonic()
    r = run_cli("build", cwd=app, env=ENV)
    elapsed = time.monotonic() - started
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Nothing to build: every component is up to date" in r.stdout
    assert wasm.stat().st_mtime_ns == before
    print(f"warm build: {elapsed:.2f}s")
    assert elapsed < 10


def test_a_warm_build_does_nothing(apps: Apps) -> None:
    assert apps.sam_build.wait().proc.returncode == 0
    check_warm_build(BUILT, BUILT / ".wasmlet/lambda/items-function/app.wasm", "aws-sam")


# --- the CRUD API (HTTP API 2.0), two functions on one path -----------------------------------


def test_items_crud(sam: Server) -> None:
    with sam.client() as c:
        listed = c.get("/items")
        assert listed.status_code == 200
        assert listed.headers["content-type"] == "application/json"
        body = listed.json()
        assert [i["id"] for i in body["items"]] == ["1", "2", "3"]
        assert body["table"] == "ItemsTable"  # !Ref ItemsTable, read at import time
        assert [i["id"] for i in c.get("/items?limit=2").json()["items"]] == ["1", "2"]
        created = c.post("/items", json={"name": "cup", "price": 3.5})
        assert created.status_code == 201
        item = created.json()
        assert created.headers["location"] == f"/items/{item['id']}"
        assert item["name"] == "cup" and item["price"] == "3.5"  # a Decimal, json default=str
        assert c.get("/items/2").json() == {"id": "2", "name": "teapot", "price": "18.0"}
        assert c.put("/items/3", json={"price": 5}).json()["price"] == 5
        missing = c.get("/items/99")
        assert missing.status_code == 404 and missing.json() == {"message": "no item 99"}
        # DELETE is another function (async, its own module `app`) in the same component
        deleted = c.delete("/items/1")
        assert deleted.status_code == 204, deleted.text
        assert deleted.headers["x-deleted-by"] == "DeleteItemFunction"
        assert c.delete("/items/99").status_code == 404
        # no PATCH on /items/{id}: API Gateway's answer
        patched = c.patch("/items/1")
        assert patched.status_code == 404 and patched.json() == {"message": "Not Found"}


# --- the echo: events, context, environment, cookies, binary, errors ----------------------------


def check_http_api_echo(sam: Server) -> tuple[dict[str, Any], dict[str, Any]]:
    """Ask the echo (of the Python or the JavaScript SAM app) at its HTTP API route and check
    the event and the response, which both adapters make the same; the echoed data of that
    request and of a second one."""
    with sam.client() as c:
        r = c.get(
            "/echo/a%20b/c?x=1&x=2&y=",
            headers=[("Cookie", "c1=v1; c2=v2"), ("X-Rep", "one"), ("X-Rep", "two")],
        )
        second = _echo(c.get("/echo/again"))
    data = _echo(r)
    event = data["event"]
    assert event["version"] == "2.0"
    assert event["routeKey"] == "ANY /echo/{proxy+}"
    assert event["rawPath"] == "/echo/a%20b/c"
    assert event["rawQueryString"] == "x=1&x=2&y="
    assert event["queryStringParameters"] == {"x": "1,2", "y": ""}
    assert event["pathParameters"] == {"proxy": "a b/c"}
    assert event["cookies"] == ["c1=v1", "c2=v2"]
    assert event["headers"]["x-rep"] == "one,two"
    assert "cookie" not in event["headers"]
    assert event["requestContext"]["http"]["method"] == "GET"
    assert event["requestContext"]["http"]["sourceIp"] == "127.0.0.1"
    assert event["isBase64Encoded"] is False and "body" not in event
    assert r.headers.get_list("set-cookie") == ["session=abc123; Path=/; HttpOnly", "theme=dark"]
    assert r.headers.get_list("x-multi") == ["one", "two"]
    assert r.headers["x-echo"] == "yes"
    return data, second


def check_rest_echo(sam: Server) -> None:
    """The echo at its REST route (stage Prod), and a method the resource does not have."""
    r = sam.get("/rest/echo/bob%20x?tag=a&tag=b", headers=[("X-Rep", "1"), ("X-Rep", "2")])
    event = _echo(r)["event"]
    assert "version" not in event
    assert event["resource"] == "/rest/echo/{name}"
    assert event["path"] == "/rest/echo/bob%20x"
    assert event["httpMethod"] == "GET"
    assert event["pathParameters"] == {"name": "bob x"}
    assert event["requestContext"]["path"] == "/Prod/rest/echo/bob%20x"
    assert event["requestContext"]["stage"] == "Prod"
    assert event["multiValueQueryStringParameters"] == {"tag": ["a", "b"]}
    assert event["queryStringParameters"] == {"tag": "b"}
    assert event["multiValueHeaders"]["X-Rep"] == ["1", "2"]
    assert event["headers"]["X-Rep"] == "2"
    assert event["body"] is None and event["isBase64Encoded"] is False
    assert r.headers.get_list("set-cookie") == ["session=abc123; Path=/; HttpOnly", "theme=dark"]
    refused = sam.request("POST", "/rest/echo/bob")
    assert refused.status_code == 403
    assert refused.json() == {"message": "Missing Authentication Token"}


def test_http_api_event_context_and_response(sam: Server) -> None:
    data, second = check_http_api_echo(sam)
    event, context, env = data["event"], data["context"], data["env"]
    assert context["function_name"] == "echo-fn"
    assert context["memory_limit_in_mb"] == "512"
    assert context["function_version"] == "$LATEST"
    assert (
        context["invoked_function_arn"] == "arn:aws:lambda:us-east-1:000000000000:function:echo-fn"
    )
    assert context["log_group_name"] == "/aws/lambda/echo-fn"
    assert 15_000 < context["remaining_ms"] <= 20_000  # Timeout: 20
    assert uuid.UUID(context["aws_request_id"]).version == 4
    assert context["aws_request_id"] != second["context"]["aws_request_id"]
    assert event["requestContext"]["requestId"] == context["aws_request_id"]
    assert env == {
        "GREETING": "hello",
        "REGION_NOTE": "running in us-east-1",
        "ECHO_MODE": "full",
        "AWS_LAMBDA_FUNCTION_NAME": "echo-fn",
        "AWS_REGION": "us-east-1",
    }


def test_rest_event_with_a_stage(sam: Server) -> None:
    check_rest_echo(sam)


def test_http_api_payload_1(sam: Server) -> None:
    r = sam.request("POST", "/v1/echo", json={"a": 1})
    event = _echo(r)["event"]
    assert event["version"] == "1.0"
    assert event["httpMethod"] == "POST"
    assert json.loads(event["body"]) == {"a": 1}
    assert event["multiValueHeaders"]["content-type"] == ["application/json"]


def test_binary_both_ways(sam: Server) -> None:
    r = sam.get("/echo/x?binary=1")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.content == bytes(range(256))
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    event = _echo(
        sam.request("POST", "/echo/up", content=png, headers={"content-type": "image/png"})
    )["event"]
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == png
    text = _echo(
        sam.request("POST", "/echo/up", content="héllo", headers={"content-type": "text/plain"})
    )
    assert text["event"]["body"] == "héllo" and text["event"]["isBase64Encoded"] is False


def test_errors_answer_as_the_gateway_and_log_lambdas_error(sam: Server) -> None:
    r = sam.get("/echo/x?fail=1")
    assert r.status_code == 500
    assert r.json() == {"message": "Internal Server Error"}
    assert sam.logged('"errorType": "RuntimeError"')
    line = next(x for x in sam.output if '"errorMessage": "echo failed on purpose"' in x)
    error = json.loads(line[line.index("{") :])
    assert error["errorType"] == "RuntimeError"
    assert any("app.py" in frame for frame in error["stackTrace"])
    rest = sam.get("/rest/any/x?fail=1")
    assert rest.status_code == 502
    assert rest.json() == {"message": "Internal server error"}
    malformed = sam.get("/echo/x?malformed=1")
    assert malformed.status_code == 500
    assert sam.logged("malformed Lambda proxy response: statusCode")
    # 2.0 infers a response from any JSON value; REST wants statusCode
    plain = sam.get("/echo/x?plain=1")
    assert plain.status_code == 200 and plain.json() == {"plain": True, "items": [1, 2, 3]}
    assert plain.headers["content-type"] == "application/json"
    assert sam.get("/rest/any/x?plain=1").status_code == 502
    assert sam.get("/echo/fine").status_code == 200  # and the next request is served


def test_function_url_and_unserved_authorized_route(sam: Server) -> None:
    event = _echo(sam.get("/some/where?q=1"))["event"]
    assert event["routeKey"] == "$default"
    assert event["rawPath"] == "/some/where"
    assert event["requestContext"]["accountId"] == "anonymous"
    # GET /secret needs an authorizer: not served as its route, only by the catch-all URL
    assert _echo(sam.get("/secret"))["event"]["routeKey"] == "$default"


# --- frameworks ----------------------------------------------------------------------------------


def test_powertools_resolver_and_logger(sam: Server) -> None:
    r = sam.get("/tools/hello/ann?lang=fi")
    assert r.status_code == 200, r.text
    assert r.json() == {"message": "hello ann", "lang": "fi"}
    created = sam.request("POST", "/tools/items", json={"name": "pen"})
    assert created.status_code == 201
    assert created.json() == {"created": {"name": "pen"}}
    assert created.headers["location"] == "/tools/items/1"
    missing = sam.get("/tools/nothing")
    assert missing.status_code == 404
    assert sam.logged('"message":"saying hello"')
    line = next(x for x in sam.output if '"message":"saying hello"' in x)
    record = json.loads(line[line.index("{") :])
    assert record["function_name"] == "ToolsFunction"
    assert record["function_memory_size"] == "256"
    assert record["who"] == "ann"
    assert uuid.UUID(record["function_request_id"])


def test_powertools_rest_resolver(sam: Server) -> None:
    r = sam.get("/classic/hello/bo")
    assert r.status_code == 200, r.text
    assert r.json() == {"message": "hello bo", "stage": "Prod", "path": "/classic/hello/bo"}
    assert sam.get("/classic/nothing").status_code == 404


def test_starlette_behind_mangum(sam: Server) -> None:
    r = sam.get("/web/hello/zoe?tag=a&tag=b")
    assert r.status_code == 200, r.text
    assert r.json() == {"hello": "zoe", "tags": ["a", "b"], "started": True}
    assert r.headers["set-cookie"].startswith("visited=yes")
    data = bytes(range(200))
    reversed_ = sam.request("POST", "/web/reverse", content=data)
    assert reversed_.status_code == 200
    assert reversed_.content == data[::-1]


# --- wasmlet new lambda-python -------------------------------------------------------------------


def test_template_builds_and_serves(apps: Apps, cache_dir: Path) -> None:
    build = apps.template_build.wait()
    assert build.proc.returncode == 0, build.output[-6000:]
    print(f"template build: {build.seconds:.1f}s")
    check_template_app(_server(apps, "template", cache_dir), "hello-lambda")


def check_template_app(server: Server, name: str) -> None:
    """The app of a Lambda template (lambda-python, lambda-js), named `name`, answers."""
    r = server.get("/hello?name=you")
    assert r.status_code == 200, server.log
    body = r.json()
    assert body["message"] == f"Hello from {name}!"
    assert body["path"] == "/hello" and body["query"] == {"name": "you"}
    assert body["function"] == name
    assert uuid.UUID(body["requestId"])


def test_template_is_listed() -> None:
    r = run_cli("new", "--list")
    assert "lambda-python" in r.stdout


# --- what the build refuses ----------------------------------------------------------------------


def test_a_handler_that_cannot_be_imported_fails_the_build(apps: Apps) -> None:
    build = apps.broken_build.wait()
    assert build.proc.returncode == 1
    assert (
        "Runtime.ImportModuleError: Unable to import module 'app' of function Fetch" in build.output
    )
    assert "No module named 'requests'" in build.output
    assert "build command for component 'fetch' failed" in build.output


def test_the_ported_app_is_pushed_served_from_the_registry_and_scaffolded(
    apps: Apps, tmp_path: Path, cache_dir: Path
) -> None:
    """What `wasmlet port` and `wasmlet build` made is an app like any other: pushed to a
    registry (Debian's docker-registry), served from there by reference, and scaffolded."""
    from fixtures.oci.registry import start_registry
    from support.env import require_tool

    require_tool("/usr/bin/docker-registry", "docker-registry")
    apps.sam_build.wait()
    assert apps.sam_build.proc.returncode == 0, apps.sam_build.output[-6000:]
    registry = start_registry(tmp_path / "registry")
    env = {"WASMLET_CACHE_DIR": str(tmp_path / "cache"), "WASMLET_CONFIG_DIR": str(tmp_path)}
    try:
        ref = registry.ref("lambda/sam-app:v1")
        pushed = run_cli("registry", "push", "-k", ref, cwd=BUILT, env=env, timeout=600)
        assert pushed.returncode == 0, pushed.stderr
        server = start_server(
            ref, "-k", "--request-timeout", "20", env=env, cache_dir=cache_dir, timeout=600
        )
        try:
            data, _ = check_http_api_echo(server)
            assert data["context"]["function_name"] == "echo-fn"
        finally:
            server.stop()
        scaffold = run_cli("kube", "scaffold", "-f", ref)
        assert scaffold.returncode == 0, scaffold.stderr
        assert "kind: SpinApp" in scaffold.stdout and f"image: {ref}" in scaffold.stdout
    finally:
        registry.stop()
