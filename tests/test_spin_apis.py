"""Real guests (spin-sdk 3.4.1 Python via componentize-py; jco JavaScript) using Spin's host
APIs through the real server: key-value, variables, outbound HTTP, logging."""

from __future__ import annotations

import http.server
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.component_guests import js_app, python_app
from support.env import free_port
from support.server import Server
from support.triggers import redis_client


@pytest.fixture
def app_server(server_factory, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Start the Python app with the given manifest options."""

    def start(*args: str, env: dict[str, str] | None = None, **options: object) -> Server:
        app = python_app(tmp_path / "app", **options)  # type: ignore[arg-type]
        return server_factory(app, *args, env=env)  # type: ignore[no-any-return]

    return start


def test_hello_and_request_headers(app_server) -> None:  # type: ignore[no-untyped-def]
    s = app_server()
    r = s.get("/")
    assert (r.status_code, r.text) == (200, "Hello from Python!\n")
    r = s.get("/headers?x=1", headers={"X-Probe": "p"})
    lines = dict(line.split(": ", 1) for line in r.text.splitlines())
    assert lines["x-probe"] == "p"
    assert lines["spin-full-url"] == f"{s.url}/headers?x=1"
    assert lines["spin-path-info"] == "/headers"


def test_key_value_round_trip_persists_in_sqlite(app_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    s = app_server()
    with s.client() as c:
        assert c.get("/kv/greeting").status_code == 404
        assert c.put("/kv/greeting", content=b"hello \x00 bytes").status_code == 200
        r = c.get("/kv/greeting")
        assert (r.status_code, r.content) == (200, b"hello \x00 bytes")
        assert c.head("/kv/greeting").status_code == 200
        assert c.put("/kv/other", content=b"2").status_code == 200
        assert c.get("/kv-keys").text == "greeting\nother\n"
        assert c.delete("/kv/other").status_code == 200
        assert c.delete("/kv/never-existed").status_code == 200  # not an error, as in Spin
        assert c.get("/kv-keys").text == "greeting\n"
    db = tmp_path / "app" / ".spin" / "sqlite_key_value.db"
    rows = sqlite3.connect(db).execute("SELECT store, key, value FROM spin_key_value").fetchall()
    assert rows == [("default", "greeting", b"hello \x00 bytes")]
    # A new server on the same state directory sees the same data.
    s.stop()
    s2 = app_server()
    assert s2.get("/kv/greeting").content == b"hello \x00 bytes"


def test_key_value_label_not_granted_is_access_denied(app_server) -> None:  # type: ignore[no-untyped-def]
    s = app_server()
    r = s.get("/kv-denied")
    assert (r.status_code, r.text) == (500, "Error::AccessDenied")
    r = s.get("/kv/x?store=other")
    assert (r.status_code, r.text) == (500, "Error::AccessDenied")


def test_undefined_store_label_is_a_startup_error(tmp_path: Path) -> None:
    from support.server import run_cli

    app = python_app(tmp_path / "app", key_value_stores=["default", "nowhere"])
    r = run_cli("up", "-f", str(app), "--listen", "127.0.0.1:0")
    assert r.returncode == 1
    assert "key-value store 'nowhere'" in r.stderr
    assert "component 'app'" in r.stderr


def test_key_value_runtime_config_stores(app_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rc = tmp_path / "rc.toml"
    rc.write_text('[key_value_store.mine]\ntype = "spin"\npath = "data/mine.db"\n')
    s = app_server("--runtime-config-file", str(rc), key_value_stores=["default", "mine"])
    assert s.put("/kv/k?store=mine", content=b"in mine").status_code == 200
    assert s.get("/kv/k?store=mine").content == b"in mine"
    assert s.get("/kv/k").status_code == 404  # stores are separate
    rows = (
        sqlite3.connect(tmp_path / "data" / "mine.db")
        .execute("SELECT store, key FROM spin_key_value")
        .fetchall()
    )
    assert rows == [("mine", "k")]


def _redis_or_skip():  # type: ignore[no-untyped-def]
    return redis_client(db=15, timeout=2)


def test_key_value_redis_store(app_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    client = _redis_or_skip()
    key = f"wasmlet-test-{time.time_ns()}"
    rc = tmp_path / "rc.toml"
    rc.write_text('[key_value_store.cache]\ntype = "redis"\nurl = "redis://127.0.0.1:6379/15"\n')
    s = app_server("--runtime-config-file", str(rc), key_value_stores=["cache"])
    try:
        assert s.put(f"/kv/{key}?store=cache", content=b"via redis").status_code == 200
        assert client.get(key) == b"via redis"
        client.set(key, b"changed outside")
        assert s.get(f"/kv/{key}?store=cache").content == b"changed outside"
        assert s.delete(f"/kv/{key}?store=cache").status_code == 200
        assert client.exists(key) == 0
    finally:
        client.delete(key)


def test_variables(app_server) -> None:  # type: ignore[no-untyped-def]
    s = app_server(
        "--variable",
        "flag_override=from-cli",
        env={"SPIN_VARIABLE_API_KEY": "from-env"},
        variables={
            "api_key": {"required": True, "secret": True},
            "region": {"default": "eu-west"},
            "flag_override": {"default": "unused"},
        },
        component_variables={
            "greeting": "hello from {{ region }}",
            "key": "{{ api_key }}",
            "flag": "{{ flag_override }}",
        },
    )
    assert s.get("/var/greeting").text == "hello from eu-west"
    assert s.get("/var/key").text == "from-env"
    assert s.get("/var/flag").text == "from-cli"
    r = s.get("/var/region")  # an app variable the component does not declare
    assert (r.status_code, r.text.startswith("Error::Undefined")) == (404, True)
    r = s.get("/var/Bad-Name")
    assert r.status_code == 500
    assert r.text.startswith("Error::InvalidName")


@pytest.fixture
def upstream() -> Iterator[str]:
    """A plain HTTP server on loopback for outbound requests."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = f"upstream saw {self.path}".encode()
            self.send_response(201)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            got = self.rfile.read(int(self.headers.get("content-length", "0")))
            body = f"upstream got {len(got)} bytes: ".encode() + got[:32]
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    port = free_port()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{port}"
    srv.shutdown()


def test_outbound_http_allowed(app_server, upstream: str) -> None:  # type: ignore[no-untyped-def]
    port = upstream.rsplit(":", 1)[1]
    s = app_server(allowed_outbound_hosts=[f"http://127.0.0.1:{port}"])
    r = s.get("/outbound", params={"url": f"{upstream}/some/path?q=1"})
    assert r.status_code == 200, r.text
    assert r.text == "201\nupstream saw /some/path?q=1"


@pytest.mark.parametrize("size", [11, 300_000])
def test_outbound_post_body_written_after_handle(app_server, upstream: str, size: int) -> None:  # type: ignore[no-untyped-def]
    """spin-sdk sets content-length, calls `outgoing-handler.handle`, then writes the body
    (concurrently with waiting for the response): the body must stream to the server."""
    port = upstream.rsplit(":", 1)[1]
    s = app_server(allowed_outbound_hosts=[f"http://127.0.0.1:{port}"])
    body = (b"hello world" * (size // 11 + 1))[:size]
    r = s.request("POST", "/outbound", params={"url": f"{upstream}/p"}, content=body)
    assert r.status_code == 200, r.text
    assert r.content == f"200\nupstream got {size} bytes: ".encode() + body[:32]
    assert "trapped" not in s.log


@pytest.mark.parametrize(
    "allowed",
    [
        [],
        ["http://example.com"],
        ["https://127.0.0.1:*"],
        ["http://127.0.0.1:1..2"],
        ["http://10.0.0.0/8:*"],
    ],
)
def test_outbound_http_denied(app_server, upstream: str, allowed: list[str]) -> None:  # type: ignore[no-untyped-def]
    s = app_server(allowed_outbound_hosts=allowed)
    r = s.get("/outbound", params={"url": f"{upstream}/x"})
    assert r.status_code == 500
    assert "HttpRequestDenied" in r.text


def test_outbound_http_wildcards_and_cidr(app_server, upstream: str) -> None:  # type: ignore[no-untyped-def]
    s = app_server(allowed_outbound_hosts=["http://127.0.0.0/8:*"])
    assert s.get("/outbound", params={"url": f"{upstream}/a"}).status_code == 200
    s2 = app_server(allowed_outbound_hosts=["*://*:*"])
    assert s2.get("/outbound", params={"url": f"{upstream}/b"}).status_code == 200


@pytest.mark.parametrize("allowed", [["http://self"], ["http://self.alt"]])
def test_outbound_relative_request_reaches_the_app_itself(app_server, allowed: list[str]) -> None:  # type: ignore[no-untyped-def]
    # spin-sdk sends a relative URL with authority ":80"/":443": Spin's "self" request.
    s = app_server(allowed_outbound_hosts=allowed)
    r = s.get("/outbound", params={"url": "/var/none"})  # /var/none: 404 from the app itself
    assert r.status_code == 200, r.text
    assert r.text.startswith("404\n")


def test_outbound_relative_request_needs_self_allowed(app_server) -> None:  # type: ignore[no-untyped-def]
    s = app_server(allowed_outbound_hosts=["http://example.com"])
    r = s.get("/outbound", params={"url": "/var/none"})
    assert r.status_code == 500 and "HttpRequestDenied" in r.text


def test_outbound_connection_refused_is_an_error_not_a_crash(app_server) -> None:  # type: ignore[no-untyped-def]
    port = free_port()  # nothing listens there
    s = app_server(allowed_outbound_hosts=[f"http://127.0.0.1:{port}"])
    r = s.get("/outbound", params={"url": f"http://127.0.0.1:{port}/"})
    assert r.status_code == 500
    assert "ConnectionRefused" in r.text
    assert s.get("/").status_code == 200


def test_guest_output_goes_to_the_log(app_server) -> None:  # type: ignore[no-untyped-def]
    s = app_server()
    assert s.get("/log").status_code == 200
    deadline = time.monotonic() + 5
    while "[app stderr] python-app stderr" not in s.log:
        assert time.monotonic() < deadline, s.log
        time.sleep(0.05)
    assert "[app] python-app stdout" in s.log
    assert "[app] \n" not in s.log  # no empty lines from print()'s separate newline write


def test_javascript_component(server_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    s = server_factory(js_app(tmp_path / "js"))
    r = s.request("POST", "/some/path?x=1", content=b"from the client")
    assert r.status_code == 200
    assert r.text == "Hello from JS\npath: /some/path?x=1\nmethod: POST\nfrom the client"
    assert r.headers["content-type"] == "text/plain"
