"""HTTP/1.1 trailer fields through the real server, both ways.

The `trailers` component (guests/components/trailers.wat) streams the request body back and
finishes its response with the request's trailers. The client is h11 over a plain socket:
httpx does not expose trailers.
"""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import h11
import pytest
from support.env import FIXTURES
from support.server import Server, start_server, write_app

COMPONENTS = FIXTURES / "components"

APP = f"""
spin_manifest_version = 2
[application]
name = "trailers"

[[trigger.http]]
route = "/trailers"
component = "trailers"

[[trigger.http]]
route = "/echo/..."
component = "echo"

[component.trailers]
source = "{COMPONENTS}/trailers.wasm"
[component.echo]
source = "{COMPONENTS}/echo.wasm"
"""

Fields = list[tuple[bytes, bytes]]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    app = write_app(tmp_path_factory.mktemp("trailers"), APP)
    s = start_server(app, cache_dir=tmp_path_factory.mktemp("cache"))
    yield s
    s.stop(signal.SIGKILL)


@dataclass
class Reply:
    status: int
    headers: Fields
    body: bytes
    trailers: Fields = field(default_factory=list)

    def header(self, name: bytes) -> bytes | None:
        return next((v for k, v in self.headers if k == name), None)


class Connection:
    """One keep-alive HTTP/1.1 connection driven by h11."""

    def __init__(self, server: Server) -> None:
        host, port = server.url.removeprefix("http://").rsplit(":", 1)
        self.host = f"{host}:{port}"
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        self.h11 = h11.Connection(h11.CLIENT)

    def close(self) -> None:
        self.sock.close()

    def request(
        self,
        path: str,
        parts: list[bytes],
        trailers: Fields | None = None,
        te: bool = True,
        pause: float = 0.0,
        headers: Fields | None = None,
    ) -> Reply:
        if self.h11.our_state is h11.DONE:
            self.h11.start_next_cycle()
        sent = [(b"host", self.host.encode()), (b"transfer-encoding", b"chunked")]
        if te:
            sent.append((b"te", b"trailers"))
        out = self.h11.send(h11.Request(method="POST", target=path, headers=sent + (headers or [])))
        for part in parts:
            out += self.h11.send(h11.Data(data=part)) or b""
            if pause:  # send as it is produced
                self.sock.sendall(out or b"")
                out = b""
                time.sleep(pause)
        out += self.h11.send(h11.EndOfMessage(headers=trailers or [])) or b""
        self.sock.sendall(out or b"")  # in one go when not paced: no early close mid-send
        reply: Reply | None = None
        body = bytearray()
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                data = self.sock.recv(65536)
                self.h11.receive_data(data)
                continue
            if isinstance(event, h11.Response):
                reply = Reply(event.status_code, list(event.headers), b"")
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert reply is not None
                reply.body = bytes(body)
                reply.trailers = list(event.headers)
                return reply
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionError("the server closed the connection")


@pytest.fixture
def conn(server: Server) -> Iterator[Connection]:
    c = Connection(server)
    yield c
    c.close()


SENT = [(b"x-checksum", b"sha256=abc"), (b"x-count", b"3")]


def test_request_trailers_become_response_trailers(conn: Connection) -> None:
    reply = conn.request("/trailers", [b"one ", b"two ", b"three"], SENT)
    assert reply.status == 200
    assert reply.body == b"one two three"
    assert reply.header(b"transfer-encoding") == b"chunked"
    assert reply.trailers == SENT


def test_trailers_after_a_body_that_streams_in_over_time(conn: Connection) -> None:
    parts = [bytes([65 + i]) * 50_000 for i in range(8)]  # 400 KB, 8 chunks 20 ms apart
    reply = conn.request("/trailers", parts, SENT, pause=0.02)
    assert reply.body == b"".join(parts)
    assert reply.trailers == SENT


def test_no_request_trailers_means_no_response_trailers(conn: Connection) -> None:
    reply = conn.request("/trailers", [b"body"], [])
    assert (reply.status, reply.body, reply.trailers) == (200, b"body", [])


def test_trailers_only_go_to_clients_that_accept_them(conn: Connection) -> None:
    reply = conn.request("/trailers", [b"body"], SENT, te=False)
    assert (reply.status, reply.body, reply.trailers) == (200, b"body", [])
    # The connection is intact: the next request on it gets its trailers.
    again = conn.request("/trailers", [b"again"], SENT)
    assert (again.body, again.trailers) == (b"again", SENT)


def test_keep_alive_requests_each_get_their_own_trailers(conn: Connection) -> None:
    for i in range(5):
        sent = [(b"x-round", str(i).encode())]
        reply = conn.request("/trailers", [b"r%d" % i], sent)
        assert (reply.body, reply.trailers) == (b"r%d" % i, sent)


def test_framing_fields_are_not_trailers(conn: Connection) -> None:
    sent = [(b"host", b"elsewhere"), (b"trailer", b"x"), (b"x-kept", b"yes")]
    reply = conn.request("/trailers", [b"body"], sent)
    assert (reply.body, reply.trailers) == (b"body", [(b"x-kept", b"yes")])


def test_content_length_in_trailers_is_a_bad_request(conn: Connection) -> None:
    reply = conn.request("/trailers", [b"body"], [(b"content-length", b"99")])
    assert reply.status == 400


def test_request_trailers_are_not_request_headers(conn: Connection) -> None:
    """The echo component prints the request headers it sees: no trailer among them."""
    reply = conn.request("/echo/x", [b"payload"], [(b"x-late", b"1")])
    head, _, body = reply.body.partition(b"\n\n")
    assert body == b"payload"
    names = [line.split(b": ", 1)[0] for line in head.split(b"\n")[1:]]
    assert b"te" in names and b"x-late" not in names


def test_components_without_trailers_are_unchanged(conn: Connection, server: Server) -> None:
    reply = conn.request("/echo/x", [b"payload"])
    assert reply.status == 200 and reply.trailers == []
    assert server.get("/echo/x").status_code == 200  # httpx: no TE, content-length framing


def test_no_asgi_errors_on_either_response_path(tmp_path: Path) -> None:
    """A response held whole (the body had arrived before the guest started) and one that
    streamed carry the same trailers: covered by the small and the slow request above; this
    checks the server log has no ASGI errors for either."""
    app = write_app(tmp_path, APP)
    s = start_server(app, cache_dir=tmp_path / "cache")
    try:
        c = Connection(s)
        assert c.request("/trailers", [b"x"], SENT).trailers == SENT
        assert c.request("/trailers", [b"y" * 200_000], SENT, pause=0.05).trailers == SENT
        c.close()
    finally:
        s.stop(signal.SIGTERM)
    assert "Exception in ASGI application" not in s.log
    assert "Traceback" not in s.log
