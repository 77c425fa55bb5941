"""wasi:sockets: outbound TCP under `allowed_outbound_hosts`, through the real server.

The guest (guests/components/tcp-client.wat) connects to the `HOST:PORT` in the last segment of
its path, sends the request body, shuts down its sending side and answers with what the peer
sent back until it closed; a failed wasi:sockets call answers 500 with the error-code's name.
The peer is a TCP echo server run by the test.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import socket
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.env import FIXTURES, free_port
from support.server import Server, start_server, write_app

from wasmlet.outbound import OutboundPolicy
from wasmlet.wasi import io as wasi_io
from wasmlet.wasi import sockets
from wasmlet.wasi._abi import Err, Ok
from wasmlet.wasi._state import InstanceState, active, table
from wasmlet.wasi.io import InputStream, IoError, OutputStream, Pollable, StreamClosed, wait_any
from wasmlet.wasi.sockets.tcp import TcpSocket
from wasmlet.wasi.sockets.types import SocketError

COMPONENT = FIXTURES / "components" / "tcp-client.wasm"


class EchoServer:
    """Answers each connection with `echo:` and everything it receives, then closes."""

    def __init__(self, delay: float = 0) -> None:
        self.delay = delay
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._echo, args=(conn, self.delay), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket, delay: float = 0) -> None:
        with conn:
            received = b""
            while chunk := conn.recv(65536):
                received += chunk
            time.sleep(delay)
            conn.sendall(b"echo:" + received)

    def close(self) -> None:
        self.sock.close()


def _app(echo_port: int, closed_port: int) -> str:
    routes = {
        "allowed": [f"tcp://127.0.0.1:{echo_port}"],
        "wildcard": ["*://127.0.0.1:*"],
        "cidr": ["tcp://127.0.0.0/8:*"],
        "range": [f"tcp://127.0.0.1:{echo_port - 1}..{echo_port + 1}"],
        "variable": ["tcp://{{ tcp_host }}:{{ tcp_port }}"],
        "other-ip": [f"tcp://10.0.0.1:{echo_port}"],
        "other-port": [f"tcp://127.0.0.1:{closed_port}"],
        "http-only": [f"http://127.0.0.1:{echo_port}"],
        "none": [],
        "name": [f"tcp://localhost:{echo_port}"],
    }
    text = f"""
        spin_manifest_version = 2
        [application]
        name = "sockets"
        [variables]
        tcp_host = {{ default = "127.0.0.1" }}
        tcp_port = {{ default = "{echo_port}" }}
    """
    for name, hosts in routes.items():
        quoted = ", ".join(f'"{h}"' for h in hosts)
        text += f"""
        [[trigger.http]]
        route = "/{name}/..."
        component = "{name}"
        [component.{name}]
        source = "{COMPONENT}"
        allowed_outbound_hosts = [{quoted}]
        """
    return text


@pytest.fixture(scope="module")
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def closed_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, echo: EchoServer, closed_port: int
) -> Iterator[Server]:
    app = write_app(tmp_path_factory.mktemp("sockets"), _app(echo.port, closed_port))
    s = start_server(app, "--request-timeout", "5", cache_dir=tmp_path_factory.mktemp("cache"))
    yield s
    s.stop(signal.SIGKILL)


def test_allowed_connection_round_trips_bytes(server: Server, echo: EchoServer) -> None:
    r = server.request("POST", f"/allowed/127.0.0.1:{echo.port}", content=b"hello, peer")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/plain"
    assert r.content == b"echo:hello, peer"


def test_large_body_both_ways(server: Server, echo: EchoServer) -> None:
    body = bytes(range(256)) * 2048  # 512 KiB
    r = server.request("POST", f"/allowed/127.0.0.1:{echo.port}", content=body)
    assert r.status_code == 200
    assert r.content == b"echo:" + body


@pytest.mark.parametrize("route", ["wildcard", "cidr", "range", "variable"])
def test_allowed_by_pattern(server: Server, echo: EchoServer, route: str) -> None:
    r = server.request("POST", f"/{route}/127.0.0.1:{echo.port}", content=b"x")
    assert (r.status_code, r.text) == (200, "echo:x")


@pytest.mark.parametrize(
    ("route", "target"),
    [
        ("allowed", "127.0.0.2:{port}"),  # another address, even on loopback
        ("other-ip", "127.0.0.1:{port}"),  # no permission for this IP
        ("other-port", "127.0.0.1:{port}"),  # the IP, but another port
        ("http-only", "127.0.0.1:{port}"),  # http:// does not allow raw TCP
        ("none", "127.0.0.1:{port}"),
        ("variable", "127.0.0.1:{other}"),
    ],
)
def test_denied_connection_is_access_denied(
    server: Server, echo: EchoServer, route: str, target: str
) -> None:
    before = echo.connections
    path = f"/{route}/" + target.format(port=echo.port, other=echo.port + 1)
    r = server.request("POST", path, content=b"x")
    assert (r.status_code, r.text) == (500, "access-denied")
    assert echo.connections == before  # nothing reached the peer


def test_guests_wait_for_their_peers_concurrently(server: Server) -> None:
    """Guests blocked on sockets wait together (one reactor thread serves all their waits)."""
    slow = EchoServer(delay=0.5)
    try:
        results: list[tuple[int, str]] = []

        def one(i: int) -> None:
            r = server.request("POST", f"/wildcard/127.0.0.1:{slow.port}", content=f"{i}".encode())
            results.append((r.status_code, r.text))

        threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - t0
    finally:
        slow.close()
    assert sorted(results) == [(200, f"echo:{i}") for i in range(6)]
    assert elapsed < 2.5  # not 6 x 0.5 s one after the other


def test_connection_refused(server: Server, closed_port: int) -> None:
    r = server.get(f"/wildcard/127.0.0.1:{closed_port}")
    assert (r.status_code, r.text) == (500, "connection-refused")


def test_name_lookup_of_an_allowed_name(server: Server, echo: EchoServer) -> None:
    r = server.request("POST", f"/name/localhost:{echo.port}", content=b"by name")
    assert (r.status_code, r.text) == (200, "echo:by name")


def test_name_lookup_denied_as_spin_does(server: Server, echo: EchoServer) -> None:
    # Spin refuses every lookup with permanent-resolver-failure; wasmlet refuses names that
    # no tcp:// entry names.
    r = server.get(f"/allowed/localhost:{echo.port}")
    assert (r.status_code, r.text) == (500, "permanent-resolver-failure")
    # A name allowed for one port does not open the resolved address's other ports.
    r = server.get(f"/name/localhost:{echo.port + 1}")
    assert (r.status_code, r.text) == (500, "access-denied")


def test_path_without_port_is_invalid_argument(server: Server) -> None:
    r = server.get("/allowed/nothing-here")
    assert (r.status_code, r.text) == (500, "invalid-argument")


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_no_fd_leak(server: Server, echo: EchoServer, closed_port: int) -> None:
    """Sockets close with the instance: those the guest dropped, and those it left behind
    (the refused and denied paths answer without dropping anything)."""
    pid = server.proc.pid
    requests = [
        (f"/allowed/127.0.0.1:{echo.port}", 200),
        (f"/wildcard/127.0.0.1:{closed_port}", 500),
        (f"/other-ip/127.0.0.1:{echo.port}", 500),
        (f"/name/localhost:{echo.port}", 200),
    ]
    with server.client() as client:  # one connection to the server throughout
        for path, _ in requests:  # warm up: thread pools, the sockets reactor
            client.post(path, content=b"w")
        time.sleep(0.2)
        before = _fds(pid)
        for _ in range(50):
            for path, status in requests:
                assert client.post(path, content=b"y").status_code == status
        time.sleep(0.2)
        after = _fds(pid)
    assert after <= before + 2, sorted(os.listdir(f"/proc/{pid}/fd"))


# -- the host functions in process --------------------------------------------------------------


def _call(name: str, *args: object) -> object:
    """Call wasmlet's wasi:sockets host function `name` (e.g. `[method]tcp-socket.shutdown`)."""
    for iface in sockets.INTERFACES:
        for f in iface.funcs:
            if f.name == name:
                return f.fn(*args)
    raise KeyError(name)


