"""wasmlet's JavaScript Lambda adapter on the host (Node, tests/support/lambda_js.mjs): its
events and responses against the Python adapter's for the same requests and results (one
semantics, two languages: the Python adapter's own tests check it against AWS's documented
events), its events against those documented fixtures, and whole invocations of handlers in
every style Lambda's Node.js runtime calls. (The same code in real components:
tests/test_lambda_js.py.)"""

from __future__ import annotations

import base64
import itertools
import json
import os
import subprocess
from typing import Any

import pytest
from support.env import ROOT, require_tool
from test_lambda_adapter import (
    EVENTS,
    FIXTURE,
    LEFT_OUT,
    MALFORMED,
    NOW,
    PROXY_RESULT,
    REQUEST,
    _shape,
)
from wasmlet_lambda.events import Request, Target, build_event, path_parameters
from wasmlet_lambda.responses import MalformedResult, to_response

LIB = ROOT / "src/wasmlet/templates/lambda-js/content/dot-wasmlet/lambda-js/lib/wasmlet-lambda"
DRIVER = ROOT / "tests/support/lambda_js.mjs"
KINDS = ("http-api", "http-api-1.0", "rest", "function-url", "alb", "alb-multi-value")


def _node(payload: dict[str, Any]) -> dict[str, Any]:
    node = require_tool("node", "nodejs")
    r = subprocess.run(
        [node, str(DRIVER)],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        env={**os.environ, "WASMLET_LAMBDA_JS": str(LIB)},
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)  # type: ignore[no-any-return]


# Requests with what the event mapping has to get right: repeated headers and query keys,
# cookies, percent-encoding (valid, invalid, not UTF-8), `+`, blank values, forwarded
# headers, binary and text bodies, IPv6 hosts, `__proto__` as a client's key.
REQUESTS = [
    Request(
        "GET",
        "/items/42",
        "tag=a&tag=b&q=tea%20pot&plus=a+b&blank=&flag",
        (
            ("host", "api.example.com"),
            ("user-agent", "curl/8.5.0"),
            ("x-rep", "one"),
            ("x-rep", "two"),
            ("cookie", "session=abc; theme=dark"),
            ("cookie", "more=1"),
        ),
        b"",
        "203.0.113.7",
    ),
    Request(
        "POST",
        "/files/a%20b/c%2Fd/%E9t%C3%A9/%zz",
        "x=%E2%9C%93&bad=%ZZ&__proto__=p&x=%ff",
        (
            ("host", "[::1]:3000"),
            ("content-type", "application/json; charset=utf-8"),
            ("x-forwarded-for", "10.0.0.1"),
            ("x-amzn-trace-id", "Root=1-abc"),
            ("__proto__", "header"),
        ),
        '{"name": "kettle", "note": "ünïcödé"}'.encode(),
        "::1",
        "https",
    ),
    Request(
        "PUT",
        "/up",
        "",
        (("host", "localhost:8080"), ("content-type", "image/png")),
        b"\x89PNG\r\n\x1a\n" + bytes(range(256)),
        "127.0.0.1",
    ),
    Request(
        "PATCH",
        "/",
        "",
        (("content-type", "text/plain"), ("user-agent", "x")),
        b"\xe9t\xe9 is latin-1",
        "127.0.0.1",
    ),
]
TARGETS = [
    Target("http-api", "GET /items/{id}", "/items/{id}", {"id": "42"}),
    Target("http-api", "ANY /{proxy+}", "/{proxy+}", {"proxy": "a b/c"}, "dev"),
    Target("http-api-1.0", "$default", "/{proxy+}", None, "v1"),
    Target("rest", "", "/items/{id}", {"id": "42"}, "Prod"),
    Target("rest", "", "/{proxy+}", None, "Prod", "/under"),
    Target("function-url", "$default", "/{proxy+}", None),
    Target("function-url", "$default", "/{proxy+}", None, path="/stripped"),
    Target("alb", "", "/", None),
    Target("alb-multi-value", "", "/", None),
]


def _request_json(request: Request) -> dict[str, Any]:
    return {
        "method": request.method,
        "path": request.path,
        "query": request.query,
        "headers": [list(h) for h in request.headers],
        "body_b64": base64.b64encode(request.body).decode(),
        "source_ip": request.source_ip,
        "scheme": request.scheme,
    }


def _target_json(target: Target) -> dict[str, Any]:
    return {
        "kind": target.kind,
        "routeKey": target.route_key,
        "resource": target.resource,
        "pathParameters": target.path_parameters,
        "stage": target.stage,
        "path": target.path,
    }


def test_events_are_the_python_adapters() -> None:
    cases = list(itertools.product(REQUESTS, TARGETS))
    args = {"request_id": "c0ffee00-1111-4222-8333-444455556666", "now": NOW + 0.25}
    payload = [
        {
            "request": _request_json(r),
            "target": _target_json(t),
            "requestId": args["request_id"],
            "now": args["now"],
            "apiId": "api1",
            "region": "eu-west-1",
        }
        for r, t in cases
    ]
    ours = _node({"events": payload})["events"]
    for (request, target), js in zip(cases, ours, strict=True):
        python = build_event(request, target, api_id="api1", region="eu-west-1", **args)
        assert js == python, f"{request.method} {request.path} as {target.kind}"


