"""The `spin-*` request headers, exactly as Spin sets them."""

from __future__ import annotations

import pytest

from wasmlet.executors.headers import forwarded_headers, spin_headers
from wasmlet.executors.types import HttpRequest
from wasmlet.trigger.http.router import RoutePattern


def request(path: str, query: str = "", host: str | None = "example.com:3000") -> HttpRequest:
    headers = [("host", host)] if host else []
    return HttpRequest("GET", path, query, headers, b"", ("127.0.0.1", 51000))


@pytest.mark.parametrize(
    ("route", "path", "path_info", "matched", "component_route"),
    [
        ("/foo/...", "/foo", "", "/foo/...", "/foo"),
        ("/foo/...", "/foo/", "/", "/foo/...", "/foo"),
        ("/foo/...", "/foo/bar", "/bar", "/foo/...", "/foo"),
        ("/exact", "/exact", "", "/exact", "/exact"),
        ("/...", "/a/b", "/a/b", "/...", ""),
        # Spin's router strips one trailing `/` (its "based" route); the raw route stays
        ("/norm/", "/norm", "", "/norm", "/norm/"),
        ("/", "/", "", "", "/"),
    ],
)
def test_route_headers(
    route: str, path: str, path_info: str, matched: str, component_route: str
) -> None:
    m = RoutePattern.parse(route).match(path)
    assert m is not None
    h = dict(spin_headers(request(path), m))
    assert h["spin-path-info"] == path_info
    assert h["spin-matched-route"] == matched
    assert h["spin-raw-component-route"] == route
    assert h["spin-component-route"] == component_route
    assert h["spin-base-path"] == "/"


def test_exactly_the_spin_header_set() -> None:
    m = RoutePattern.parse("/users/:user_id/:Other_Thing/...").match("/users/7/x/rest")
    assert m is not None
    h = spin_headers(request("/users/7/x/rest", "a=b"), m)
    assert [k for k, _ in h] == [
        "spin-full-url",
        "spin-path-info",
        "spin-matched-route",
        "spin-base-path",
        "spin-raw-component-route",
        "spin-component-route",
        "spin-client-addr",
        "spin-path-match-user-id",
        "spin-path-match-other-thing",
    ]
    d = dict(h)
    assert d["spin-full-url"] == "http://example.com:3000/users/7/x/rest?a=b"
    assert d["spin-client-addr"] == "127.0.0.1:51000"
    assert d["spin-path-match-user-id"] == "7"
    assert d["spin-path-match-other-thing"] == "x"


def test_full_url_without_host() -> None:
    m = RoutePattern.parse("/...").match("/x")
    assert m is not None
    assert dict(spin_headers(request("/x", host=None), m))["spin-full-url"] == "http://localhost/x"


def test_forwarded_headers_drop_connection_and_internal_host() -> None:
    r = HttpRequest(
        "GET",
        "/",
        "",
        [("connection", "keep-alive"), ("host", "svc.spin.internal"), ("x-a", "1")],
        b"",
        ("::1", 1),
    )
    assert forwarded_headers(r) == [("x-a", "1")]
    r.headers = [("host", "example.com")]
    assert forwarded_headers(r) == [("host", "example.com")]
