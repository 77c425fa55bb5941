"""The server's defences against guests that wait and write, and clients that trickle
(issue 18, items 1, 2, 4 and 6), each through the real `wasmlet up` on loopback:

1. the request timeout holds while a guest waits in a host call (a Wagi `nanosleep`, a
   component's `pollable.block` or socket read, an outbound response, a Redis command);
2. guests waiting in host calls do not hold up other requests (pool.py), in `wasmlet host`
   neither within an app, and many waiting Python components fit the instance pool;
3. slow request bodies cost no thread and end with 408 (`--body-read-timeout`);
4. a Wagi guest's stdout is capped (`--max-wagi-output`: 500) and released after each request.

Guests: guests/c/misbehave.c (Wagi: sleeps, polls, writes) and guests/components/sleep.wat
(waits 5 s on a pollable, then answers).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from support.component_guests import python_app
from support.env import FIXTURES, IN_CI, WAGI
from support.server import Server, start_host, start_server, write_app

MISBEHAVE = WAGI / "misbehave.wasm"
COMPONENTS = FIXTURES / "components"

APP = f"""
spin_manifest_version = 2
[application]
name = "defences"

[[trigger.http]]
route = "/m/..."
component = "misbehave"
executor = {{ type = "wagi" }}

[[trigger.http]]
route = "/hello"
component = "hello"
executor = {{ type = "wagi" }}

[[trigger.http]]
route = "/sleep"
component = "sleep"

[[trigger.http]]
route = "/echo/..."
component = "echo"

[[trigger.http]]
route = "/component-hello"
component = "component-hello"

[[trigger.http]]
route = "/tcp/..."
component = "tcp"

[component.misbehave]
source = "{MISBEHAVE}"

[component.hello]
source = "{{hello}}"

[component.sleep]
source = "{COMPONENTS / "sleep.wasm"}"

[component.echo]
source = "{COMPONENTS / "echo.wasm"}"

[component.component-hello]
source = "{COMPONENTS / "hello.wasm"}"

[component.tcp]
source = "{COMPONENTS / "tcp-client.wasm"}"
allowed_outbound_hosts = ["tcp://127.0.0.1:*"]
"""


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_app(tmp_path_factory.mktemp("defences"), APP)


def _serve(app: Path, cache_dir: Path, *args: str) -> Iterator[Server]:
    server = start_server(app, *args, cache_dir=cache_dir)
    yield server
    if server.alive():
        server.stop(signal.SIGKILL)


@pytest.fixture(scope="module")
def strict(app_dir: Path, cache_dir: Path) -> Iterator[Server]:
    """Short limits: a 2 s request timeout, a 2 s body timeout, 1 MiB of Wagi output."""
    yield from _serve(
        app_dir,
        cache_dir,
        "--request-timeout",
        "2",
        "--body-read-timeout",
        "2",
        "--max-wagi-output",
        "1Mi",
        "--threads",
        "8",
    )


@pytest.fixture(scope="module")
def patient(app_dir: Path, cache_dir: Path) -> Iterator[Server]:
    """Defaults but for a fixed number of threads (the number the issue was found with)."""
    yield from _serve(app_dir, cache_dir, "--threads", "8")


def timed(
    server: Server, path: str, method: str = "GET", **kw: object
) -> tuple[httpx.Response, float]:
    t0 = time.monotonic()
    r = server.request(method, path, **kw)
    return r, time.monotonic() - t0


def hello_latencies(server: Server, n: int = 5) -> list[float]:
    out = []
    for _ in range(n):
        r, elapsed = timed(server, "/hello")
        assert r.status_code == 200
        out.append(elapsed)
    return out


# -- 1. the request timeout holds while a guest waits ------------------------------------------


def test_wagi_guest_sleeping_past_the_timeout_gets_500_at_the_timeout(strict: Server) -> None:
    r, elapsed = timed(strict, "/m/?mode=sleep&ms=20000")
    assert r.status_code == 500
    assert 1.8 < elapsed < 3.5, elapsed  # not after the guest's 20 s
    assert strict.logged("component misbehave timed out")
    assert strict.get("/hello").status_code == 200


def test_wagi_clock_waits_within_the_timeout_still_work(strict: Server) -> None:
    r, elapsed = timed(strict, "/m/?mode=sleep&ms=300")
    assert (r.status_code, r.text) == (200, "slept 300\n")
    assert 0.28 < elapsed < 1.5
    # Absolute waits on either clock: the guest measures them with its own monotonic clock.
    for clock in ("mono", "real"):
        r = strict.get(f"/m/?mode=until&ms=400&clock={clock}")
        assert r.status_code == 200
        waited, err = r.text.split()[1], r.text.split()[3]
        assert 390 <= int(waited) < 1000 and err == "0", r.text


def test_wagi_poll_on_a_descriptor_is_answered_by_wasmtime_at_once(strict: Server) -> None:
    """poll() on stdin with a 5 s timeout: an fd subscription (stdin is ready) goes to
    wasmtime's own poll_oneoff, through the relay."""
    r, elapsed = timed(strict, "/m/?mode=poll&ms=5000")
    assert (r.status_code, r.text) == (200, "poll=1 revents=1\n")
    assert elapsed < 1.5


