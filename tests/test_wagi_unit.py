"""Wagi semantics on the pure functions: argv, CGI environment, output parsing."""

from __future__ import annotations

import pytest

from wasmlet.executors._wasi_command import RunOutcome
from wasmlet.executors.types import HttpRequest, RouteMatch
from wasmlet.executors.wagi import (
    MISSING_HEADERS_BODY,
    WagiError,
    WagiExecutor,
    build_argv,
    build_env,
    parse_cgi_output,
)
from wasmlet.trigger.http.router import RoutePattern


def req(
    path: str = "/x",
    query: str = "",
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    method: str = "GET",
) -> HttpRequest:
    hdrs = [("host", "example.com:8080")] if headers is None else headers
    return HttpRequest(method, path, query, hdrs, body, ("10.1.2.3", 4567))


def match(route: str, path: str) -> RouteMatch:
    m = RoutePattern.parse(route).match(path)
    assert m is not None
    return m


@pytest.mark.parametrize(
    ("query", "argv"),
    [
        ("", ["/x"]),
        ("a=1&b", ["/x", "a", "1", "b"]),
        ("a=1&b=", ["/x", "a", "1", "b"]),
        ("name=J%C3%B6rg&x=a+b", ["/x", "name", "Jörg", "x", "a b"]),
    ],
)
def test_argv(query: str, argv: list[str]) -> None:
    assert build_argv(req(query=query), match("/...", "/x")) == argv


def test_argv_custom_template() -> None:
    m = match("/cgi/...", "/cgi/run")
    assert build_argv(req("/cgi/run", "a=1"), m, "${SCRIPT_NAME} --flag ${ARGS}") == [
        "/cgi",
        "--flag",
        "a",
        "1",
    ]


def test_env_has_spin_cgi_variables() -> None:
    r = req(
        "/users/42/more",
        "q=1",
        [
            ("host", "example.com:8080"),
            ("user-agent", "t"),
            ("authorization", "secret"),
            ("connection", "close"),
            ("content-type", "text/csv"),
            ("x-custom-thing", "v"),
        ],
        b"hello",
        "POST",
    )
    env = dict(build_env(r, match("/users/:user_id/...", r.path), {"GREETING": "hi"}))
    assert env["GREETING"] == "hi"
    assert env["REQUEST_METHOD"] == "POST"
    assert env["CONTENT_LENGTH"] == "5"
    assert env["CONTENT_TYPE"] == ""  # Spin looks it up under the wrong name
    assert env["HTTP_CONTENT_TYPE"] == "text/csv"
    assert env["HTTP_X_CUSTOM_THING"] == "v"
    assert env["HTTP_USER_AGENT"] == "t"
    assert "HTTP_AUTHORIZATION" not in env
    assert "HTTP_CONNECTION" not in env
    assert env["GATEWAY_INTERFACE"] == "CGI/1.1"
    assert env["QUERY_STRING"] == "q=1"
    assert env["REMOTE_ADDR"] == env["REMOTE_HOST"] == "10.1.2.3"
    assert env["REMOTE_USER"] == env["AUTH_TYPE"] == ""
    assert env["SCRIPT_NAME"] == "/users/:user_id"
    assert env["PATH_INFO"] == env["X_RAW_PATH_INFO"] == "/more"
    assert env["PATH_TRANSLATED"] == "/more"
    assert env["SERVER_NAME"] == "example.com"
    assert env["SERVER_PORT"] == "8080"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["SERVER_SOFTWARE"] == "WAGI/1"
    assert env["X_FULL_URL"] == "http://example.com:8080/users/42/more?q=1"
    assert env["X_MATCHED_ROUTE"] == env["X_RAW_COMPONENT_ROUTE"] == "/users/:user_id/..."
    assert env["X_COMPONENT_ROUTE"] == "/users/:user_id"
    assert env["X_BASE_PATH"] == "/"
    assert env["X_CLIENT_ADDR"] == "10.1.2.3:4567"
    assert env["X_PATH_MATCH_USER_ID"] == "42"


def test_env_routes_as_spin_sanitises_them() -> None:
    """Spin strips one trailing `/` from a route for its router: that is the matched route
    and SCRIPT_NAME; the raw and component routes stay as written."""
    r = req("/norm")
    env = dict(build_env(r, match("/norm/", r.path), {}))
    assert (env["X_MATCHED_ROUTE"], env["SCRIPT_NAME"]) == ("/norm", "/norm")
    assert env["X_RAW_COMPONENT_ROUTE"] == env["X_COMPONENT_ROUTE"] == "/norm/"
    assert env["PATH_INFO"] == ""


