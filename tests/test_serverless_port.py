"""`wasmlet port serverless`: a Serverless Framework service mixing Node.js and Python
functions (tests/fixtures/lambda/serverless-app, written for these tests) ported, built with
the real toolchains (componentize-py for Python, npm + esbuild + j2w for Node.js), served by
`wasmlet up` and asked over HTTP; its variables; and every input the port refuses or leaves
out, named with the file, the place and the value (no builds).

The service is built in guests/build/lambda-serverless-app, kept between runs like the other
Lambda apps: the first run builds its three components (minutes), later runs reuse them.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.env import FIXTURES, ROOT, require_tool
from support.server import Server, run_cli, start_server
from test_lambda import BUILD_TIMEOUT, Build

from wasmlet.port.cfn import PortError
from wasmlet.port.run import port_serverless

SERVICE = FIXTURES / "lambda" / "serverless-app"
BUILT = ROOT / "guests" / "build" / "lambda-serverless-app"


# --- what the port reads, without builds -------------------------------------------------------


def _service(tmp_path: Path, yml: str, files: dict[str, str] | None = None) -> Path:
    code = {"handler.js": "exports.hello = async () => 'hi';\n", "app.py": "def h(e, c): pass\n"}
    for name, text in {**code, **(files or {})}.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    path = tmp_path / "serverless.yml"
    path.write_text(yml)
    return path


HEAD = "service: svc\nprovider:\n  name: aws\n  runtime: nodejs20.x\n"


def _fn(events: str, extra: str = "", name: str = "hello", handler: str = "handler.hello") -> str:
    return f"  {name}:\n    handler: {handler}\n{extra}    events:\n{events}"


@pytest.mark.parametrize(
    ("yml", "message"),
    [
        (
            "service: svc\nprovider:\n  name: google\n",
            "serverless.yml: provider.name: 'google' is not supported: wasmlet ports aws",
        ),
        ("provider:\n  name: aws\n", "serverless.yml: service: missing"),
        (
            HEAD + "functions:\n" + _fn("      - graphql: {}\n"),
            "serverless.yml: functions.hello.events[0].graphql: 'graphql' is not an event type "
            "of the Serverless Framework (HTTP: httpApi, http, alb; others: ",
        ),
        (
            HEAD + "functions:\n" + _fn("      - httpApi: 'FETCH /x'\n"),
            "serverless.yml: functions.hello.events[0].httpApi.method: 'FETCH': expected an HTTP "
            "method (DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT or any) (or *)",
        ),
        (
            HEAD + "functions:\n" + _fn("      - httpApi: 'GET x'\n"),
            "functions.hello.events[0].httpApi.path: 'x': expected a path starting with /",
        ),
        (
            HEAD + "functions:\n" + _fn("      - http: 'GET a/{rest+}/b'\n"),
            "functions.hello.events[0].http.path: '/a/{rest+}/b': segment '{rest+}' is not a",
        ),
        (
            HEAD + "functions:\n" + _fn("      - httpApi: '*'\n", handler="missing.hello"),
            "serverless.yml: functions.hello.handler: 'missing.hello': no missing.js, .mjs, .cjs "
            "or .ts",
        ),
        (
            HEAD + "functions:\n" + _fn("      - httpApi: '*'\n", handler="handler"),
            "functions.hello.handler: 'handler' is not file.export",
        ),
        (
            "service: svc\nprovider:\n  name: aws\nfunctions:\n" + _fn("      - httpApi: '*'\n"),
            "serverless.yml: functions.hello.runtime: missing, and no provider.runtime",
        ),
        (
            HEAD + "functions:\n" + _fn("      - httpApi: '*'\n", "    runtime: ruby3.3\n"),
            "nothing to port:\n  serverless.yml: functions.hello.runtime: 'ruby3.3' is not "
            "supported: wasmlet ports python3.x and nodejs18.x or later functions",
        ),
        (
            HEAD.replace("nodejs20.x", "provided.al2")
            + "functions:\n"
            + _fn("      - httpApi: '*'\n"),
            "serverless.yml: provider.runtime (for functions.hello): 'provided.al2' is not "
            "supported",
        ),
        (
            HEAD + "functions:\n" + _fn("      - sqs: arn:q\n      - schedule: rate(1 day)\n"),
            "nothing to port:\n  serverless.yml: functions.hello.events[0].sqs: sqs event: not "
            "an HTTP event; wasmlet serves HTTP events only\n  serverless.yml: "
            "functions.hello.events[1].schedule: schedule event: not an HTTP event",
        ),
        (
            HEAD + "functions:\n" + _fn("      - httpApi: '*'\n", "    memorySize: 64\n"),
            "functions.hello.memorySize: 64: expected a whole number from 128 to 10240",
        ),
        (
            HEAD.replace("nodejs20.x", "${ssm:/runtime}")
            + "functions:\n"
            + _fn("      - httpApi: '*'\n"),
            "serverless.yml: functions.hello.runtime: missing, and no provider.runtime",
        ),
        (
            HEAD + "  stage: ${env:WASMLET_TEST_NO_SUCH_VARIABLE}\nfunctions: {}\n",
            "serverless.yml: provider.stage: ${env:WASMLET_TEST_NO_SUCH_VARIABLE} cannot be "
            "resolved: WASMLET_TEST_NO_SUCH_VARIABLE is not set in the environment of `wasmlet "
            "port`",
        ),
        (
            HEAD
            + "custom:\n  a: ${self:custom.a}\n  b: ${self:custom.a}\nfunctions:\n"
            + _fn("      - httpApi: '*'\n", "    environment:\n      X: ${self:custom.b}\n"),
            "serverless.yml: ${self:custom.a}: refers to itself",
        ),
        (
            HEAD + "functions:\n" + _fn("      - alb:\n          listenerArn: x\n"),
            "functions.hello.events[0].alb.conditions.path: missing",
        ),
        (
            HEAD
            + "functions:\n"
            + _fn("      - httpApi: 'GET /x'\n")
            + _fn("      - httpApi: 'POST /x'\n", "    runtime: python3.12\n", "py", "app.h"),
            "serverless.yml: functions.hello (nodejs20.x) and functions.py (python3.12) serve "
            "the same path (/x)",
        ),
        ("service: [1\n", "serverless.yml: not valid YAML (line 2, column 1)"),
    ],
)
def test_port_errors_name_file_place_and_value(tmp_path: Path, yml: str, message: str) -> None:
    config = _service(tmp_path, yml)
    with pytest.raises(PortError) as error:
        port_serverless(config)
    assert message in str(error.value)
    assert not (tmp_path / "spin.toml").exists()


def test_variables_resolve_or_are_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WASMLET_TEST_COLOR", "blue")
    yml = HEAD + (
        "  stage: ${opt:stage, 'dev'}\n"
        "  memorySize: ${self:custom.memory.${sls:stage}}\n"
        "  environment:\n"
        "    COLOR: ${env:WASMLET_TEST_COLOR}\n"
        "    FALLBACK: ${env:WASMLET_TEST_NOPE, ${self:custom.word}}\n"
        "    QUOTED: ${env:WASMLET_TEST_NOPE, 'a, b'}\n"
        "    NUMBER: ${self:custom.number}\n"
        "    MIXED: ${self:service}-${sls:stage}-${aws:region}-${aws:accountId}\n"
        "    PARAM: ${param:size}\n"
        "    FROM_FILE: ${file(./config.${sls:stage}.json):table.name}\n"
        "    SECRET: ${ssm:/svc/secret}\n"
        "    OUTPUT: ${cf:other-stack.Url}\n"
        "    TABLE: !Ref Table\n"
        "    API: !Ref HttpApi\n"
        "    FLAG: ${strToBool(true)}\n"
        "params:\n  default:\n    size: 3\n  prod:\n    size: 9\n"
        "custom:\n  word: fallback\n  number: 42\n  memory:\n    dev: 256\n    prod: 1024\n"
        "resources:\n  Resources:\n    Table:\n      Type: AWS::DynamoDB::Table\n"
        "functions:\n" + _fn("      - httpApi: '*'\n", "    name: custom-name\n")
    )
    files = {
        "config.dev.json": json.dumps({"table": {"name": "dev-table"}}),
        "config.prod.json": json.dumps({"table": {"name": "prod-table"}}),
    }
    result = port_serverless(_service(tmp_path, yml, files), region="eu-west-1")
    function = result.project.functions[0]
    assert function.environment == {
        "COLOR": "blue",
        "FALLBACK": "fallback",
        "QUOTED": "a, b",
        "NUMBER": "42",
        "MIXED": "svc-dev-eu-west-1-000000000000",
        "PARAM": "3",
        "FROM_FILE": "dev-table",
        "TABLE": "Table",
        "API": "HttpApi",
        "FLAG": "true",
    }
    assert function.memory_mb == 256 and function.timeout == 6  # the framework's default
    assert function.name == "custom-name"
    notes = "\n".join(map(str, result.project.notes))
    assert (
        "serverless.yml: provider.environment.SECRET: ${ssm:/svc/secret} is not resolved: SSM "
        "parameters need an AWS account; it is not set"
    ) in notes
    assert "provider.environment.OUTPUT: ${cf:other-stack.Url} is not resolved" in notes
    assert "Ref HttpApi is replaced by 'HttpApi': a resource of the stack" in notes
    prod = port_serverless(tmp_path / "serverless.yml", stage="prod").project.functions[0]
    assert prod.environment["PARAM"] == "9" and prod.environment["FROM_FILE"] == "prod-table"
    assert prod.memory_mb == 1024 and prod.environment["MIXED"].startswith("svc-prod-us-east-1")


def test_events_and_what_is_left_out(tmp_path: Path) -> None:
    yml = HEAD + (
        "  stage: staging\n"
        "  httpApi:\n    payload: '1.0'\n"
        "plugins:\n  - serverless-esbuild\n  - serverless-domain-manager\n"
        "layers:\n  shared:\n    path: layer\n"
        "functions:\n"
        + _fn(
            "      - httpApi: 'GET /a/{id}'\n"
            "      - httpApi:\n          method: '*'\n          path: /b/{proxy+}\n"
            "      - http: 'any rest/{id}'\n"
            "      - http:\n          path: private\n          method: get\n"
            "          private: true\n"
            "      - http:\n          path: cors\n          method: get\n          cors: true\n"
            "      - alb:\n          listenerArn: arn\n          priority: 1\n"
            "          multiValueHeaders: true\n"
            "          conditions:\n            path: [/alb, /albs/*, /x/*/y]\n"
            "            method: [GET, POST]\n            host: [example.com]\n",
            "    url: true\n    layers:\n      - arn:aws:lambda:layer\n",
        )
    )
    result = port_serverless(_service(tmp_path, yml))
    events = [(e.kind, e.path, e.method, e.stage) for e in result.project.functions[0].events]
    assert events == [
        ("http-api-1.0", "/a/{id}", "GET", "$default"),
        ("http-api-1.0", "/b/{proxy+}", None, "$default"),
        ("rest", "/rest/{id}", None, "staging"),
        ("rest", "/cors", "GET", "staging"),
        ("alb-multi-value", "/alb", "GET", "$default"),
        ("alb-multi-value", "/alb", "POST", "$default"),
        ("alb-multi-value", "/albs/{proxy+}", "GET", "$default"),
        ("alb-multi-value", "/albs/{proxy+}", "POST", "$default"),
        ("function-url", "", None, "$default"),
    ]
    notes = "\n".join(map(str, result.project.notes))
    for expected in (
        "plugins: plugin serverless-esbuild: wasmlet bundles with esbuild itself",
        "plugins: plugin serverless-domain-manager: plugins are not run by wasmlet",
        "serverless.yml: layers: layers: not ported",
        "functions.hello.layers: layers: not ported",
        "functions.hello.events[3].http: the route requires an API key (private: true), not "
        "served: wasmlet does not enforce API Gateway auth",
        "functions.hello.events[4].http.cors: CORS: wasmlet adds no CORS headers",
        "functions.hello.events[5].alb.conditions: conditions host: not checked by wasmlet",
        "functions.hello.events[5].alb.conditions.path: path pattern '/x/*/y': only exact "
        "paths, /prefix/* and * are ported",
    ):
        assert expected in notes
    routes = {r.route for c in result.components for r in c.routes}
    # the function URL takes /..., which no other route has (docs/serverless.md)
    assert routes == {"/a/:id", "/b/...", "/rest/:id", "/cors", "/alb", "/albs/...", "/..."}
    spin = (tmp_path / "spin.toml").read_text()
    assert spin.startswith("# Written by `wasmlet port serverless serverless.yml`")
    private = port_serverless(tmp_path / "serverless.yml", without_auth=True, force=True)
    assert any(e.path == "/private" for e in private.project.functions[0].events)


def test_the_command_line(tmp_path: Path) -> None:
    _service(tmp_path, HEAD + "functions:\n" + _fn("      - httpApi: 'GET /x'\n"))
    r = run_cli("port", "serverless", "--stage", "qa", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "hello: GET /x  <- hello (handler.hello; http-api event)" in r.stdout
    spin = (tmp_path / "spin.toml").read_text()
    assert 'AWS_LAMBDA_FUNCTION_NAME = "svc-qa-hello"' in spin
    r = run_cli("port", "serverless", cwd=tmp_path / ".wasmlet")
    assert r.returncode == 1 and "no serverless.yml, serverless.yaml or serverless.json" in r.stderr
    (tmp_path / "ts").mkdir()
    (tmp_path / "ts" / "serverless.ts").write_text("export default {}\n")
    r = run_cli("port", "serverless", cwd=tmp_path / "ts")
    assert r.returncode == 1
    assert "serverless.ts: a configuration in code is not supported" in r.stderr


# --- the fixture service, built and served ------------------------------------------------------


@pytest.fixture(scope="module")
def service(cache_dir: Path) -> Iterator[tuple[str, Server]]:
    require_tool("node", "nodejs npm")
    shutil.copytree(SERVICE, BUILT, dirs_exist_ok=True)
    port = run_cli("port", "serverless", cwd=BUILT, env={"USERS_LOG_LEVEL": "debug"})
    assert port.returncode == 0, port.stderr
    build = Build.start(BUILT).wait()
    assert build.proc.returncode == 0, build.output[-6000:]
    print(f"serverless app build: {build.seconds:.1f}s")
    server = start_server(BUILT, "--request-timeout", "10", cache_dir=cache_dir, timeout=600)
    try:
        yield port.stdout, server
    finally:
        server.stop()


SLOW = pytest.mark.timeout(2 * BUILD_TIMEOUT)  # the first run builds (minutes)


@SLOW
def test_the_service_port_report(service: tuple[str, Server]) -> None:
    out = service[0]
    assert "3 function(s) in 3 component(s)" in out
    assert "build directory .wasmlet/lambda-js/ and .wasmlet/lambda/" in out
    for expected in (
        "users: GET,POST /users  <- users (src/users.handler; http-api event)",
        "hello: GET /hello/:name  <- hello (handler.hello; rest event, stage dev)",
        "status: ANY /...  <- status (status.handler; http-api event)",
        "functions.users.events[3].httpApi: the route requires authorizer jwtAuth, not served",
        "functions.worker: the function has no HTTP event",
        "functions.reports.runtime: 'java21' is not supported",
        "provider.environment.API_KEY: ${ssm:/users-api/api-key} is not resolved",
        "plugin serverless-python-requirements: wasmlet installs requirements.txt itself",
        "resources: UsersTable (AWS::DynamoDB::Table): wasmlet creates no AWS resources",
        "`wasmlet up --request-timeout 10 --max-instance-memory 512Mi`",
    ):
        assert expected in out


@SLOW
def test_node_functions_serve_their_routes(service: tuple[str, Server]) -> None:
    server = service[1]
    with server.client() as c:
        listed = c.get("/users?page=2")
        assert listed.status_code == 200, server.log[-3000:]
        assert listed.json() == {
            "users": [{"id": "3", "name": "linus"}],  # PAGE_SIZE: ${param:pageSize}
            "table": "users-api-dev-users",
            "logLevel": "debug",  # ${env:USERS_LOG_LEVEL, 'info'}, set when porting
            "apiKey": None,  # ${ssm:...}: not resolved, not set
            "function": "users-api-dev-users",
            "memory": "512",
        }
        assert c.get("/users/2").json() == {"id": "2", "name": "grace"}
        assert c.get("/users/9").status_code == 404
        assert c.post("/users", json={"name": "barbara"}).json() == {"id": "4", "name": "barbara"}
        # DELETE needs the JWT authorizer: not served, so API Gateway's 404
        assert c.delete("/users/1").status_code == 404
        status = c.get("/anything/else")
        assert status.json() == {
            "status": "ok",
            "routeKey": "$default",
            "path": "/anything/else",
            "stage": "$default",
        }


@SLOW
def test_the_python_function_serves_its_routes(service: tuple[str, Server]) -> None:
    server = service[1]
    r = server.get("/hello/ada")
    assert r.status_code == 200, server.log[-3000:]
    assert r.json() == {
        "message": "hello from dev, ada",  # ${self:custom.greeting.${sls:stage}}
        "stage": "dev",
        "path": "/hello/ada",
        "table": "users-api-dev-users",
        "function": "users-api-dev-hello",
        "memory": "256",
    }
    posted = server.request("POST", "/hello", json={"name": "bob"})
    assert posted.json()["message"] == "hello from dev, bob"
    assert server.request("PUT", "/hello").status_code == 403  # REST: no such method
