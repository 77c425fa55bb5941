"""wasi:http components and Spin inbound-http components through the real server.

The small components are built from WAT in guests/components (see guests/build_components.py)
and committed under tests/fixtures/components.
"""

from __future__ import annotations

import concurrent.futures
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.env import FIXTURES
from support.server import Server, run_cli, start_server, write_app

COMPONENTS = FIXTURES / "components"

APP = """
spin_manifest_version = 2
[application]
name = "components"
version = "2.0.0"

[[trigger.http]]
route = "/hello"
component = "hello"

[[trigger.http]]
route = "/hello-023"
component = "hello-023"

[[trigger.http]]
route = "/hello-rc"
component = "hello-rc"

[[trigger.http]]
route = "/echo/:name/..."
component = "echo"

[[trigger.http]]
route = "/norm/"
component = "echo"

[[trigger.http]]
route = "/trap"
component = "trap"

[[trigger.http]]
route = "/no-response"
component = "no-response"

[[trigger.http]]
route = "/inbound/..."
component = "inbound"
executor = { type = "spin" }

[[trigger.http]]
route = "/loop"
component = "loop"

[[trigger.http]]
route = "/leak"
component = "leak"

[[trigger.http]]
route = "/slow"
component = "slow"

[[trigger.http]]
route = "/poll-splice"
component = "poll-splice"

[[trigger.http]]
route = "/finish-then-wait"
component = "finish-then-wait"

[[trigger.http]]
route = "/instant"
component = "instant"

[[trigger.http]]
route = "/env"
component = "env"

[[trigger.http]]
route = "/env-none"
component = "env-none"

[component.hello]
source = "{c}/hello.wasm"
[component.slow]
source = "{c}/slow-stream.wasm"
[component.poll-splice]
source = "{c}/poll-splice.wasm"
[component.finish-then-wait]
source = "{c}/finish-then-wait.wasm"
[component.instant]
source = "{c}/instant-stream.wasm"
[component.env]
source = "{c}/env.wasm"
environment = { GREETING = "hello there", EMPTY = "", UNICODE = "grüß" }
[component.env-none]
source = "{c}/env.wasm"
[component.loop]
source = "{c}/loop.wasm"
[component.leak]
source = "{c}/leak.wasm"
[component.hello-023]
source = "{c}/hello-0.2.3.wasm"
[component.hello-rc]
source = "{c}/hello-rc.wasm"
[component.echo]
source = "{c}/echo.wasm"
[component.trap]
source = "{c}/trap-mid-body.wasm"
[component.no-response]
source = "{c}/no-response.wasm"
[component.inbound]
source = "{c}/inbound-http.wasm"
""".replace("{c}", str(COMPONENTS))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    app = write_app(tmp_path_factory.mktemp("components"), APP)
    s = start_server(app, "--request-timeout", "2", cache_dir=tmp_path_factory.mktemp("cache"))
    yield s
    s.stop(signal.SIGKILL)


@pytest.mark.parametrize("route", ["/hello", "/hello-023", "/hello-rc"])
def test_hello_at_every_interface_version(server: Server, route: str) -> None:
    r = server.get(route)
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/plain"
    assert r.text == "Hello, wasi:http!"


def parse_echo(text: str) -> tuple[str, list[tuple[str, str]], str]:
    head, _, body = text.partition("\n\n")
    first, *header_lines = head.split("\n")
    headers = [tuple(h.split(": ", 1)) for h in header_lines]
    return first, headers, body  # type: ignore[return-value]


def test_request_shape_and_exact_spin_headers(server: Server) -> None:
    r = server.request(
        "PUT", "/echo/ada/rest/of/path?q=1&r=2", content=b"the body", headers={"X-Custom": "yes"}
    )
    assert r.status_code == 200
    first, headers, body = parse_echo(r.text)
    assert first == "PUT /echo/ada/rest/of/path?q=1&r=2"
    assert body == "the body"
    h = dict(headers)
    assert h["x-custom"] == "yes"
    assert "connection" not in h
    spin = {k: v for k, v in headers if k.startswith("spin-")}
    host = server.url.removeprefix("http://")
    assert spin == {
        "spin-full-url": f"http://{host}/echo/ada/rest/of/path?q=1&r=2",
        "spin-path-info": "/rest/of/path",
        "spin-matched-route": "/echo/:name/...",
        "spin-base-path": "/",
        "spin-raw-component-route": "/echo/:name/...",
        "spin-component-route": "/echo/:name",
        "spin-client-addr": spin["spin-client-addr"],
        "spin-path-match-name": "ada",
    }
    assert spin["spin-client-addr"].startswith("127.0.0.1:")


