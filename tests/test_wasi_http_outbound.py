"""Outbound HTTP (wasi:http's outgoing-handler): transport failures mapped onto `error-code`
by exception type, the default httpx transport, and a transport injected through the
outbound-http factor.

Every failure is real: a port nothing listens on, a name under `.invalid`, a loopback server
whose accept queue is full, servers that never answer, close, reset, speak no HTTP or no
TLS, or present a certificate nobody trusts. Nothing of httpx is mocked.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fixtures.oci.registry import self_signed_tls
from support.component_guests import python_app
from support.env import free_port

from wasmlet.engine import EngineSettings, Limits, WasmEngine
from wasmlet.executors import (
    CollectedResponse,
    HttpExecutor,
    HttpRequest,
    RouteMatch,
    http_executor,
)
from wasmlet.factors import FACTORS, AppContext, configure
from wasmlet.factors.outbound_http import FACTOR, OutboundHttpFactor
from wasmlet.loader import load_app
from wasmlet.locked import LockedApp, LockedComponent, LockedComponentSource
from wasmlet.outbound import OutboundPolicy
from wasmlet.runtime import AppRuntime
from wasmlet.wasi import Err, InstanceState, Ok, active, table
from wasmlet.wasi.http import (
    OUTBOUND_HTTP,
    HttpxSender,
    IncomingBody,
    IncomingResponse,
    OutboundHttp,
    OutboundRequest,
    OutgoingBody,
    SendOutcome,
    error_code,
)
from wasmlet.wasi.http.body import BodyPipe, drop_outgoing_body
from wasmlet.wasi.http.outgoing import _handle
from wasmlet.wasi.http.types import (
    Fields,
    FutureIncomingResponse,
    OutgoingRequest,
    RequestOptions,
)
from wasmlet.wasi.io import BytesInputStream, StreamClosed

# -- real peers ------------------------------------------------------------------------------


class TcpServer:
    """A loopback TCP server running `handler` on each connection it accepts."""

    def __init__(self, handler: Callable[[socket.socket], None]) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.handler = handler
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):  # the client gave up first
            self.handler(conn)

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[socket.socket], None]], TcpServer]]:
    servers: list[TcpServer] = []

    def start(handler: Callable[[socket.socket], None]) -> TcpServer:
        servers.append(TcpServer(handler))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def _read_request(conn: socket.socket) -> None:
    data = b""
    while b"\r\n\r\n" not in data and (chunk := conn.recv(65536)):
        data += chunk


def closed_port() -> int:
    return free_port()  # bound and released: nothing listens there


@pytest.fixture
def full_backlog() -> Iterator[int]:
    """A listening port whose accept queue is full: the kernel drops new SYNs, so a connect
    neither succeeds nor fails until the client's timeout."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        fillers.append(s)
    time.sleep(0.05)
    yield port
    for s in [*fillers, listener]:
        s.close()


def failure(url: str, *, client: httpx.Client | None = None, **request: object) -> BaseException:
    """What a real request raised (the test fails if it succeeds)."""
    own = client is None
    client = client or httpx.Client(timeout=5)
    try:
        with client.stream(str(request.pop("method", "GET")), url, **request) as r:  # type: ignore[arg-type]
            r.read()
    except Exception as e:
        return e
    finally:
        if own:
            client.close()
    pytest.fail(f"{url} did not fail")


def root(e: BaseException) -> BaseException:
    """What the socket or TLS layer raised, under httpx's and httpcore's exceptions (httpcore's
    pool re-raises `from None`: the origin is then only the `__context__`)."""
    while (inner := e.__cause__ or e.__context__) is not None:
        e = inner
    return e


# -- error_code: one real failure per case ---------------------------------------------------


def test_refused_connection() -> None:
    e = failure(f"http://127.0.0.1:{closed_port()}/")
    assert isinstance(root(e), ConnectionRefusedError)
    assert error_code(e) == "connection-refused"