def test_component_waiting_on_a_pollable_past_the_timeout_gets_500(strict: Server) -> None:
    r, elapsed = timed(strict, "/sleep")  # the guest waits 5 s before it answers
    assert r.status_code == 500
    assert 1.8 < elapsed < 3.5, elapsed
    assert strict.get("/component-hello").status_code == 200


def test_component_waiting_on_a_socket_past_the_timeout_gets_500(strict: Server) -> None:
    """The tcp-client guest sends its body to a peer that reads it and then says nothing for
    10 s: the guest's read ends at its deadline."""
    peer = SlowUpstream(10)
    try:
        r, elapsed = timed(strict, f"/tcp/127.0.0.1:{peer.port}", method="POST", content=b"x")
    finally:
        peer.close()
    assert r.status_code == 500
    assert 1.8 < elapsed < 3.5, elapsed


def test_shutdown_with_sleeping_guests_takes_the_timeout_not_their_sleep(
    app_dir: Path, cache_dir: Path
) -> None:
    server = start_server(app_dir, "--request-timeout", "2", cache_dir=cache_dir)
    try:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(server.get, "/m/?mode=sleep&ms=20000") for _ in range(8)]
            time.sleep(0.5)
            t0 = time.monotonic()
            assert server.stop(signal.SIGTERM, timeout=15) == 0
            assert time.monotonic() - t0 < 7  # the request timeout + 5 s at most
            statuses = []
            for f in futures:
                try:
                    statuses.append(f.result(timeout=10).status_code)
                except httpx.HTTPError:
                    statuses.append(0)
            assert all(s in (500, 0) for s in statuses), statuses
    finally:
        if server.alive():
            server.stop(signal.SIGKILL)


# -- 2. waiting guests do not hold up other requests -------------------------------------------


def raw_requests(url: str, paths: list[str], host: str | None = None) -> list[socket.socket]:
    """Send a GET for each path on a connection of its own (plain sockets: cheap for the
    test process, so that what is measured is the server)."""
    address, port = url.removeprefix("http://").split(":")
    socks = []
    for path in paths:
        s = socket.create_connection((address, int(port)), timeout=30)
        head = f"GET {path} HTTP/1.1\r\nHost: {host or address}\r\nConnection: close\r\n\r\n"
        s.sendall(head.encode())
        socks.append(s)
    return socks


def raw_statuses(socks: list[socket.socket]) -> list[int]:
    """The status of each response (0: none), the connections closed."""
    statuses = []
    for s in socks:
        data = b""
        try:
            while chunk := s.recv(65536):
                data += chunk
        except OSError:
            pass
        s.close()
        statuses.append(int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0)
    return statuses


def test_guests_waiting_in_host_calls_do_not_starve_other_routes(patient: Server) -> None:
    """24 Wagi guests in `nanosleep` and 24 components blocked on a pollable, 5 s each,
    with 8 threads: /hello is answered at once, and the sleepers sleep side by side."""
    hello_latencies(patient, 2)  # warm: the first request to a component instantiates it
    paths = ["/m/?mode=sleep&ms=5000"] * 24 + ["/sleep"] * 24
    t0 = time.monotonic()
    sleepers = raw_requests(patient.url, paths)
    time.sleep(1.0)  # all of them are waiting now
    latencies = hello_latencies(patient)
    statuses = raw_statuses(sleepers)
    took = time.monotonic() - t0
    assert max(latencies) < 0.5, latencies
    assert statuses == [200] * len(paths)
    assert took < 9, took  # together, not 6 rounds of 8 (30 s)