def test_a_route_with_a_trailing_slash_reports_it_as_spin_does(server: Server) -> None:
    r = server.get("/norm")
    assert r.status_code == 200
    h = dict(parse_echo(r.text)[1])
    assert h["spin-matched-route"] == "/norm"  # Spin's router strips one trailing `/`
    assert h["spin-raw-component-route"] == h["spin-component-route"] == "/norm/"
    assert h["spin-path-info"] == ""


def test_large_body_streams_through(server: Server) -> None:
    body = bytes(range(256)) * 4096  # 1 MiB
    r = server.request("POST", "/echo/x/", content=body)
    assert r.status_code == 200
    assert r.content.endswith(b"\n\n" + body)


@pytest.mark.parametrize("route", ["/slow", "/instant"])
def test_response_body_is_streamed_as_the_guest_writes_it(server: Server, route: str) -> None:
    """`/slow` waits with `subscribe-duration`; `/instant` with the native `now` plus 1.5 s
    and wasmlet's `subscribe-instant`, so both clocks must count from the same start."""
    arrivals: list[tuple[float, bytes]] = []
    t0 = time.monotonic()
    with server.client() as c, c.stream("GET", route) as r:
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/plain"
        for chunk in r.iter_raw():
            arrivals.append((time.monotonic() - t0, chunk))
    body = b"".join(chunk for _, chunk in arrivals)
    assert body == b"first\nsecond\n"
    first_at = next(t for t, chunk in arrivals if chunk.startswith(b"first"))
    assert first_at < 1.0, arrivals  # before the guest's 1.5 s wait ended
    assert arrivals[-1][0] >= 1.4, arrivals


def test_component_environment_reaches_the_guest(server: Server) -> None:
    r = server.get("/env")
    assert r.status_code == 200
    assert sorted(r.content.decode().splitlines()) == [
        "EMPTY=",
        "GREETING=hello there",
        "UNICODE=grüß",
    ]
    assert server.get("/env-none").content == b""  # nothing else leaks in


def test_finished_response_goes_out_while_the_guest_still_runs(server: Server) -> None:
    """The guest finishes its body, then waits 1.5 s: the client has the whole response
    (held whole, with a content-length) long before the guest returns."""
    t0 = time.monotonic()
    r = server.get("/finish-then-wait")
    elapsed = time.monotonic() - t0
    assert (r.status_code, r.content) == (200, b"first\nsecond\n")
    assert r.headers["content-length"] == "13"
    assert elapsed < 1.0, elapsed


def test_client_that_leaves_mid_stream_does_not_block_the_server(server: Server) -> None:
    with server.client() as c, c.stream("GET", "/slow") as r:
        next(r.iter_raw())  # take the first chunk, then hang up
    time.sleep(2)
    assert server.get("/hello").status_code == 200


def test_chunked_request_body_streams_to_the_guest(server: Server) -> None:
    parts = [bytes([i]) * 65536 for i in range(16)]  # 1 MiB, sent as it is produced

    def produce() -> Iterator[bytes]:
        yield from parts

    r = server.request("POST", "/echo/x/", content=produce())
    assert r.status_code == 200
    assert r.content.endswith(b"\n\n" + b"".join(parts))


def test_host_calls_with_two_borrowed_handles(server: Server) -> None:
    """`poll` over two pollables and `blocking-splice` (two borrows each): wasmtime 50 traps
    on these unless concurrency support is off (engine.py)."""
    body = bytes(range(256)) * 1024  # 256 KiB, spliced 4 KiB at a time
    t0 = time.monotonic()
    r = server.request("POST", "/poll-splice", content=body)
    elapsed = time.monotonic() - t0
    assert r.status_code == 200, server.log[-2000:]
    assert r.content == b"ready:1\n" + body  # the 20 ms pollable, not the 2 s one
    assert elapsed < 1.5