def _drop(resource: str, rep: int) -> None:
    """Drop `rep` as the guest does: through the resource's destructor (e.g. `tcp-socket`)."""
    for iface in (*wasi_io.INTERFACES, *sockets.INTERFACES):
        if resource in iface.resources:
            on_drop = iface.resources[resource][1]
            assert on_drop is not None
            on_drop(rep)
            return
    raise KeyError(resource)


def _addr(ip: str, port: int) -> object:
    parsed = ipaddress.ip_address(ip)
    if parsed.version == 4:
        return ("ipv4", {"port": port, "address": tuple(parsed.packed)})
    words = tuple(int.from_bytes(parsed.packed[i : i + 2], "big") for i in range(0, 16, 2))
    return ("ipv6", {"port": port, "flow-info": 0, "address": words, "scope-id": 0})


@pytest.fixture
def state() -> Iterator[InstanceState]:
    policy = OutboundPolicy.parse(["tcp://127.0.0.1:*", "tcp://[::1]:*"])
    caps = {sockets.OUTBOUND_SOCKETS: sockets.OutboundSockets(policy)}
    with active(InstanceState("test", caps, time.monotonic() + 5)) as s:
        yield s


def _connected(family: str, ip: str, port: int) -> tuple[int, int, int, int]:
    """(socket, input stream, output stream, network) reps of a connected TCP socket."""
    net = _call("instance-network")
    sock = _call("create-tcp-socket", family)
    assert isinstance(sock, Ok)
    assert _call("[method]tcp-socket.start-connect", sock.value, net, _addr(ip, port)) == Ok()
    while True:
        pollable = _call("[method]tcp-socket.subscribe", sock.value)
        assert isinstance(pollable, int)
        wait_any([table().get(pollable, Pollable)])
        _drop("pollable", pollable)  # as a guest does
        result = _call("[method]tcp-socket.finish-connect", sock.value)
        if result != Err("would-block"):
            break
    assert isinstance(result, Ok), result
    return sock.value, *result.value, net


