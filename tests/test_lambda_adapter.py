"""wasmlet's Lambda adapter on the host: events against the shapes AWS documents, the mapping
of return values and failures, the context, and a whole invocation through `App` with real
handler modules. (The same code in a real component: tests/test_lambda.py.)"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from support.env import FIXTURES, ROOT

ADAPTER = (
    ROOT / "src/wasmlet/templates/lambda-python/content/dot-wasmlet/lambda/lib"
)  # the adapter's one copy: wasmlet port vendors it from the template
sys.path.insert(0, str(ADAPTER))
_writes = sys.dont_write_bytecode
sys.dont_write_bytecode = True  # no __pycache__ in the template: it would ship in the wheel

from wasmlet_lambda import App, Function, LambdaInitError, Route  # noqa: E402
from wasmlet_lambda.events import Request, Target, build_event, path_parameters  # noqa: E402
from wasmlet_lambda.responses import MalformedResult, failed, no_route, to_response  # noqa: E402

sys.dont_write_bytecode = _writes

EVENTS = FIXTURES / "lambda" / "events"
NOW = 1710270238.0

REQUEST = Request(
    method="GET",
    path="/items/42",
    query="tag=a&tag=b&q=tea%20pot",
    headers=(
        ("host", "api.example.com"),
        ("user-agent", "curl/8.5.0"),
        ("accept", "*/*"),
        ("content-type", "application/json"),
        ("cookie", "session=abc; theme=dark"),
    ),
    body=b'{"name": "kettle"}',
    source_ip="203.0.113.7",
)


def _event(kind: str, **target: Any) -> dict[str, Any]:
    fields = {
        "route_key": "GET /items/{id}" if kind == "http-api" else "$default",
        "resource": "/items/{id}",
        "path_parameters": {"id": "42"} if kind in ("http-api", "rest") else None,
        "stage": "Prod" if kind == "rest" else "$default",
    } | target
    return build_event(
        REQUEST,
        Target(kind, **fields),
        request_id="r-1",
        now=NOW,
        api_id="api1",
        region="eu-west-1",
    )


# Fields of AWS's example events the adapter does not produce, on purpose (docs/serverless.md).
LEFT_OUT = {
    "http-api": {
        "requestContext.authentication",
        "requestContext.authorizer",
        "stageVariables",
    },
    "rest": {"requestContext.authorizer", "requestContext.identity.clientCert"},
    "function-url": {"requestContext.authorizer"},
    "alb": set(),
    "alb-multi-value": set(),
}
FIXTURE = {
    "http-api": "http-api-2.0.json",
    "rest": "rest-1.0.json",
    "function-url": "function-url.json",
    "alb": "alb.json",
    "alb-multi-value": "alb-multi-value.json",
}


def _shape(value: Any, prefix: str = "") -> dict[str, str]:
    """Every field of a JSON object by its dotted path, with its JSON type (dict fields
    whose keys are data, like headers, stop at the dict)."""
    out: dict[str, str] = {}
    data_keys = (
        "headers", "multiValueHeaders", "queryStringParameters",
        "multiValueQueryStringParameters", "pathParameters", "stageVariables",
    )  # fmt: skip
    for key, item in value.items():
        path = f"{prefix}{key}"
        out[path] = type(item).__name__ if item is not None else "null"
        if isinstance(item, dict) and key not in data_keys:
            out |= _shape(item, path + ".")
    return out


@pytest.mark.parametrize("kind", sorted(FIXTURE))
def test_event_has_the_documented_fields(kind: str) -> None:
    documented = _shape(json.loads((EVENTS / FIXTURE[kind]).read_text()))
    ours = _shape(_event(kind))
    invented = set(ours) - set(documented)
    assert invented == set(), f"fields AWS does not send: {invented}"
    missing = {
        f
        for f in set(documented) - set(ours)
        if not any(f == p or f.startswith(p + ".") for p in LEFT_OUT[kind])
    }
    assert missing == set(), f"documented fields missing: {missing}"
    mismatched = {
        f: (documented[f], ours[f])
        for f in set(ours) & set(documented)
        if documented[f] != "null" and ours[f] != documented[f]
    }
    assert mismatched == {}


def test_http_api_event_values() -> None:
    event = _event("http-api")
    assert event["rawPath"] == "/items/42"
    assert event["rawQueryString"] == "tag=a&tag=b&q=tea%20pot"
    assert event["cookies"] == ["session=abc", "theme=dark"]
    assert "cookie" not in event["headers"]
    assert event["queryStringParameters"] == {"tag": "a,b", "q": "tea pot"}
    assert event["pathParameters"] == {"id": "42"}
    assert event["body"] == '{"name": "kettle"}' and event["isBase64Encoded"] is False
    assert event["headers"]["x-forwarded-for"] == "203.0.113.7"
    assert event["headers"]["x-forwarded-proto"] == "http"
    context = event["requestContext"]
    assert context["http"] == {
        "method": "GET",
        "path": "/items/42",
        "protocol": "HTTP/1.1",
        "sourceIp": "203.0.113.7",
        "userAgent": "curl/8.5.0",
    }
    assert context["time"] == "12/Mar/2024:19:03:58 +0000"
    assert context["timeEpoch"] == 1710270238000
    assert context["domainName"] == "api.example.com" and context["domainPrefix"] == "api"
    assert context["routeKey"] == event["routeKey"] == "GET /items/{id}"


def test_rest_event_values() -> None:
    event = _event("rest")
    assert "version" not in event
    assert event["path"] == "/items/42"  # no stage here ...
    assert event["requestContext"]["path"] == "/Prod/items/42"  # ... and here it is
    assert event["requestContext"]["stage"] == "Prod"
    assert event["queryStringParameters"] == {"tag": "b", "q": "tea pot"}
    assert event["multiValueQueryStringParameters"] == {"tag": ["a", "b"], "q": ["tea pot"]}
    assert event["headers"]["Cookie"] == "session=abc; theme=dark"
    assert event["multiValueHeaders"]["User-Agent"] == ["curl/8.5.0"]
    assert event["resource"] == event["requestContext"]["resourcePath"] == "/items/{id}"


def test_http_api_payload_1_and_named_stages() -> None:
    v1 = _event("http-api-1.0", stage="dev")
    assert v1["version"] == "1.0"
    assert v1["path"] == v1["requestContext"]["path"] == "/dev/items/42"  # HTTP API: in both
    v2 = _event("http-api", stage="dev")
    assert v2["rawPath"] == v2["requestContext"]["http"]["path"] == "/dev/items/42"


def test_alb_does_not_decode_the_query() -> None:
    assert _event("alb")["queryStringParameters"] == {"tag": "b", "q": "tea%20pot"}
    multi = _event("alb-multi-value")
    assert multi["multiValueQueryStringParameters"] == {"tag": ["a", "b"], "q": ["tea%20pot"]}
    assert multi["multiValueHeaders"]["cookie"] == ["session=abc; theme=dark"]


def test_binary_and_empty_bodies() -> None:
    binary = Request(
        "POST", "/up", "", (("content-type", "image/png"),), bytes(range(256)), "10.0.0.1"
    )
    target = Target("http-api", "POST /up", "/up", None)
    event = build_event(binary, target, request_id="r", now=NOW, api_id="a", region="r")
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == bytes(range(256))
    # Text that is not UTF-8 is binary too; no body: no `body` (2.0), null (1.0), "" (ALB).
    latin = Request("POST", "/up", "", (("content-type", "text/plain"),), b"\xe9t\xe9", "1.1.1.1")
    assert build_event(latin, target, request_id="r", now=NOW, api_id="a", region="r")[
        "isBase64Encoded"
    ]
    empty = Request("GET", "/", "", (), b"", "1.1.1.1")
    assert "body" not in build_event(empty, target, request_id="r", now=NOW, api_id="a", region="r")
    rest = Target("rest", "", "/", None, "Prod")
    assert build_event(empty, rest, request_id="r", now=NOW, api_id="a", region="r")["body"] is None
    alb = Target("alb", "", "/", None)
    assert build_event(empty, alb, request_id="r", now=NOW, api_id="a", region="r")["body"] == ""


def test_path_parameters_are_decoded_and_the_path_is_not() -> None:
    params, rest = path_parameters("/files/:name/...", ("name", "proxy"), "/files/a%20b/c/d%2Fe")
    assert params == {"name": "a b", "proxy": "c/d/e"}
    assert rest == "/c/d%2Fe"
    assert path_parameters("/items", (), "/items") == (None, "")


# --- results ---------------------------------------------------------------------------------


# A proxy response with every field (the JS adapter's tests use it too).
PROXY_RESULT = {
    "statusCode": 201,
    "headers": {"Content-Type": "text/plain", "X-One": "1", "X-Both": "single"},
    "multiValueHeaders": {"X-Both": ["m1", "m2"], "X-Num": [1, True]},
    "cookies": ["a=1", "b=2"],
    "body": base64.b64encode(b"\x00\xff").decode(),
    "isBase64Encoded": True,
}


def test_proxy_response_headers_cookies_and_base64() -> None:
    result = PROXY_RESULT
    response = to_response("http-api", result)
    assert response.status == 201
    assert response.body == b"\x00\xff"
    assert response.headers == [
        ("content-type", "text/plain"),
        ("x-one", "1"),
        ("x-both", "m1"),
        ("x-both", "m2"),
        ("x-num", "1"),
        ("x-num", "true"),
        ("set-cookie", "a=1"),
        ("set-cookie", "b=2"),
    ]
    # REST has no `cookies`: Set-Cookie comes from multiValueHeaders
    assert ("set-cookie", "a=1") not in to_response("rest", result).headers


def test_inference_for_payload_2_and_strictness_for_1() -> None:
    for value, body in (
        ({"a": Decimal("1.5"), "b": Decimal("2")}, {"a": 1.5, "b": 2}),
        ((1, "x"), [1, "x"]),
        ("text", "text"),
        (7, 7),
        (None, None),
    ):
        response = to_response("http-api", value)
        assert response.status == 200
        assert response.headers == [("content-type", "application/json")]
        assert json.loads(response.body) == body
    assert json.loads(to_response("function-url", {"a": Decimal("1.5")}).body) == {"a": 1.5}
    for kind in ("rest", "http-api-1.0", "alb"):
        with pytest.raises(MalformedResult, match="no statusCode"):
            to_response(kind, {"ok": True})
    # numbers, Decimals and tuples where the gateway reads strings, statuses and lists
    loose = {
        "statusCode": Decimal("201"),
        "headers": {"x-n": Decimal("1.50")},
        "multiValueHeaders": {"x-t": ("a", "b")},
    }
    response = to_response("rest", loose)
    assert response.status == 201
    assert response.headers == [("x-n", "1.5"), ("x-t", "a"), ("x-t", "b")]


# Results the gateway cannot read, and what the adapter says (the JS adapter's too).
MALFORMED: list[tuple[dict[str, Any], str]] = [
    ({"statusCode": "teapot"}, "statusCode"),
    ({"statusCode": 700}, "statusCode"),
    ({"statusCode": 200, "body": {"a": 1}}, "body: expected a string"),
    ({"statusCode": 200, "body": "!!", "isBase64Encoded": True}, "not base64"),
    ({"statusCode": 200, "headers": {"x": {"nested": 1}}}, "headers.x"),
    ({"statusCode": 200, "cookies": "a=1"}, "cookies"),
]


@pytest.mark.parametrize(("result", "problem"), MALFORMED)
def test_malformed_results(result: dict[str, Any], problem: str) -> None:
    with pytest.raises(MalformedResult, match=problem):
        to_response("http-api", result)


def test_unserializable_results() -> None:
    with pytest.raises(TypeError):
        to_response("http-api", {"when": object()})  # no statusCode: serialized: cannot be
    with pytest.raises(MalformedResult, match="body: expected a string, got object"):
        to_response("http-api", {"statusCode": 200, "body": object()})
    with pytest.raises(MalformedResult, match="bytes"):
        to_response("http-api", b"raw")


def test_failure_statuses_follow_the_trigger() -> None:
    assert failed("http-api").status == failed("function-url").status == 500
    assert failed("rest").status == failed("alb").status == 502
    assert json.loads(failed("rest").body) == {"message": "Internal server error"}
    assert json.loads(failed("http-api").body) == {"message": "Internal Server Error"}
    assert no_route("rest").status == 403 and no_route("http-api").status == 404


# --- a whole invocation ------------------------------------------------------------------------


@pytest.fixture
def code(tmp_path: Path) -> Iterator[Path]:
    """Two function directories, each with a module named `app`."""
    saved = (list(sys.path), dict(sys.modules))
    for name, body in {
        "one": """