def test_env_defaults_without_host_and_decoded_path_translated() -> None:
    r = req("/f/a%20b", headers=[])
    env = dict(build_env(r, match("/f/...", r.path), {}))
    assert env["SERVER_NAME"] == "localhost"
    assert env["SERVER_PORT"] == "80"
    assert env["PATH_INFO"] == "/a%20b"
    assert env["PATH_TRANSLATED"] == "/a b"
    assert env["X_FULL_URL"] == "http://localhost/f/a%20b"


def test_spin_variables_overwrite_component_environment() -> None:
    env = dict(build_env(req(), match("/...", "/x"), {"PATH_INFO": "mine", "OTHER": "kept"}))
    assert env["PATH_INFO"] == "/x"
    assert env["OTHER"] == "kept"


# (stdout, status, headers (lower-case name -> value), body)
PARSE_CASES = [
    (b"Content-Type: text/plain\n\nhi", 200, {"content-type": "text/plain"}, b"hi"),
    (b"Content-Type: text/plain\r\n\r\nhi\r\n", 200, {"content-type": "text/plain"}, b"hi\r\n"),
    (
        b"content-type:text/html\nX-A:  spaced  \n\n<p>",
        200,
        {"content-type": "text/html", "x-a": "spaced"},
        b"<p>",
    ),
    (
        b"Status: 404 Not Found\nContent-Type: text/plain\n\nnope",
        404,
        {"content-type": "text/plain"},
        b"nope",
    ),
    (b"Status: 201\n\n", 201, {}, b""),
    (b"Location: /elsewhere\n\n", 302, {"location": "/elsewhere"}, b""),
    (b"Status: 301\nLocation: /moved\n\n", 301, {"location": "/moved"}, b""),
    (b"X-A: 1\nX-A: 2\nContent-Type: a/b\n\n", 200, {"x-a": "2", "content-type": "a/b"}, b""),
    (
        b"Content-Type: text/plain\n\nbody\n\nwith blank lines",
        200,
        {"content-type": "text/plain"},
        b"body\n\nwith blank lines",
    ),
    (b"Content-Type: text/plain", 200, {"content-type": "text/plain"}, b""),
    (b"Content-Type: a/b\nnot a header line\n\nx", 200, {"content-type": "a/b"}, b"x"),
    (
        b"Content-Type: application/octet-stream\n\n\x00\xff\x10",
        200,
        {"content-type": "application/octet-stream"},
        b"\x00\xff\x10",
    ),
]


@pytest.mark.parametrize(("stdout", "status", "headers", "body"), PARSE_CASES)
def test_parse_cgi_output(stdout: bytes, status: int, headers: dict[str, str], body: bytes) -> None:
    resp = parse_cgi_output(stdout)
    assert resp.status == status
    assert {k.lower(): v for k, v in resp.headers} == headers
    assert resp.body == body


@pytest.mark.parametrize(
    ("stdout", "status"),
    [
        (b"X-Only: header\n\nbody", 500),
        (b"\n\njust a body", 500),
        (b"Status: abc\n\n", 502),
        (b"Status: \n\n", 502),
        (b"Status: 99\nContent-Type: a/b\n\n", 502),
    ],
)
def test_parse_errors(stdout: bytes, status: int) -> None:
    with pytest.raises(WagiError) as err:
        parse_cgi_output(stdout)
    assert err.value.status == status
    if status == 500:
        assert err.value.body == MISSING_HEADERS_BODY


@pytest.mark.parametrize(
    ("outcome", "status"),
    [
        (RunOutcome(0, b"Content-Type: a/b\n\nok", b""), 200),
        (RunOutcome(3, b"Content-Type: a/b\n\nok", b""), 500),
        (RunOutcome(0, b"", b""), 500),
        (RunOutcome(None, b"Content-Type: a/b\n\nok", b"", "unreachable"), 500),
        (RunOutcome(None, b"", b"", "interrupt", timed_out=True), 500),
    ],
)
def test_outcome_to_response(outcome: RunOutcome, status: int) -> None:
    executor = WagiExecutor(None, "c", {})  # type: ignore[arg-type]
    assert executor.to_response(outcome).status == status