def test_without_room_for_waiters_they_do_hold_up_others(app_dir: Path, cache_dir: Path) -> None:
    """The contrast (and the flag): with `--max-waiting 0` two sleepers take both threads."""
    server = start_server(app_dir, "--threads", "2", "--max-waiting", "0", cache_dir=cache_dir)
    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            sleepers = [pool.submit(server.get, "/m/?mode=sleep&ms=2000") for _ in range(2)]
            time.sleep(0.5)
            r, elapsed = timed(server, "/hello")
            assert r.status_code == 200
            assert elapsed > 1.0, elapsed  # queued behind the sleepers
            assert [f.result(10).status_code for f in sleepers] == [200, 200]
    finally:
        server.stop(signal.SIGKILL)


HOST_APP = f"""
spin_manifest_version = 2
[application]
name = "sleepy"

[[trigger.http]]
route = "/m/..."
component = "misbehave"
executor = {{ type = "wagi" }}

[[trigger.http]]
route = "/hello"
component = "hello"
executor = {{ type = "wagi" }}

[component.misbehave]
source = "{MISBEHAVE}"

[component.hello]
source = "{{hello}}"
"""


def test_in_a_host_an_apps_waiting_guests_do_not_hold_up_its_other_routes(
    tmp_path: Path, cache_dir: Path
) -> None:
    """`wasmlet host --threads 8`: one app may have 4 guests busy (`--max-app-concurrency`),
    but its 16 sleeping guests and 8 slow request bodies do not count: its /hello answers
    at once, and the sleepers sleep side by side."""
    apps = tmp_path / "apps"
    write_app(apps / "sleepy", HOST_APP)
    server = start_host(apps, "--threads", "8", "--body-read-timeout", "3", cache_dir=cache_dir)
    host = "sleepy.localhost"
    try:
        assert server.get("/hello", headers={"host": host}).status_code == 200  # built
        t0 = time.monotonic()
        sleepers = raw_requests(server.url, ["/m/?mode=sleep&ms=3000"] * 16, host)
        slow = SlowBodies(server.url, "/m/?mode=hello", 8, host=host)
        try:
            time.sleep(0.5)
            latencies = []
            for _ in range(5):
                r, elapsed = timed(server, "/hello", headers={"host": host})
                assert r.status_code == 200
                latencies.append(elapsed)
            statuses = raw_statuses(sleepers)
            took = time.monotonic() - t0
        finally:
            slow.close()
        assert max(latencies) < 0.5, latencies
        assert statuses == [200] * 16
        assert took < 9, took  # side by side, not 4 rounds of 4 (12 s)
    finally:
        server.stop(signal.SIGKILL)


# -- 3. slow request bodies ---------------------------------------------------------------------


class SlowBodies:
    """Clients that send a request head at once and its body one byte every `interval`."""

    def __init__(
        self,
        url: str,
        path: str,
        count: int,
        length: int = 1000,
        interval: float = 0.1,
        host: str | None = None,
    ) -> None:
        address, port = url.removeprefix("http://").split(":")
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host or address}\r\nContent-Length: {length}\r\n\r\n"
        )
        self.socks = []
        for _ in range(count):
            s = socket.create_connection((address, int(port)), timeout=10)
            s.sendall(head.encode())
            self.socks.append(s)
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._trickle, args=(length, interval))
        self._thread.start()

    def _trickle(self, length: int, interval: float) -> None:
        while self.sent < length - 1 and not self._stop.wait(interval):
            for s in self.socks:
                with contextlib.suppress(OSError):  # answered and closed already
                    s.send(b"x")
            self.sent += 1

    def responses(self, timeout: float) -> list[bytes]:
        """What each client got back, until the server closed the connection."""
        out = []
        deadline = time.monotonic() + timeout
        for s in self.socks:
            s.settimeout(max(0.1, deadline - time.monotonic()))
            data = b""
            try:
                while chunk := s.recv(65536):
                    data += chunk
            except OSError:
                pass
            out.append(data)
        return out

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for s in self.socks:
            s.close()


@pytest.fixture
def slow_bodies() -> Iterator[Callable[..., SlowBodies]]:
    made: list[SlowBodies] = []

    def make(
        url: str, path: str, count: int, length: int = 1000, interval: float = 0.1
    ) -> SlowBodies:
        made.append(SlowBodies(url, path, count, length, interval))
        return made[-1]

    yield make
    for clients in made:
        clients.close()