def _exchange(sock: int, rin: int, rout: int, data: bytes) -> bytes:
    out = table().get(rout, OutputStream)
    assert out.check_write() > 0
    out.write(data)
    out.flush()
    assert _call("[method]tcp-socket.shutdown", sock, "send") == Ok()
    stream = table().get(rin, InputStream)
    received = b""
    with contextlib.suppress(StreamClosed):
        while True:
            received += stream.blocking_read(4096)
    return received


def test_socket_options_and_addresses(state: InstanceState, echo: EchoServer) -> None:
    sock, rin, rout, _ = _connected("ipv4", "127.0.0.1", echo.port)
    assert _call("[method]tcp-socket.address-family", sock) == "ipv4"
    assert _call("[method]tcp-socket.is-listening", sock) is False
    assert _call("[method]tcp-socket.remote-address", sock) == Ok(_addr("127.0.0.1", echo.port))
    local = _call("[method]tcp-socket.local-address", sock)
    assert isinstance(local, Ok) and local.value[1]["address"] == (127, 0, 0, 1)
    for name, value in [
        ("keep-alive-enabled", True),
        ("keep-alive-idle-time", 7_000_000_000),
        ("keep-alive-interval", 3_000_000_000),
        ("keep-alive-count", 4),
        ("hop-limit", 42),
    ]:
        assert _call(f"[method]tcp-socket.set-{name}", sock, value) == Ok(), name
        assert _call(f"[method]tcp-socket.{name}", sock) == Ok(value), name
    for name in ("receive-buffer-size", "send-buffer-size"):
        assert _call(f"[method]tcp-socket.set-{name}", sock, 65536) == Ok()
        size = _call(f"[method]tcp-socket.{name}", sock)
        assert isinstance(size, Ok) and size.value >= 65536
        assert _call(f"[method]tcp-socket.set-{name}", sock, 0) == Err("invalid-argument")
    assert _exchange(sock, rin, rout, b"opts") == b"echo:opts"


def test_ipv6_round_trip(state: InstanceState) -> None:
    try:
        server = socket.create_server(("::1", 0), family=socket.AF_INET6)
    except OSError:
        pytest.skip("no IPv6 loopback")
    port = server.getsockname()[1]

    def serve() -> None:
        conn, _ = server.accept()
        EchoServer._echo(conn)

    threading.Thread(target=serve, daemon=True).start()
    try:
        sock, rin, rout, _ = _connected("ipv6", "::1", port)
        assert _call("[method]tcp-socket.remote-address", sock) == Ok(_addr("::1", port))
        assert _exchange(sock, rin, rout, b"six") == b"echo:six"
    finally:
        server.close()


