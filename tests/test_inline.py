"""Guests that cannot wait run on the event loop's thread (executors/wasi_http.py, `inline`):
which components qualify, that they start no worker thread, and that one that computes for
long or answers a lot is stopped, run again on a thread, and runs on threads from then on,
while the server keeps answering everyone else."""

from __future__ import annotations

import concurrent.futures
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.env import FIXTURES
from support.server import Server, start_server, write_app

from wasmlet.engine import EngineSettings
from wasmlet.executors import CollectedResponse, HttpRequest, http_executor, wasi_http
from wasmlet.loader import load_app
from wasmlet.running import AppOptions, build_app
from wasmlet.trigger.http.router import RoutePattern

COMPONENTS = FIXTURES / "components"

APP = f"""
spin_manifest_version = 2
[application]
name = "inline"

[[trigger.http]]
route = "/hello"
component = "hello"

[[trigger.http]]
route = "/echo/..."
component = "echo"

[[trigger.http]]
route = "/loop"
component = "loop"

[[trigger.http]]
route = "/sleep"
component = "sleep"

[[trigger.http]]
route = "/tcp/..."
component = "tcp"

[component.hello]
source = "{COMPONENTS / "hello.wasm"}"

[component.echo]
source = "{COMPONENTS / "echo.wasm"}"

[component.loop]
source = "{COMPONENTS / "loop.wasm"}"

[component.sleep]
source = "{COMPONENTS / "sleep.wasm"}"

[component.tcp]
source = "{COMPONENTS / "tcp-client.wasm"}"
allowed_outbound_hosts = ["tcp://127.0.0.1:*"]
"""


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_app(tmp_path_factory.mktemp("inline"), APP)


@pytest.fixture(scope="module")
def executors(app_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    tmp = tmp_path_factory.mktemp("inline-state")
    opts = AppOptions(state_dir=tmp / "state", engine=EngineSettings(cache_dir=tmp / "cache"))
    running = build_app(load_app(app_dir), opts)
    running.start()
    yield {c: http_executor(running.runtime, c, c, {}) for c in ("hello", "echo", "sleep", "tcp")}
    running.close()


def _request(path: str, body: bytes = b"") -> HttpRequest:
    return HttpRequest("POST", path, "", [("host", "localhost:3000")], body, ("127.0.0.1", 1))


def test_only_components_that_cannot_wait_run_inline(executors: dict) -> None:
    """hello and echo import only wasi:http/types and wasi:io streams; sleep imports
    wasi:io/poll (it waits on a pollable), tcp-client wasi:sockets."""
    assert executors["hello"].inline and executors["echo"].inline
    assert not executors["sleep"].inline
    assert not executors["tcp"].inline


def test_an_inline_run_answers_whole(executors: dict) -> None:
    match = RoutePattern.parse("/echo/...").match("/echo/x")
    assert match is not None
    response = executors["echo"].handle_inline(_request("/echo/x", b"ping"), match)
    assert response is not None and response.status == 200
    assert response.body.startswith(b"POST /echo/x\n") and response.body.endswith(b"\nping")
    assert executors["echo"].inline


def test_a_big_inline_answer_is_run_again_on_a_thread(
    executors: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An inline run holds its response; past INLINE_MAX_BODY it is given up (not logged as
    a failure), and the executor no longer runs inline; `handle` then answers in full."""
    echo = executors["echo"]
    monkeypatch.setattr(wasi_http, "INLINE_MAX_BODY", 16)
    monkeypatch.setattr(echo, "inline", True)
    match = RoutePattern.parse("/echo/...").match("/echo/x")
    assert match is not None
    body = b"0123456789" * 10
    assert echo.handle_inline(_request("/echo/x", body), match) is None
    assert not echo.inline
    sink = CollectedResponse()
    echo.handle(_request("/echo/x", body), match, sink)
    assert sink.response is not None and sink.response.body.endswith(b"\n" + body)


@pytest.fixture(scope="module")
def server(app_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start_server(app_dir, "--request-timeout", "1", cache_dir=tmp_path_factory.mktemp("cache"))
    yield s
    s.stop(signal.SIGKILL)


def _threads(server: Server) -> int:
    return len(list(Path(f"/proc/{server.proc.pid}/task").iterdir()))


def test_inline_guests_start_no_worker_thread(server: Server) -> None:
    """100 requests to hello leave the server with the threads it had (a guest pool thread
    is started for the first request that needs one): a component that waits starts one."""
    before = _threads(server)
    with httpx.Client(base_url=server.url) as client:
        for _ in range(100):
            r = client.get("/hello")
            assert r.status_code == 200 and r.text == "Hello, wasi:http!"
        assert _threads(server) == before
        r = client.get("/sleep", timeout=10)  # it waits 5 s: past the 1 s request timeout
        assert r.status_code == 500
    assert _threads(server) > before


def test_a_looping_guest_is_moved_to_a_thread_and_others_are_served(server: Server) -> None:
    """loop.wasm cannot wait but never returns: its inline run is stopped after two epoch
    ticks, it runs again on a thread until the 1 s request timeout (500), and meanwhile
    hello answers at once; later requests to it go straight to a thread."""
    with (
        concurrent.futures.ThreadPoolExecutor(1) as pool,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        began = time.monotonic()
        looping = pool.submit(httpx.get, server.url + "/loop", timeout=10)
        time.sleep(0.2)
        latencies = []
        while not looping.done() and time.monotonic() - began < 5:
            t0 = time.monotonic()
            assert client.get("/hello").status_code == 200
            latencies.append(time.monotonic() - t0)
            time.sleep(0.02)
        assert looping.result().status_code == 500
        assert 0.9 < time.monotonic() - began < 5
        assert latencies and max(latencies) < 0.5, latencies
        assert server.logged("component loop ran longer than 20 ms inline")
        assert server.log.count("component loop timed out") == 1  # the thread's run only
        assert client.get("/loop").status_code == 500
    assert server.log.count("ran longer than 20 ms inline") == 1