def test_slow_bodies_to_a_component_do_not_delay_other_routes(
    strict: Server, slow_bodies: Callable[..., SlowBodies]
) -> None:
    """40 clients sending a body one byte at a time to a streaming component: other routes
    answer at once, and each slow client gets 408 when its body time is up."""
    t0 = time.monotonic()
    clients = slow_bodies(strict.url, "/echo/slow", 40)
    time.sleep(0.3)
    latencies = hello_latencies(strict, 10)
    component_latencies = []
    for _ in range(5):
        r, elapsed = timed(strict, "/component-hello")
        assert r.status_code == 200
        component_latencies.append(elapsed)
    assert max(latencies) < 0.3, latencies
    assert max(component_latencies) < 0.3, component_latencies
    responses = clients.responses(timeout=6)
    took = time.monotonic() - t0
    assert all(r.startswith(b"HTTP/1.1 408 ") for r in responses), responses[:3]
    assert all(b"connection: close" in r.lower() for r in responses)
    assert took < 6
    assert clients.sent < 60  # ended at the timeout, not when the body was complete


def test_slow_body_to_a_wagi_route_gets_408(
    strict: Server, slow_bodies: Callable[..., SlowBodies]
) -> None:
    clients = slow_bodies(strict.url, "/m/?mode=hello", 1)
    t0 = time.monotonic()
    (response,) = clients.responses(timeout=6)
    assert response.startswith(b"HTTP/1.1 408 "), response
    assert 1.8 < time.monotonic() - t0 < 4


def test_a_slow_but_steady_upload_is_not_cut(strict: Server) -> None:
    """1 KiB every 0.1 s for 3 s (past the 2 s timeout): each 500 bytes received buys a
    second more, so the upload completes."""
    parts = [bytes([65 + i % 26]) * 1024 for i in range(30)]

    def produce() -> Iterator[bytes]:
        for part in parts:
            time.sleep(0.1)
            yield part

    r = strict.request("POST", "/echo/steady", content=produce())
    assert r.status_code == 200
    assert r.content.endswith(b"\n\n" + b"".join(parts))


def test_a_body_that_stalls_while_the_guest_reads_it_ends_the_request(strict: Server) -> None:
    """More than the first 64 KiB arrive, so the guest starts reading; then the client
    stalls. The guest's read fails at the body's time limit (echo then traps: the body is
    cut short), and the server goes on serving."""
    host, port = strict.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(
            f"POST /echo/stall HTTP/1.1\r\nHost: {host}\r\nContent-Length: 1000000\r\n\r\n".encode()
        )
        s.sendall(b"y" * 100_000)
        t0 = time.monotonic()
        data = b""
        try:
            while chunk := s.recv(65536):
                data += chunk
        except OSError:
            pass
        elapsed = time.monotonic() - t0
    assert data.startswith(b"HTTP/1.1 200 "), data[:100]  # echo answers before reading
    assert elapsed < 5, elapsed  # the 2 s body limit (plus 200 s per 100 KB would be too long)
    assert strict.get("/hello").status_code == 200


# -- 4. Wagi output: capped, and released ------------------------------------------------------


def _stdout_memfd_sizes(pid: int) -> list[int]:
    sizes = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if "wasmlet-stdout" in os.readlink(f"/proc/{pid}/fd/{fd}"):
                sizes.append(os.stat(f"/proc/{pid}/fd/{fd}").st_size)
        except OSError:
            pass  # closed meanwhile
    return sizes


def test_wagi_output_past_the_cap_is_500(strict: Server) -> None:
    r = strict.get("/m/?mode=write&bytes=600000")
    assert r.status_code == 200 and len(r.content) == 600_000
    r = strict.get("/m/?mode=write&bytes=2000000")  # past --max-wagi-output 1Mi
    assert (r.status_code, r.content) == (500, b"")
    assert strict.logged("component misbehave wrote more than 1048576 bytes to stdout")


def test_an_endless_writer_is_cut_off_and_holds_no_memory(strict: Server) -> None:
    r, elapsed = timed(strict, "/m/?mode=write&bytes=0")  # writes until stopped
    assert r.status_code == 500
    assert elapsed < 3.5  # its writes fail at the cap; the deadline ends it
    assert all(size == 0 for size in _stdout_memfd_sizes(strict.proc.pid))
    assert strict.get("/hello").status_code == 200