def test_name_that_does_not_resolve() -> None:
    e = failure("http://wasmlet-test.invalid/")  # RFC 6761: never resolves
    code = error_code(e)
    assert isinstance(code, tuple) and code[0] == "DNS-error", code
    payload = code[1]
    assert isinstance(payload, dict) and payload["info-code"] is None and payload["rcode"]


def test_connect_timeout(full_backlog: int) -> None:
    timeout = httpx.Timeout(5, connect=0.3)
    e = failure(f"http://127.0.0.1:{full_backlog}/", client=httpx.Client(timeout=timeout))
    assert error_code(e) == "connection-timeout"


def test_no_response_in_time(serve: Callable[..., TcpServer]) -> None:
    server: TcpServer = serve(lambda conn: server.stop.wait(10))  # accepts, never answers
    timeout = httpx.Timeout(5, read=0.3)
    e = failure(f"http://127.0.0.1:{server.port}/", client=httpx.Client(timeout=timeout))
    assert error_code(e) == "HTTP-response-timeout"


def test_request_body_not_taken_in_time(serve: Callable[..., TcpServer]) -> None:
    # Never reads: the kernel's buffers fill and the client's send blocks.
    server: TcpServer = serve(lambda conn: server.stop.wait(10))
    client = httpx.Client(timeout=httpx.Timeout(5, write=0.3))
    url = f"http://127.0.0.1:{server.port}/"
    e = failure(url, client=client, method="POST", content=b"x" * (64 << 20))
    assert error_code(e) == "connection-write-timeout"


def test_every_connection_busy(serve: Callable[..., TcpServer]) -> None:
    def slow_body(conn: socket.socket) -> None:
        _read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nab")
        server.stop.wait(10)

    server: TcpServer = serve(slow_body)
    client = httpx.Client(
        timeout=httpx.Timeout(5, pool=0.3), limits=httpx.Limits(max_connections=1)
    )
    url = f"http://127.0.0.1:{server.port}/"
    with client.stream("GET", url):  # holds the one connection the client may open
        e = failure(url, client=client)
    assert error_code(e) == "connection-limit-reached"


def test_tls_with_a_plain_http_server(serve: Callable[..., TcpServer]) -> None:
    def plain_http(conn: socket.socket) -> None:
        conn.recv(65536)  # the ClientHello
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")

    server = serve(plain_http)
    e = failure(f"https://127.0.0.1:{server.port}/")
    assert isinstance(root(e), ssl.SSLError)
    assert error_code(e) == "TLS-protocol-error"