import asyncio, os
SEEN_AT_IMPORT = os.environ.get("MODE")
def handler(event, context):
    path = event.get("rawPath") or event["path"]
    if path.endswith("/fail"):
        raise KeyError("missing thing")
    if path.endswith("/bad"):
        return {"statusCode": 200, "body": {"not": "a string"}}
    return {"statusCode": 200, "body": ",".join([
        "one", SEEN_AT_IMPORT, os.environ["MODE"], context.function_name,
        context.memory_limit_in_mb, str(context.get_remaining_time_in_millis() > 1000),
        context.invoked_function_arn])}
""",
        "two": """
import asyncio, json
async def handler(event, context):
    await asyncio.sleep(0.001)
    body = {"two": event["pathParameters"]["id"], "fn": context.function_name}
    return {"statusCode": 200, "body": json.dumps(body)}
""",
    }.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "app.py").write_text(body)
        sys.path.append(str(tmp_path / name))
    yield tmp_path
    sys.path[:] = saved[0]
    for module in set(sys.modules) - set(saved[1]):
        del sys.modules[module]


def _app(code: Path) -> App:
    env = {"MODE": "built"}
    app = App(
        {
            "One": Function("one-fn", "app.handler", 256, 5, {**env}, (), str(code / "one")),
            "Two": Function("two-fn", "app.handler", 128, 3, {}, (), str(code / "two")),
        },
        [
            Route("/one/...", "One", path="/one/{proxy+}", params=("proxy",)),
            Route("/t/:id", "Two", kind="rest", methods=("GET",), path="/t/{id}", params=("id",)),
            Route(
                "/t/:id", "One", kind="rest", methods=("DELETE",), path="/t/{id}", params=("id",)
            ),
        ],
    )
    app.load()
    return app


def _request(method: str, path: str) -> Request:
    return Request(method, path, "", (("host", "localhost"),), b"", "127.0.0.1")


def test_invoke_isolates_same_named_modules_and_runs_async_handlers(
    code: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = _app(code)
    monkeypatch.setenv("MODE", "running")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "from-env")
    one = app.invoke(_request("GET", "/one/x"), "/one/...")
    assert one.status == 200
    # MODE was "built" at import time and is the runtime's value in the handler.
    assert one.body.decode().split(",")[:6] == [
        "one", "built", "running", "from-env", "256", "True",
    ]  # fmt: skip
    assert one.body.decode().endswith("arn:aws:lambda:us-east-1:000000000000:function:from-env")
    two = app.invoke(_request("GET", "/t/7"), "/t/:id")
    assert json.loads(two.body) == {"two": "7", "fn": "from-env"}
    assert app.invoke(_request("DELETE", "/t/7"), "/t/:id").status == 200  # module one's app
    assert app.invoke(_request("POST", "/t/7"), "/t/:id").status == 403  # REST: no such method


def test_invoke_failures_are_logged_as_lambda_errors(
    code: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = _app(code)
    response = app.invoke(_request("GET", "/one/fail"), "/one/...")
    assert response.status == 500
    error = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert error["errorType"] == "KeyError"
    assert error["errorMessage"] == "'missing thing'"
    assert any("app.py" in frame for frame in error["stackTrace"])
    assert app.invoke(_request("GET", "/one/bad"), "/one/...").status == 500
    assert "malformed Lambda proxy response: body: expected a string" in capsys.readouterr().err


def test_bad_handlers_fail_at_load(code: Path) -> None:
    with pytest.raises(LambdaInitError, match=r"Runtime.ImportModuleError.*'nosuch'"):
        App({"F": Function("f", "nosuch.handler")}, []).load()
    with pytest.raises(LambdaInitError, match=r"Runtime\.HandlerNotFound: Handler 'nope'"):
        App({"F": Function("f", "app.nope", code_path=str(code / "one"))}, []).load()
    preloading = Function("f", "app.handler", code_path=str(code / "one"), preload=("csv",))
    sys.modules.pop("csv", None)
    App({"F": preloading}, []).load()
    assert "csv" in sys.modules  # imported at load time (build time, in a component)
    with pytest.raises(LambdaInitError, match="MalformedHandlerName"):
        App({"F": Function("f", "handler")}, []).load()
    with pytest.raises(LambdaInitError, match="unknown event kind 'graphql'"):
        App({"F": Function("f", "app.handler")}, [Route("/", "F", kind="graphql")])


def test_async_handlers_get_a_loop_of_their_own() -> None:
    async def handler(event: Any, context: Any) -> str:
        await asyncio.sleep(0)
        return f"ran on {type(asyncio.get_running_loop()).__name__}"

    app = App({}, [])
    made: list[asyncio.AbstractEventLoop] = []

    def new_loop() -> asyncio.AbstractEventLoop:
        made.append(asyncio.new_event_loop())
        return made[-1]

    app.new_loop = new_loop
    assert app._call(handler, {}, None) == f"ran on {type(made[0]).__name__}"  # type: ignore[arg-type]
    assert made[0].is_closed()
    assert app._call(lambda e, c: 5, {}, None) == 5  # type: ignore[arg-type]
    assert len(made) == 1  # a synchronous handler costs no loop


def test_warm_up_serves_every_kind_once_and_restores_the_environment(
    code: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = _app(code)
    monkeypatch.setenv("KEEP", "me")
    before = dict(os.environ)
    calls: list[str] = []
    real = app._invoke

    def counting(request: Request, route: Route, handler: Any) -> Any:
        calls.append(route.kind)
        response = real(request, route, handler)
        assert response.status == 200 and response.body == b"warm"
        return response

    app._invoke = counting  # type: ignore[method-assign]
    app.warm_up()
    assert sorted(calls) == ["http-api", "http-api", "rest", "rest"]  # a sync and an async call
    assert dict(os.environ) == before
