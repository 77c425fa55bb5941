"""The real `wasmlet up` on loopback, driven with real HTTP (httpx and raw sockets)."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.server import Server, parse_env_dump, start_server, worker_pids, write_app

APP = """
spin_manifest_version = 2

[application]
name = "testbed-app"
version = "1.2.3"

[[trigger.http]]
route = "/t/..."
component = "testbed"
executor = { type = "wagi" }

[[trigger.http]]
route = "/users/:user_id/..."
component = "users"
executor = { type = "wagi" }

[[trigger.http]]
route = "/exact"
component = "exact"
executor = { type = "wagi" }

[[trigger.http]]
route = "/norm/"
component = "exact"
executor = { type = "wagi" }

[[trigger.http]]
route = { private = true }
component = "private"
executor = { type = "wagi" }

[[trigger.http]]
route = "/static"
static_response = { status_code = 418, headers = { x-static = "yes" }, body = "teapot" }

[component.testbed]
source = "{testbed}"
environment = { WHICH = "testbed", GREETING = "hi" }
files = [{ source = "files", destination = "/" }]

[component.users]
source = "{testbed}"
environment = { WHICH = "users" }

[component.exact]
source = "{testbed}"
environment = { WHICH = "exact" }

[component.private]
source = "{testbed}"
environment = { WHICH = "private" }
"""

FILES = {"files/hello.txt": "hello from a file\n", "files/sub/data.bin": b"\x00\x01\x02\xff"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    app = write_app(tmp_path_factory.mktemp("testbed-app"), APP, FILES)
    cache = tmp_path_factory.mktemp("cache")
    s = start_server(
        app,
        "--request-timeout",
        "1",
        "--max-instance-memory",
        "32Mi",
        "--max-body-size",
        "1Mi",
        cache_dir=cache,
    )
    yield s
    s.stop(signal.SIGKILL)


def env_of(response: httpx.Response) -> tuple[list[str], dict[str, str]]:
    assert response.status_code == 200, response.text
    return parse_env_dump(response.text)


def test_startup_lists_routes_but_not_private_ones(server: Server) -> None:
    log = server.log
    assert f"Serving {server.url}" in log
    assert "Available Routes:" in log
    assert f"testbed: {server.url}/t (wildcard)" in log
    assert f"users: {server.url}/users/:user_id (wildcard)" in log
    assert f"exact: {server.url}/exact" in log
    assert "private" not in log


@pytest.mark.parametrize(
    ("path", "which", "path_info"),
    [
        ("/t", "testbed", ""),
        ("/t/", "testbed", "/"),
        ("/t/a/b", "testbed", "/a/b"),
        ("/users/42/", "users", "/"),
        ("/users/42/profile/x", "users", "/profile/x"),
        ("/exact", "exact", ""),
        ("/exact/", "exact", ""),
    ],
)
def test_routing(server: Server, path: str, which: str, path_info: str) -> None:
    _, env = env_of(server.get(path, params={"mode": "env"}))
    assert env["WHICH"] == which
    assert env["PATH_INFO"] == path_info


def test_a_route_with_a_trailing_slash_reports_it_as_spin_does(server: Server) -> None:
    """Spin's router strips one trailing `/`: the matched route and SCRIPT_NAME are `/norm`,
    the raw and component routes stay `/norm/`."""
    for path in ("/norm", "/norm/"):
        _, env = env_of(server.get(path, params={"mode": "env"}))
        assert (env["X_MATCHED_ROUTE"], env["SCRIPT_NAME"]) == ("/norm", "/norm")
        assert env["X_RAW_COMPONENT_ROUTE"] == env["X_COMPONENT_ROUTE"] == "/norm/"


def test_path_params_and_cgi_env(server: Server) -> None:
    r = server.get(
        "/users/ada%20l/x?mode=env&k=v",
        headers={"X-Custom-Header": "custom", "Authorization": "Bearer s"},
    )
    argv, env = env_of(r)
    assert argv == ["/users/ada%20l/x", "mode", "env", "k", "v"]
    assert env["X_PATH_MATCH_USER_ID"] == "ada%20l"
    assert env["X_MATCHED_ROUTE"] == "/users/:user_id/..."
    assert env["X_COMPONENT_ROUTE"] == env["SCRIPT_NAME"] == "/users/:user_id"
    assert env["HTTP_X_CUSTOM_HEADER"] == "custom"
    assert "HTTP_AUTHORIZATION" not in env
    assert env["REQUEST_METHOD"] == "GET"
    assert env["QUERY_STRING"] == "mode=env&k=v"
    assert env["SERVER_SOFTWARE"] == "WAGI/1"
    host, port = server.url.removeprefix("http://").split(":")
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == (host, port)
    assert env["X_FULL_URL"] == f"{server.url}/users/ada%20l/x?mode=env&k=v"
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["X_CLIENT_ADDR"].startswith("127.0.0.1:")


def test_component_environment(server: Server) -> None:
    _, env = env_of(server.get("/t/?mode=env"))
    assert env["GREETING"] == "hi"


def test_not_found_has_empty_body(server: Server) -> None:
    for path in ("/", "/nothing", "/exact/more", "/users", "/.well-known/spin/other"):
        r = server.get(path)
        assert r.status_code == 404, path
        assert r.content == b"", path


def test_private_route_is_not_reachable(server: Server) -> None:
    for path in ("/private", "/t/private"):
        r = server.get(path, params={"mode": "env"})
        assert "WHICH=private" not in r.text


def test_static_response(server: Server) -> None:
    r = server.get("/static")
    assert r.status_code == 418
    assert r.headers["x-static"] == "yes"
    assert r.text == "teapot"


def test_health_and_info(server: Server) -> None:
    r = server.get("/.well-known/spin/health")
    assert (r.status_code, r.text) == (200, "OK")
    r = server.get("/.well-known/spin/info")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert json.loads(r.text) == {"name": "testbed-app", "version": "1.2.3"}


def test_load_counts_the_apps_requests_in_flight(server: Server) -> None:
    def load() -> dict[str, int]:
        r = server.get("/.well-known/wasmlet/load")
        assert r.headers["content-type"] == "application/json"
        return r.json()  # type: ignore[no-any-return]

    before = load()
    assert load()["requests"] == before["requests"]  # it does not count itself
    t = threading.Thread(target=lambda: server.get("/t/x?mode=loop"))  # 1 s, then 500
    t.start()
    deadline = time.monotonic() + 5
    while load()["in_flight"] < 1:
        assert time.monotonic() < deadline, "the looping request never showed"
        time.sleep(0.02)
    t.join(10)
    after = load()
    assert after["in_flight"] == 0 and after["requests"] >= before["requests"] + 1


def test_post_body_reaches_stdin(server: Server) -> None:
    body = bytes(range(256)) * 400  # 100 KiB, every byte value
    r = server.request("POST", "/t/echo?mode=echo", content=body)
    assert r.status_code == 200
    assert r.content == body
    _, env = env_of(server.request("POST", "/t/?mode=env", content=b"12345"))
    assert env["CONTENT_LENGTH"] == "5"
    assert env["REQUEST_METHOD"] == "POST"


# CGI output sent as the body in `raw` mode -> (status, headers subset, body)
RAW_CASES = [
    (b"Content-Type: text/plain\n\nplain", 200, {"content-type": "text/plain"}, b"plain"),
    (b"Status: 404 Not Found\nContent-Type: text/plain\n\nmissing", 404, {}, b"missing"),
    (b"Location: /elsewhere\n\n", 302, {"location": "/elsewhere"}, b""),
    (b"Status: 303 See Other\nLocation: /x\n\n", 303, {"location": "/x"}, b""),
    (b"Content-Type: a/b\r\nX-Thing: 1\r\nX-Thing: 2\r\n\r\nbody", 200, {"x-thing": "2"}, b"body"),
    (b"Status: 201\n\n", 201, {}, b""),
    (
        b"X-Only: header\n\nbody",
        500,
        {},
        b"Exactly one of 'location' or 'content-type' must be specified",
    ),
    (b"Status: teapot\nContent-Type: a/b\n\n", 502, {}, b""),
]


@pytest.mark.parametrize(("output", "status", "headers", "body"), RAW_CASES)
def test_cgi_output_parsing(
    server: Server, output: bytes, status: int, headers: dict[str, str], body: bytes
) -> None:
    r = server.request("POST", "/t/?mode=raw", content=output, follow_redirects=False)
    assert r.status_code == status
    for k, v in headers.items():
        assert r.headers[k] == v
    assert r.content == body
    assert "status" not in r.headers


@pytest.mark.parametrize(
    "query", ["mode=exit&code=3", "mode=empty", "mode=trap", "mode=oom", "mode=loop"]
)
def test_bad_guests_get_500_and_the_server_keeps_serving(server: Server, query: str) -> None:
    t0 = time.monotonic()
    r = server.get(f"/t/?{query}")
    elapsed = time.monotonic() - t0
    assert r.status_code == 500
    assert r.content == b""
    if query == "mode=loop":
        assert 0.9 <= elapsed < 5, elapsed  # --request-timeout 1
    assert server.get("/t/?mode=echo").status_code == 200
    assert server.alive()


def test_exit_zero_after_response_is_fine(server: Server) -> None:
    r = server.get("/t/?mode=exit&code=0")
    assert r.status_code == 200
    assert r.text == "exiting with 0\n"


def test_files_are_mounted_read_only(server: Server) -> None:
    r = server.get("/t/?mode=file&path=/hello.txt")
    assert (r.status_code, r.text) == (200, "hello from a file\n")
    r = server.get("/t/?mode=file&path=/sub/data.bin")
    assert r.content == b"\x00\x01\x02\xff"
    assert server.get("/t/?mode=file&path=/missing.txt").status_code == 404
    r = server.get("/t/?mode=write&path=/newfile")
    assert r.status_code == 200
    assert r.text.startswith("error"), r.text
    r = server.get("/t/?mode=write&path=/hello.txt")
    assert r.text.startswith("error"), r.text
    assert server.get("/t/?mode=file&path=/hello.txt").text == "hello from a file\n"
    # No file escapes the mount.
    assert server.get("/t/?mode=file&path=/../../etc/passwd").status_code == 404


def test_component_without_files_sees_no_filesystem(server: Server) -> None:
    assert server.get("/users/1/?mode=file&path=/hello.txt").status_code == 404


def test_guest_stderr_goes_to_the_log_with_the_component_id(server: Server) -> None:
    assert server.get("/t/?mode=stderr").status_code == 200
    deadline = time.monotonic() + 5
    while "[testbed] testbed: a line on stderr" not in server.log:
        assert time.monotonic() < deadline, server.log
        time.sleep(0.05)


def test_body_limit_gives_413(server: Server) -> None:
    big = b"x" * (1024 * 1024 + 1)
    r = server.request("POST", "/t/?mode=echo", content=big)
    assert r.status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer
        for _ in range(20):
            yield b"y" * 65536

    r = server.request("POST", "/t/?mode=echo", content=chunks())
    assert r.status_code == 413
    assert server.request("POST", "/t/?mode=echo", content=b"x" * 1024).status_code == 200


def raw_exchange(server: Server, data: bytes) -> bytes:
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(data)
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


@pytest.mark.parametrize(
    "data",
    [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET /t/ HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"GET /t/ HTTP/1.1\r\nBad Header Line\r\n\r\n",
        b"GET /t/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\n",
    ],
)
def test_malformed_http_gets_400(server: Server, data: bytes) -> None:
    reply = raw_exchange(server, data)
    assert reply.startswith(b"HTTP/1.1 400"), reply[:200]
    assert server.get("/t/?mode=echo").status_code == 200


def test_thousand_concurrent_requests(server: Server) -> None:
    async def run() -> list[int]:
        limits = httpx.Limits(max_connections=1000, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=120) as c:
            rs = await asyncio.gather(*(c.get(f"/users/{i}/?mode=env") for i in range(1000)))
        for i, r in enumerate(rs):
            assert f"X_PATH_MATCH_USER_ID={i}\n" in r.text
        return [r.status_code for r in rs]

    statuses = asyncio.run(run())
    assert statuses == [200] * 1000


def test_concurrent_traps_and_good_requests(server: Server) -> None:
    results: dict[str, list[int]] = {"good": [], "bad": []}

    def worker(kind: str, query: str) -> None:
        with server.client() as c:
            for _ in range(20):
                results[kind].append(c.get(f"/t/?{query}").status_code)

    threads = [threading.Thread(target=worker, args=("good", "mode=echo")) for _ in range(4)]
    threads += [threading.Thread(target=worker, args=("bad", "mode=trap")) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results["good"] == [200] * 80
    assert results["bad"] == [500] * 80


# -- process-level behaviour (own servers) ---------------------------------------------------

HELLO_APP = """
spin_manifest_version = 2
[application]
name = "hello"
[[trigger.http]]
route = "/..."
component = "hello"
executor = { type = "wagi" }
[component.hello]
source = "{testbed}"
"""


def test_an_upgrade_request_is_a_plain_request_to_the_guest(
    tmp_path: Path,
    server_factory,  # type: ignore[no-untyped-def]
) -> None:
    """No WebSockets, as in Spin: `Upgrade: websocket` (or h2c) reaches the guest as a plain
    request, answered as any other, with no warning of a missing WebSocket library."""
    app = write_app(tmp_path / "app", HELLO_APP)
    s = server_factory(app)
    for upgrade in ("websocket", "h2c"):
        headers = {"Connection": "Upgrade", "Upgrade": upgrade}
        if upgrade == "websocket":
            headers |= {"Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZQ=="}
        r = s.get("/?mode=echo", headers=headers)
        assert r.status_code == 200, r.text
    assert s.get("/?mode=echo").status_code == 200
    assert s.stop() == 0
    assert "WebSocket" not in s.log and "upgrade" not in s.log.lower()


def test_workers_share_the_port(tmp_path: Path, server_factory) -> None:  # type: ignore[no-untyped-def]
    app = write_app(tmp_path / "app", HELLO_APP)
    s = server_factory(app, "--workers", "2")
    workers = worker_pids(s.proc.pid)
    assert len(workers) == 2, workers
    with s.client() as c:
        assert all(c.get("/?mode=echo").status_code == 200 for _ in range(50))
    assert s.stop() == 0


def test_by_default_a_worker_per_cpu(
    tmp_path: Path,
    server_factory,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    """With no --workers and no $WASMLET_WORKERS (the suite pins it to 1), `wasmlet up` runs
    a worker per CPU this process may use; $WASMLET_WORKERS and --workers pin it."""
    from wasmlet.argtypes import available_cpus

    monkeypatch.delenv("WASMLET_WORKERS", raising=False)
    app = write_app(tmp_path / "app", HELLO_APP)

    def workers_of(s) -> int:  # type: ignore[no-untyped-def]
        return len(worker_pids(s.proc.pid))

    cpus = available_cpus()
    s = server_factory(app)
    with s.client() as c:
        assert all(c.get("/?mode=echo").status_code == 200 for _ in range(20))
    assert workers_of(s) == (cpus if cpus > 1 else 0)  # one CPU: the process serves itself
    if cpus > 1:
        assert s.logged(f"started {cpus} workers")
    assert s.stop() == 0
    pinned = server_factory(app, env={"WASMLET_WORKERS": "1"})
    assert pinned.get("/?mode=echo").status_code == 200
    assert workers_of(pinned) == 0
    assert pinned.stop() == 0


def test_available_cpus_follows_affinity() -> None:
    """The affinity mask bounds the default (a cgroup CPU quota lowers it further)."""
    import subprocess
    import sys

    code = (
        "import os; os.sched_setaffinity(0, {0}); "
        "from wasmlet.argtypes import available_cpus; print(available_cpus())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"


def test_listen_address_from_environment(tmp_path: Path) -> None:
    from support.env import free_port
    from support.server import run_cli

    app = write_app(tmp_path / "app", HELLO_APP)
    port = free_port()
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "wasmlet.cli", "up", "-f", str(app)],
        env={**__import__("os").environ, "SPIN_HTTP_LISTEN_ADDR": f"127.0.0.1:{port}"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.startswith("Logs:"):  # where the log goes, printed first
            line = proc.stdout.readline()
        assert line.strip() == f"Serving http://127.0.0.1:{port}"
        deadline = time.monotonic() + 10
        while True:
            try:
                assert httpx.get(f"http://127.0.0.1:{port}/?mode=echo").status_code == 200
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait(10)
    del run_cli


def test_env_flag_reaches_every_component(tmp_path: Path, server_factory) -> None:  # type: ignore[no-untyped-def]
    app = write_app(tmp_path / "app", HELLO_APP)
    s = server_factory(app, "--env", "FROM_CLI=yes", "-e", "OTHER=a=b")
    _, env = env_of(s.get("/?mode=env"))
    assert env["FROM_CLI"] == "yes"
    assert env["OTHER"] == "a=b"


def test_graceful_shutdown_drains_in_flight_requests(tmp_path: Path, server_factory) -> None:  # type: ignore[no-untyped-def]
    app = write_app(tmp_path / "app", HELLO_APP)
    s = server_factory(app, "--request-timeout", "2")
    result: dict[str, object] = {}

    def slow() -> None:
        # A looping guest runs until its 2 s deadline: a request in flight during shutdown.
        result["status"] = s.get("/?mode=loop").status_code

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.7)
    t0 = time.monotonic()
    s.proc.send_signal(signal.SIGTERM)
    t.join(30)
    assert result["status"] == 500  # answered (by the deadline), not dropped
    assert s.proc.wait(30) == 0
    assert time.monotonic() - t0 < 15