def test_trap_mid_body_cuts_the_body_short(server: Server) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        server.get("/trap")
    assert server.logged("component trap trapped: wasm trap")
    assert server.get("/hello").status_code == 200


def test_no_response_is_500(server: Server) -> None:
    r = server.get("/no-response")
    assert (r.status_code, r.content) == (500, b"")
    assert server.logged("did not set a response")


def test_looping_component_times_out(server: Server) -> None:
    t0 = time.monotonic()
    r = server.get("/loop")
    assert (r.status_code, r.content) == (500, b"")
    assert 1.9 <= time.monotonic() - t0 < 6
    assert server.logged("component loop timed out")
    assert server.get("/hello").status_code == 200


def test_a_looping_guest_does_not_hold_up_the_others(tmp_path: Path, cache_dir: Path) -> None:
    """One guest runs at a time per worker (gate.py), but a guest that keeps running makes
    the others wait at most the gate's patience (50 ms), not until its deadline: the other
    requests are all answered while the loop still runs (its own server, with a deadline far
    enough away for that to hold on a loaded machine)."""
    server = start_server(write_app(tmp_path, APP), "--request-timeout", "8", cache_dir=cache_dir)
    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            looping = pool.submit(server.get, "/loop")
            time.sleep(0.3)  # the loop is running
            t0 = time.monotonic()
            for _ in range(5):
                assert server.get("/hello").status_code == 200
            assert time.monotonic() - t0 < 3
            assert not looping.done()
            assert looping.result().status_code == 500
    finally:
        server.stop(signal.SIGKILL)


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_leaked_resources_are_freed_with_the_instance(server: Server) -> None:
    with server.client() as c:
        for _ in range(5):  # warm up: pools and caches reach their steady size
            assert c.get("/leak").status_code == 200
        before = _rss_kib(server.proc.pid)
        for _ in range(40):  # 40 x 20,000 leaked `fields`
            assert c.get("/leak").status_code == 200
        after = _rss_kib(server.proc.pid)
    # If the 800,000 host objects were kept, RSS would grow by well over 100 MiB.
    assert after - before < 30 * 1024, (before, after)


def test_spin_inbound_http(server: Server) -> None:
    r = server.request("POST", "/inbound/a?b=c", content=b"payload")
    assert r.status_code == 200
    assert r.headers["x-handler"] == "inbound-http"
    assert r.text == "POST /inbound/a?b=c\npayload"


def test_spin_inbound_http_rejects_unknown_method(server: Server) -> None:
    assert server.request("TRACE", "/inbound/x").status_code == 405


def test_health_still_served(server: Server) -> None:
    assert server.get("/.well-known/spin/health").text == "OK"


def test_two_handlers_is_a_startup_error(tmp_path: Path) -> None:
    write_app(
        tmp_path,
        f"""
        spin_manifest_version = 2
        [application]
        name = "two"
        [[trigger.http]]
        route = "/..."
        component = "two"
        [component.two]
        source = "{COMPONENTS / "two-handlers.wasm"}"
        """,
    )
    r = run_cli("up", "-f", str(tmp_path), "--listen", "127.0.0.1:0")
    assert r.returncode == 1
    assert "exports more than one HTTP handler" in r.stderr


def test_core_module_with_spin_executor_is_a_clear_error(tmp_path: Path) -> None:
    write_app(
        tmp_path,
        """
        spin_manifest_version = 2
        [application]
        name = "m"
        [[trigger.http]]
        route = "/..."
        component = "m"
        [component.m]
        source = "{testbed}"
        """,
    )
    r = run_cli("up", "-f", str(tmp_path), "--listen", "127.0.0.1:0")
    assert r.returncode == 1
    assert "is a core module" in r.stderr
    assert 'executor = { type = "wagi" }' in r.stderr


def test_component_with_wagi_executor_is_a_clear_error(tmp_path: Path) -> None:
    write_app(
        tmp_path,
        f"""
        spin_manifest_version = 2
        [application]
        name = "w"
        [[trigger.http]]
        route = "/..."
        component = "w"
        executor = {{ type = "wagi" }}
        [component.w]
        source = "{COMPONENTS / "hello.wasm"}"
        """,
    )
    r = run_cli("up", "-f", str(tmp_path), "--listen", "127.0.0.1:0")
    assert r.returncode == 1
    assert "is a Wasm component, but the Wagi executor" in r.stderr
