"""Spin's route syntax and precedence, on the pure router."""

from __future__ import annotations

import pytest

from wasmlet.trigger.http.router import RoutePattern, Router, normalize_route

ROUTES = [
    "/",
    "/...",
    "/foo",
    "/foo/...",
    "/foo/bar",
    "/foo/bar/...",
    "/:x",
    "/foo/:id",
    "/foo/:id/...",
    "/a/:b",
    "/:a/b",
    "/deep/:a/:b/c",
]

# path -> (route that wins, path info, params)
PRECEDENCE = [
    ("/", "/", "", {}),
    ("/foo", "/foo", "", {}),
    ("/foo/", "/foo", "", {}),
    ("/foo/bar", "/foo/bar", "", {}),
    ("/foo/bar/", "/foo/bar", "", {}),
    ("/foo/bar/baz", "/foo/bar/...", "/baz", {}),
    ("/foo/bar/baz/qux", "/foo/bar/...", "/baz/qux", {}),
    ("/foo/7", "/foo/:id", "", {"id": "7"}),
    ("/foo/7/x/y", "/foo/:id/...", "/x/y", {"id": "7"}),
    ("/zzz", "/:x", "", {"x": "zzz"}),
    ("/zzz/y", "/...", "/zzz/y", {}),
    ("/a/b", "/a/:b", "", {"b": "b"}),  # literal first segment beats param
    ("/q/b", "/:a/b", "", {"a": "q"}),
    ("/deep/1/2/c", "/deep/:a/:b/c", "", {"a": "1", "b": "2"}),
    ("/deep/1/2/d", "/...", "/deep/1/2/d", {}),
    ("/foo%2Fbar", "/:x", "", {"x": "foo%2Fbar"}),  # no percent-decoding
]


@pytest.fixture(scope="module")
def router() -> Router[str]:
    r: Router[str] = Router()
    for route in ROUTES:
        r.add(route, route)
    return r


@pytest.mark.parametrize(("path", "winner", "path_info", "params"), PRECEDENCE)
def test_precedence(
    router: Router[str], path: str, winner: str, path_info: str, params: dict[str, str]
) -> None:
    found = router.match(path)
    assert found is not None
    match, handler = found
    assert handler == winner
    assert match.path_info == path_info
    assert dict(match.params) == params


def test_insertion_order_does_not_matter() -> None:
    forward: Router[str] = Router()
    backward: Router[str] = Router()
    for route in ROUTES:
        forward.add(route, route)
    for route in reversed(ROUTES):
        backward.add(route, route)
    for path, winner, _, _ in PRECEDENCE:
        assert forward.match(path)[1] == winner  # type: ignore[index]
        assert backward.match(path)[1] == winner  # type: ignore[index]


@pytest.mark.parametrize(
    ("path", "info"),
    [("/foo", ""), ("/foo/", "/"), ("/foo/bar", "/bar"), ("/foo/bar/", "/bar/")],
)
def test_wildcard_path_info(path: str, info: str) -> None:
    r: Router[str] = Router()
    r.add("/foo/...", "w")
    found = r.match(path)
    assert found is not None and found[0].path_info == info


def test_root_wildcard_path_info() -> None:
    r: Router[str] = Router()
    r.add("/...", "w")
    assert r.match("/")[0].path_info == "/"  # type: ignore[index]
    assert r.match("/a/b")[0].path_info == "/a/b"  # type: ignore[index]


def test_no_match() -> None:
    r: Router[str] = Router()
    r.add("/foo", "f")
    r.add("/bar/:x", "b")
    assert r.match("/") is None
    assert r.match("/foo/x") is None
    assert r.match("/bar") is None
    assert r.match("/bar//") is None  # an empty segment is not a param value


def test_duplicate_route_last_wins(caplog: pytest.LogCaptureFixture) -> None:
    r: Router[str] = Router()
    r.add("/dup", "first")
    r.add("/dup/", "second")
    assert r.match("/dup")[1] == "second"  # type: ignore[index]
    assert "duplicate route" in caplog.text
    assert len(r.routes()) == 1


@pytest.mark.parametrize(
    ("raw", "normalized"), [("foo", "/foo"), ("/foo/", "/foo"), ("/", "/"), ("a/b/", "/a/b")]
)
def test_normalize(raw: str, normalized: str) -> None:
    assert normalize_route(raw) == normalized


@pytest.mark.parametrize(
    ("route", "prefix"),
    [
        ("/...", ""),
        ("/", "/"),
        ("/foo/...", "/foo"),
        ("/foo/:id/...", "/foo/:id"),
        ("/foo/*", "/foo"),
        ("/foo", "/foo"),
        ("/foo/", "/foo"),
    ],
)
def test_prefix(route: str, prefix: str) -> None:
    assert RoutePattern.parse(route).prefix == prefix


# What Spin reports for each route form (crates/http/src/routes.rs: the raw route as written;
# the "based" route, `sanitize_with_base("/", raw)`; each without a `/...` suffix; the wildcard
# tail): (route, path) -> (spin-matched-route / X_MATCHED_ROUTE, spin-component-route /
# X_COMPONENT_ROUTE, SCRIPT_NAME, spin-path-info / PATH_INFO). spin-raw-component-route is the
# route as written in every case.
@pytest.mark.parametrize(
    ("route", "path", "matched", "component_route", "script_name", "path_info"),
    [
        ("/norm/", "/norm", "/norm", "/norm/", "/norm", ""),
        ("/norm/", "/norm/", "/norm", "/norm/", "/norm", ""),
        ("/", "/", "", "/", "", ""),
        ("norm", "/norm", "/norm", "norm", "/norm", ""),
        ("/exact", "/exact", "/exact", "/exact", "/exact", ""),
        ("/...", "/", "/...", "", "", "/"),
        ("/...", "/a/b", "/...", "", "", "/a/b"),
        ("/foo/...", "/foo", "/foo/...", "/foo", "/foo", ""),
        ("/foo/...", "/foo/", "/foo/...", "/foo", "/foo", "/"),
        ("/foo/...", "/foo/bar/", "/foo/...", "/foo", "/foo", "/bar/"),
        # `/*` is a wildcard too, but Spin strips only `/...` for the component route
        ("/foo/*", "/foo/x", "/foo/*", "/foo/*", "/foo/*", "/x"),
        ("/users/:id/...", "/users/7/a", "/users/:id/...", "/users/:id", "/users/:id", "/a"),
        ("/users/:id/", "/users/7", "/users/:id", "/users/:id/", "/users/:id", ""),
    ],
)
def test_route_forms_as_spin_reports_them(
    route: str, path: str, matched: str, component_route: str, script_name: str, path_info: str
) -> None:
    m = RoutePattern.parse(route).match(path)
    assert m is not None
    assert (m.route, m.based_route, m.component_route, m.script_name, m.path_info) == (
        route,
        matched,
        component_route,
        script_name,
        path_info,
    )