def test_state_errors(state: InstanceState, echo: EchoServer, closed_port: int) -> None:
    net = _call("instance-network")
    sock = _call("create-tcp-socket", "ipv4").value  # type: ignore[attr-defined]
    assert _call("[method]tcp-socket.finish-connect", sock) == Err("not-in-progress")
    assert _call("[method]tcp-socket.remote-address", sock) == Err("invalid-state")
    assert _call("[method]tcp-socket.shutdown", sock, "both") == Err("invalid-state")
    # Binding is refused as in Spin, so nothing listens.
    assert _call("[method]tcp-socket.start-bind", sock, net, _addr("127.0.0.1", 0)) == Err(
        "access-denied"
    )
    assert _call("[method]tcp-socket.start-listen", sock) == Err("invalid-state")
    assert _call("[method]tcp-socket.accept", sock) == Err("invalid-state")
    # Bad remote addresses.
    assert _call("[method]tcp-socket.start-connect", sock, net, _addr("127.0.0.1", 0)) == Err(
        "invalid-argument"
    )
    assert _call("[method]tcp-socket.start-connect", sock, net, _addr("::1", echo.port)) == Err(
        "invalid-argument"  # an IPv6 address on an IPv4 socket
    )
    # A connection in progress, then done.
    assert _call("[method]tcp-socket.start-connect", sock, net, _addr("127.0.0.1", echo.port)) == (
        Ok()
    )
    assert _call("[method]tcp-socket.start-connect", sock, net, _addr("127.0.0.1", echo.port)) == (
        Err("concurrency-conflict")
    )
    # Refused: the error comes from finish-connect, and the socket is done.
    other = _call("create-tcp-socket", "ipv4").value  # type: ignore[attr-defined]
    assert _call(
        "[method]tcp-socket.start-connect", other, net, _addr("127.0.0.1", closed_port)
    ) == (Ok())
    wait_any([table().get(_call("[method]tcp-socket.subscribe", other), Pollable)])
    assert _call("[method]tcp-socket.finish-connect", other) == Err("connection-refused")
    assert _call("[method]tcp-socket.start-connect", other, net, _addr("127.0.0.1", echo.port)) == (
        Err("invalid-state")
    )


def test_udp_is_not_supported(state: InstanceState) -> None:
    assert _call("create-udp-socket", "ipv4") == Err("not-supported")


def test_name_lookup_of_literals_and_bad_names(state: InstanceState) -> None:
    net = _call("instance-network")
    for text, expected in [("127.0.0.1", ("ipv4", (127, 0, 0, 1))), ("[::1]", _addr("::1", 0))]:
        stream = _call("resolve-addresses", net, text)
        assert isinstance(stream, Ok)
        got = _call("[method]resolve-address-stream.resolve-next-address", stream.value)
        if expected[0] == "ipv6":
            expected = ("ipv6", expected[1]["address"])  # type: ignore[index]
        assert got == Ok(expected)
        assert _call("[method]resolve-address-stream.resolve-next-address", stream.value) == Ok(
            None
        )
    assert _call("resolve-addresses", net, "bad/name") == Err("invalid-argument")
    assert _call("resolve-addresses", net, "") == Err("invalid-argument")
    assert _call("resolve-addresses", net, "example.com") == Err("permanent-resolver-failure")


def test_socket_closes_when_the_instance_ends(state: InstanceState, echo: EchoServer) -> None:
    sock, _, _, _ = _connected("ipv4", "127.0.0.1", echo.port)
    conn = table().get(sock, TcpSocket).conn
    assert conn.sock.fileno() >= 0
    state.end()  # what happens when the instance ends
    assert conn.fd == -1 and conn.sock.fileno() == -1  # closed, not left to the collector


def test_socket_closes_when_the_guest_drops_it(state: InstanceState) -> None:
    """Dropping the socket and its streams closes the connection at once (the peer sees the
    end), not only when the instance ends."""
    server = socket.create_server(("127.0.0.1", 0))
    received: list[bytes] = []
    done = threading.Event()

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.settimeout(5)
            with contextlib.suppress(OSError):
                while chunk := conn.recv(65536):
                    received.append(chunk)
                received.append(b"<eof>")
        done.set()

    threading.Thread(target=serve, daemon=True).start()
    try:
        sock, rin, rout, _ = _connected("ipv4", "127.0.0.1", server.getsockname()[1])
        conn = weakref.ref(table().get(sock, TcpSocket).conn)
        table().get(rout, OutputStream).write(b"bye")
        _drop("output-stream", rout)
        _drop("input-stream", rin)
        _drop("tcp-socket", sock)
        assert conn() is None  # nothing keeps the connection open
        assert done.wait(5)
        assert b"".join(received) == b"bye<eof>"  # written first, then closed
    finally:
        server.close()


def test_network_error_code(state: InstanceState) -> None:
    rep = table().push(IoError("reset", SocketError("connection-reset")))
    assert _call("network-error-code", rep) == "connection-reset"
    assert _call("network-error-code", table().push(IoError("other"))) is None