@pytest.mark.parametrize("kind", sorted(FIXTURE))
def test_events_have_the_documented_fields(kind: str) -> None:
    params = {"id": "42"} if kind in ("http-api", "rest") else None  # as the routes give them
    target = Target(
        kind, "GET /items/{id}", "/items/{id}", params, "Prod" if kind == "rest" else "$default"
    )
    payload = {
        "request": _request_json(REQUEST),
        "target": _target_json(target),
        "requestId": "r-1",
        "now": NOW,
        "apiId": "api1",
        "region": "eu-west-1",
    }
    event = _node({"events": [payload]})["events"][0]
    documented = _shape(json.loads((EVENTS / FIXTURE[kind]).read_text()))
    ours = _shape(event)
    assert set(ours) - set(documented) == set(), "fields AWS does not send"
    missing = {
        f
        for f in set(documented) - set(ours)
        if not any(f == p or f.startswith(p + ".") for p in LEFT_OUT[kind])
    }
    assert missing == set(), f"documented fields missing: {missing}"
    assert {f: ours[f] for f in ours if documented[f] != "null"} == {
        f: documented[f] for f in ours if documented[f] != "null"
    }


def test_route_parameters_are_the_python_adapters() -> None:
    cases = [
        ("/files/:name/...", ["name", "proxy"], "/files/a%20b/c/d%2Fe"),
        ("/items", [], "/items"),
        ("/items/:id", ["id"], "/items/%E2%9C%93"),
        ("/...", ["proxy"], "/"),
        ("/a/...", ["proxy"], "/a/b/c"),
    ]
    ours = _node({"params": cases})["params"]
    for (pattern, names, path), js in zip(cases, ours, strict=True):
        assert tuple(js) == path_parameters(pattern, tuple(names), path)


RESULTS: list[Any] = [
    PROXY_RESULT,
    {"statusCode": "204", "headers": {"content-length": "99", "connection": "close"}},
    {"statusCode": 200, "body": "héllo", "isBase64Encoded": False},
    {"plain": True, "items": [1, 2, 3]},
    [1, "x"],
    "text",
    7,
    None,
    *(result for result, _ in MALFORMED),
    {"statusCode": 200, "multiValueHeaders": {"x": "not a list"}},
    {"statusCode": 200, "headers": {"x": None}},
]


def test_responses_are_the_python_adapters() -> None:
    cases = [(kind, result) for kind in KINDS for result in RESULTS]
    ours = _node({"responses": cases})["responses"]
    for (kind, result), js in zip(cases, ours, strict=True):
        try:
            python = to_response(kind, result)
        except MalformedResult:
            assert js.get("error") == "MalformedResult", (kind, result, js)
            continue
        assert "error" not in js, (kind, result, js)
        assert js["status"] == python.status
        assert [tuple(h) for h in js["headers"]] == python.headers
        body = base64.b64decode(js["body_b64"])
        if isinstance(result, dict) and "statusCode" in result:
            assert body == python.body
        else:  # JSON as each runtime writes it: Node's JSON.stringify has no spaces
            assert json.loads(body) == json.loads(python.body)


def test_invocations() -> None:
    got = _node({"invocations": True})["invocations"]
    # the module loads with its function's environment (Lambda's init, at build time)
    assert got["loadedWith"] == {"MODE": "built", "ONLY_ASYNC": "yes"}
    assert got["envAfterWarmUp"] == "same"
    body = json.loads(got["async"]["body"])
    assert got["async"]["status"] == 200
    assert body["mode"] == "running"  # the component's environment at request time
    assert body["only"] == "yes"  # a variable of this function only: set per request
    assert body["name"] == "from-env" and body["memory"] == "256"
    assert 8000 < body["remaining"] <= 9000  # AWS_LAMBDA_FUNCTION_TIMEOUT: 9
    assert body["arn"] == "arn:aws:lambda:us-east-1:000000000000:function:from-env"
    assert body["trace"].startswith("Root=1-")
    assert got["asyncFail"] == {"status": 500, "body": '{"message":"Internal Server Error"}'}
    assert got["asyncReject"]["status"] == 500
    assert got["bigint"]["status"] == 500  # Runtime.MarshalError
    assert got["callbackNow"] == {"status": 201, "body": "now"}
    assert got["callbackLater"] == {"status": 200, "body": "later"}
    assert got["callbackError"] == {"status": 502, "body": '{"message": "Internal server error"}'}
    assert got["succeed"] == {"status": 202, "body": "succeeded"}
    assert got["throw"]["status"] == 502
    assert got["restNoMethod"] == {
        "status": 403,
        "body": '{"message":"Missing Authentication Token"}',
    }
    assert got["sync"] == {"status": 200, "body": "sync PUT"}
    assert got["noRoute"]["status"] == 404
    # The environment (a host call in a component) was read for two requests only: the
    # handler that used it, and the ALB event, whose target group ARN has the region.
    assert got["environmentReads"] == 2
    errors = [line.split("\t") for line in got["logged"] if "\tERROR\tInvoke Error" in line]
    docs = [json.loads(fields[-1]) for fields in errors]
    assert [(d["errorType"], d["errorMessage"][:30]) for d in docs] == [
        ("TypeError", "async failure"),
        ("string", "just a string"),
        ("Runtime.MarshalError", "Unable to stringify response b"),
        ("Error", "callback failure"),
        ("RangeError", "thrown synchronously"),
    ]
    assert docs[0]["stack"][0] == "TypeError: async failure"
    assert any("lambda_js.mjs" in frame for frame in docs[0]["stack"][1:])
    assert all(len(fields[1]) == 36 for fields in errors)  # the request id
    init = dict(got["initErrors"])
    assert init["notFound"] == (
        "Runtime.HandlerNotFound: app.nope is undefined or not exported (function f)"
    )
    assert init["throws"] == (
        "Runtime.ImportModuleError: loading the module of app.handler (function f) threw "
        "SyntaxError: bad token"
    )
    assert init["malformed"].startswith("Runtime.MalformedHandlerName: Bad handler handler")
    assert init["kind"].startswith('route /: unknown event kind "graphql"')
    assert got["handlerPaths"] == [["handler"], ["routes", "list"], None, None]