def test_tls_certificate_nobody_trusts(serve: Callable[..., TcpServer], tmp_path: Path) -> None:
    cert, key = self_signed_tls(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    def tls(conn: socket.socket) -> None:
        with context.wrap_socket(conn, server_side=True) as s:  # the client aborts here
            _read_request(s)

    server = serve(tls)
    e = failure(f"https://127.0.0.1:{server.port}/")
    assert isinstance(root(e), ssl.SSLCertVerificationError)
    assert error_code(e) == "TLS-certificate-error"


def test_closed_before_responding(serve: Callable[..., TcpServer]) -> None:
    server = serve(_read_request)  # reads the request, then closes
    assert error_code(failure(f"http://127.0.0.1:{server.port}/")) == "connection-terminated"


def test_reset_before_responding(serve: Callable[..., TcpServer]) -> None:
    def reset(conn: socket.socket) -> None:
        _read_request(conn)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST

    server = serve(reset)
    e = failure(f"http://127.0.0.1:{server.port}/")
    assert isinstance(root(e), ConnectionResetError)
    assert error_code(e) == "connection-terminated"


def test_response_that_is_not_http(serve: Callable[..., TcpServer]) -> None:
    def garbage(conn: socket.socket) -> None:
        _read_request(conn)
        conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")

    server = serve(garbage)
    assert error_code(failure(f"http://127.0.0.1:{server.port}/")) == "HTTP-protocol-error"


def test_urls_httpx_cannot_send() -> None:
    assert error_code(failure("ftp://127.0.0.1/")) == "HTTP-request-URI-invalid"
    with pytest.raises(httpx.InvalidURL) as bad:
        httpx.Client().build_request("GET", "http://127.0.0.1/a\x00b")  # a control character
    assert error_code(bad.value) == "HTTP-request-URI-invalid"


def test_anything_else_is_an_internal_error() -> None:
    client = httpx.Client()
    client.close()
    e = failure("http://127.0.0.1/", client=client)
    assert error_code(e) == ("internal-error", str(e))


# -- the outgoing handler --------------------------------------------------------------------


def _handle_in_instance(
    request: OutgoingRequest, capability: OutboundHttp, options: RequestOptions | None = None
) -> object:
    """`outgoing-handler.handle` as a guest's call makes it (in an instance's state)."""
    with active(InstanceState("c", {OUTBOUND_HTTP: capability})):
        rep = table().push(request)
        return _handle(rep, table().push(options) if options is not None else None)


def test_handler_sends_relative_requests_to_the_app_origin() -> None:
    recorder = Recorder()
    capability = OutboundHttp(OutboundPolicy.parse(["http://self"]), "http://10.1.2.3:80", recorder)
    request = OutgoingRequest(Fields([("x-a", b"1")]), "post", "/x?y=1")
    request.body = OutgoingBody()
    request.body.stream.write(b"payload")
    request.body.finish(None)  # before `handle`: the transport gets the whole body
    options = RequestOptions(connect_timeout=250_000_000, between_bytes_timeout=2_000_000_000)
    assert isinstance(_handle_in_instance(request, capability, options), Ok)
    [sent] = recorder.requests
    assert sent == OutboundRequest(
        "POST", "http://10.1.2.3:80/x?y=1", [("x-a", b"1")], b"payload", 0.25, None, 2.0
    )


def test_a_body_written_after_handle_streams_to_the_transport() -> None:
    recorder = Recorder()
    capability = OutboundHttp(OutboundPolicy.parse(["http://example.com"]), None, recorder)
    request = OutgoingRequest(
        Fields([("content-length", b"11")]), "post", "/x", authority="example.com"
    )
    body = request.body = OutgoingBody()
    body.stream.write(b"hello")  # some before `handle`, the rest after (as the Spin SDKs do)
    assert isinstance(_handle_in_instance(request, capability), Ok)
    [sent] = recorder.requests
    assert isinstance(sent.body, BodyPipe)
    body.stream.write(b" world")
    body.finish(None)
    assert b"".join(sent.body) == b"hello world"


def test_a_body_dropped_unfinished_fails_the_request_not_the_guest(
    serve: Callable[..., TcpServer],
) -> None:
    got: list[bytes] = []

    def record(conn: socket.socket) -> None:
        while chunk := conn.recv(65536):
            got.append(chunk)

    server: TcpServer = serve(record)
    sender = HttpxSender(timeout=5)
    capability = OutboundHttp(OutboundPolicy.parse(["http://127.0.0.1:*"]), None, sender)
    headers = Fields([("content-length", b"100")])
    request = OutgoingRequest(headers, "post", "/x", authority=f"127.0.0.1:{server.port}")
    request.body = OutgoingBody()
    with active(InstanceState("c", {OUTBOUND_HTTP: capability})):
        rep = table().push(request.body)
        outcome = _handle(table().push(request), None)
        assert isinstance(outcome, Ok)
        request.body.stream.write(b"partial")
        drop_outgoing_body(rep)  # dropped, never finished
        future = table().get(outcome.value, FutureIncomingResponse).future
        code = future.result(timeout=10)
    sender.close()
    assert code == ("internal-error", "the guest dropped the request body before finishing it")
    deadline = time.monotonic() + 5  # the server's thread records what it got on its own
    while not b"".join(got).endswith(b"partial") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert b"".join(got).endswith(b"partial")


def test_a_body_never_finished_times_out() -> None:
    pipe = BodyPipe(timeout=0.1)
    pipe.write(b"a")
    chunks = iter(pipe)
    assert next(chunks) == b"a"
    with pytest.raises(TimeoutError):
        next(chunks)


def test_handler_refuses_what_it_cannot_send() -> None:
    recorder = Recorder()
    allow_all = OutboundPolicy.parse(["*://*:*"])
    no_origin = OutboundHttp(allow_all, None, recorder)
    assert _handle_in_instance(OutgoingRequest(Fields()), no_origin) == Err(
        "HTTP-request-URI-invalid"  # relative, and the app has no origin
    )
    bad_authority = OutgoingRequest(Fields(), scheme="HTTP", authority="host:port")
    assert _handle_in_instance(bad_authority, no_origin) == Err("HTTP-request-URI-invalid")
    denied = OutboundHttp(OutboundPolicy.parse([]), "http://10.1.2.3", recorder)
    elsewhere = OutgoingRequest(Fields(), scheme="HTTPS", authority="example.com")
    assert _handle_in_instance(elsewhere, denied) == Err("HTTP-request-denied")
    assert recorder.requests == []


# -- the default transport -------------------------------------------------------------------


def _read_all(body: IncomingBody) -> bytes:
    out = b""
    with active(InstanceState("test")):  # body reads happen inside a guest's host call
        while True:
            try:
                out += body.stream.blocking_read(65536)
            except StreamClosed:
                return out


def _send(sender: HttpxSender, url: str, **options: float) -> SendOutcome:
    request = OutboundRequest("POST", url, [("x-probe", b"1")], b"ping", **options)
    return sender(request).result(timeout=10)


def test_sender_streams_the_response(serve: Callable[..., TcpServer]) -> None:
    seen: list[bytes] = []

    def echo(conn: socket.socket) -> None:
        data = b""
        while b"ping" not in data:
            data += conn.recv(65536)
        seen.append(data)
        conn.sendall(b"HTTP/1.1 201 Created\r\nx-upstream: yes\r\ncontent-length: 4\r\n\r\npong")

    server = serve(echo)
    sender = HttpxSender()
    assert sender.client is None  # nothing is made before the first request
    try:
        outcome = _send(sender, f"http://127.0.0.1:{server.port}/p?q=1")
        assert isinstance(outcome, IncomingResponse)
        assert outcome.status == 201
        assert ("x-upstream", b"yes") in outcome.headers
        assert outcome.body is not None and _read_all(outcome.body) == b"pong"
        assert seen[0].startswith(b"POST /p?q=1 HTTP/1.1\r\n")
        assert b"\r\nx-probe: 1\r\n" in seen[0]
    finally:
        sender.close()


def test_sender_failures_are_error_codes(full_backlog: int) -> None:
    sender = HttpxSender()
    try:
        assert _send(sender, f"http://127.0.0.1:{closed_port()}/") == "connection-refused"
        started = time.monotonic()
        url = f"http://127.0.0.1:{full_backlog}/"
        assert _send(sender, url, connect_timeout=0.3) == "connection-timeout"
        assert time.monotonic() - started < 5  # the guest's connect-timeout, not the default
    finally:
        sender.close()


def test_closed_sender() -> None:
    sender = HttpxSender()
    _send(sender, f"http://127.0.0.1:{closed_port()}/")
    client = sender.client
    assert client is not None
    sender.close()
    assert client.is_closed
    outcome = _send(sender, f"http://127.0.0.1:{closed_port()}/")
    assert isinstance(outcome, tuple) and outcome[0] == "internal-error"
    sender.close()  # idempotent


# -- the factor: one transport per app -------------------------------------------------------


def _bare_app(name: str) -> LockedApp:
    source = LockedComponentSource(source="file:///unused.wasm")
    return LockedApp(metadata={"name": name}, components=[LockedComponent(id="c", source=source)])


def test_each_app_gets_its_own_client(tmp_path: Path) -> None:
    apps = [FACTOR.configure_app(AppContext(_bare_app(n), tmp_path / n)) for n in ("a", "b")]
    transports = [app.transport for app in apps]
    assert all(isinstance(t, HttpxSender) for t in transports)
    for t in transports:
        t(OutboundRequest("GET", f"http://127.0.0.1:{closed_port()}/", [], b"")).result(10)
    clients = [t.client for t in transports if isinstance(t, HttpxSender)]
    assert clients[0] is not None and clients[1] is not None and clients[0] is not clients[1]
    apps[0].close()
    assert clients[0].is_closed and not clients[1].is_closed
    FACTOR.close_app(apps[1])  # what AppFactors.close is to call when the app stops
    assert clients[1].is_closed


class Recorder:
    """A transport that sends nothing: it records each request and answers it itself."""

    def __init__(self) -> None:
        self.requests: list[OutboundRequest] = []
        self.closed = False

    def __call__(self, request: OutboundRequest) -> concurrent.futures.Future[SendOutcome]:
        self.requests.append(request)
        future: concurrent.futures.Future[SendOutcome] = concurrent.futures.Future()
        headers = [("x-recorded", b"yes")]
        future.set_result(IncomingResponse(203, headers, IncomingBody(BytesInputStream(b"hi"))))
        return future

    def close(self) -> None:
        self.closed = True


def _guest(app_dir: Path, state: Path, cache_dir: Path, factor: OutboundHttpFactor) -> HttpExecutor:
    """The python-app's executor, in process, with `factor` as its outbound-http factor."""
    app = load_app(app_dir)
    factors = tuple(factor if isinstance(f, OutboundHttpFactor) else f for f in FACTORS)
    app_factors = configure(AppContext(app, state), factors)
    engine = WasmEngine(EngineSettings(cache_dir=cache_dir))
    runtime = AppRuntime(app, engine, state, app_factors, Limits(request_timeout=30))
    return http_executor(runtime, "t", "app", {})


def _get(executor: HttpExecutor, url: str) -> tuple[int, str]:
    query = httpx.QueryParams({"url": url})
    request = HttpRequest("GET", "/outbound", str(query), [("host", "localhost")], b"", ("::1", 9))
    sink = CollectedResponse()
    executor.handle(request, RouteMatch("/...", "/...", path_info="/outbound"), sink)
    assert sink.response is not None
    return sink.response.status, sink.response.body.decode()


def test_injected_transport_through_a_real_guest(tmp_path: Path, cache_dir: Path) -> None:
    recorder = Recorder()
    app_dir = python_app(tmp_path / "app", allowed_outbound_hosts=["http://upstream.test"])
    executor = _guest(app_dir, tmp_path / "state", cache_dir, OutboundHttpFactor(lambda: recorder))
    assert _get(executor, "http://upstream.test/some/path?q=1") == (200, "203\nhi")
    [sent] = recorder.requests
    # spin-sdk writes (an empty) body after `handle`: it streams, and it has ended by now
    body = sent.body if isinstance(sent.body, bytes) else b"".join(sent.body)
    assert (sent.method, sent.url, body) == ("GET", "http://upstream.test/some/path?q=1", b"")
    # The policy still decides first: a denied request never reaches the transport.
    status, text = _get(executor, "http://elsewhere.test/")
    assert (status, "HttpRequestDenied" in text) == (500, True)
    assert len(recorder.requests) == 1


def test_dns_error_reaches_the_guest(tmp_path: Path, cache_dir: Path) -> None:
    app_dir = python_app(tmp_path / "app", allowed_outbound_hosts=["http://wasmlet-test.invalid"])
    sender = HttpxSender()  # the default transport
    executor = _guest(app_dir, tmp_path / "state", cache_dir, OutboundHttpFactor(lambda: sender))
    try:
        status, text = _get(executor, "http://wasmlet-test.invalid/")
    finally:
        sender.close()
    assert status == 500 and text.startswith("ErrorCode::DnsError("), text


def test_stopping_the_app_closes_its_transport(tmp_path: Path) -> None:
    recorder = Recorder()
    factors = tuple(
        OutboundHttpFactor(lambda: recorder) if isinstance(f, OutboundHttpFactor) else f
        for f in FACTORS
    )
    app_factors = configure(AppContext(_bare_app("a"), tmp_path), factors)
    assert not recorder.closed
    app_factors.close()  # what RunningApp.close does once no guest runs
    assert recorder.closed