def test_wagi_output_is_released_when_the_request_ends(patient: Server) -> None:
    """Under the default 64 MiB cap: a 20 MB response goes out, and no thread keeps it."""
    for _ in range(3):
        r = patient.get("/m/?mode=write&bytes=20000000")
        assert r.status_code == 200 and len(r.content) == 20_000_000
    sizes = _stdout_memfd_sizes(patient.proc.pid)
    assert sizes and all(size == 0 for size in sizes), sizes
    r = patient.get("/m/?mode=write&bytes=100000000")  # the 100 MB: past 64 MiB
    assert r.status_code == 500
    assert all(size == 0 for size in _stdout_memfd_sizes(patient.proc.pid))


def test_wagi_stderr_is_capped_for_the_log(strict: Server) -> None:
    r = strict.get("/m/?mode=stderr&bytes=3000000")
    assert (r.status_code, r.text) == (200, "ok\n")
    assert strict.logged("component misbehave: stderr past 1048576 bytes dropped")


# -- host calls the guest does not control: outbound HTTP and Spin APIs -------------------------


def _redis_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture(scope="module")
def python_server(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Iterator[Server]:
    app = python_app(
        tmp_path_factory.mktemp("python-defences") / "app",
        allowed_outbound_hosts=["redis://127.0.0.1:6379", "http://127.0.0.1:*"],
    )
    yield from _serve(app, cache_dir, "--request-timeout", "3")


def test_outbound_response_that_stalls_ends_at_the_request_timeout(
    python_server: Server,
) -> None:
    """An upstream that sends its head and part of its body, then nothing: the guest's read
    waits no longer than its time left, so it times out itself (no answer from the
    trigger's backstop)."""
    upstream = socket.create_server(("127.0.0.1", 0))
    port = upstream.getsockname()[1]
    held: list[socket.socket] = []

    def serve() -> None:
        conn, _ = upstream.accept()
        held.append(conn)
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")

    threading.Thread(target=serve, daemon=True).start()
    try:
        r, elapsed = timed(python_server, f"/outbound?url=http://127.0.0.1:{port}/")
        assert r.status_code == 500
        assert 2.5 < elapsed < 3.8, elapsed
        assert not python_server.logged("still blocked past its deadline", timeout=1.5)
    finally:
        for s in [*held, upstream]:
            s.close()


class SlowUpstream:
    """An HTTP server that answers every request `delay` seconds after it arrives."""

    def __init__(self, delay: float) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=256)
        self.port = self.sock.getsockname()[1]
        self.delay = delay
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.sock.accept()
                threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.recv(65536)
            time.sleep(self.delay)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

    def close(self) -> None:
        self.sock.close()


def test_many_python_guests_waiting_at_once_fit_the_instance_pool(python_server: Server) -> None:
    """40 Python components (14 core modules each) waiting on a slow upstream at once, more
    than the pool's threads: the pooling allocator is sized for every thread the pool may
    have (once, 256 core instances ran out at 18 and every component request got 500)."""
    upstream = SlowUpstream(1.5)
    try:
        path = f"/outbound?url=http://127.0.0.1:{upstream.port}/"
        statuses = raw_statuses(raw_requests(python_server.url, [path] * 40))
        assert statuses == [200] * 40, statuses
        assert python_server.get("/").status_code == 200
        assert "concurrent limit" not in python_server.log
    finally:
        upstream.close()


def test_a_spin_api_call_blocking_past_the_deadline_is_answered_for(
    python_server: Server,
) -> None:
    """A Redis BLPOP of 6 s with a 3 s request timeout: the trigger answers 500 at the
    deadline plus 1 s, the rest of the host serves meanwhile, and the guest never resumes."""
    if not _redis_reachable():
        message = "Redis on 127.0.0.1:6379 not reachable"
        if IN_CI:
            pytest.fail(message + " — required under CI=true")
        pytest.skip(message)
    key = f"wasmlet-{uuid.uuid4().hex}"
    spec = {
        "address": "redis://127.0.0.1:6379/15",
        "ops": [{"op": "execute", "command": "BLPOP", "args": [["binary", key], ["int64", 6]]}],
    }
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        t0 = time.monotonic()
        blocked = pool.submit(python_server.request, "POST", "/redis", content=json.dumps(spec))
        time.sleep(0.5)
        assert python_server.get("/").status_code == 200  # served while one is blocked
        r = blocked.result(timeout=10)
        elapsed = time.monotonic() - t0
    assert r.status_code == 500
    assert 3.5 < elapsed < 5.5, elapsed
    assert python_server.logged("still blocked past its deadline")
