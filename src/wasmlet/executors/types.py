"""What the HTTP trigger hands an executor and what it gets back.

An executor runs one request in a fresh instance on a worker thread. It gets the request,
the route it matched (plain data: the executor knows no routing) and a `ResponseSink`, and
puts the response in the sink: whole (`respond`), or started and streamed (`start`, `write`,
`end`) as the guest produces it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class RouteMatch:
    """The route a request matched, in each form Spin reports it (its `routes.rs`: the raw
    route, the "based" one, and either without its `/...` suffix)."""

    route: str  # as written in the manifest, e.g. "/users/:id/..." (spin-raw-component-route)
    based_route: str  # a leading `/`, one trailing `/` stripped, "/" -> "" (spin-matched-route)
    params: tuple[tuple[str, str], ...] = ()  # `:name` segments and their values
    path_info: str = ""  # the wildcard tail: "" for exact routes, "/x" for "/foo/x"

    @property
    def component_route(self) -> str:
        """The raw route without a `/...` suffix (spin-component-route, X_COMPONENT_ROUTE)."""
        return self.route.removesuffix("/...")

    @property
    def script_name(self) -> str:
        """The based route without a `/...` suffix (Wagi's SCRIPT_NAME)."""
        return self.based_route.removesuffix("/...")


@dataclass(slots=True)
class HttpRequest:
    method: str
    path: str  # raw path, not percent-decoded
    query: str  # raw query string, without "?"
    headers: list[tuple[str, str]]  # lower-case names, values as sent (latin-1)
    body: bytes
    client: tuple[str, int]
    scheme: str = "http"
    http_version: str = "1.1"
    # The rest of the body when it had not all arrived yet: called from the worker thread,
    # returns the next chunk or None at the end (streaming executors only).
    body_rest: Callable[[], bytes | None] | None = None
    # The request's trailer fields (lower-case names): complete once the whole body has
    # been read. None when the server cannot report them.
    trailers: Callable[[], list[tuple[str, str]]] | None = None

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None

    @property
    def host(self) -> str | None:
        return self.header("host")

    @property
    def path_and_query(self) -> str:
        return f"{self.path}?{self.query}" if self.query else self.path


@dataclass(slots=True)
class HttpResponse:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    truncated: bool = False  # the guest failed mid-body: send `body`, then cut the connection
    trailers: list[tuple[str, str]] | None = None  # sent after the body when the client accepts


class ResponseSink(Protocol):
    """Where an executor puts its response (called on the worker thread)."""

    def respond(self, response: HttpResponse) -> None:
        """The whole response at once."""

    def start(self, status: int, headers: list[tuple[str, str]]) -> None:
        """The response starts; its body follows with `write`, then `end` or `abort`."""

    def write(self, data: bytes) -> None:
        """More body; may block while the client is slow."""

    def end(self, trailers: list[tuple[str, str]] | None = None) -> None:
        """The body is complete."""

    def abort(self) -> None:
        """The guest failed after the response started: cut the body short."""

    def flush(self) -> None:
        """The guest is about to wait for something: send what it has produced so far."""


class HttpExecutor(Protocol):
    """Runs one request in a fresh instance. Called on a worker thread; may block."""

    #: True: it reads the request body as it arrives (`HttpRequest.body_rest`) and streams
    #: its response; False: it gets the whole body and puts a whole response in the sink.
    streaming: bool

    def handle(self, request: HttpRequest, match: RouteMatch, sink: ResponseSink) -> None: ...


class InlineExecutor(HttpExecutor, Protocol):
    """An executor whose guests may run on the caller's thread (the event loop's): they
    cannot wait for anything, and are stopped if they run long (see wasi_http.py)."""

    #: Whether to try `handle_inline` now (it turns False once a run overran).
    inline: bool

    def handle_inline(self, request: HttpRequest, match: RouteMatch) -> HttpResponse | None:
        """The whole response, or None: the guest overran; run it with `handle` instead.
        The request body must be whole."""
        ...


class CollectedResponse:
    """A `ResponseSink` that keeps the response, for a caller that wants it whole."""

    __slots__ = ("_body", "_head", "response")

    def __init__(self) -> None:
        self.response: HttpResponse | None = None
        self._head: tuple[int, list[tuple[str, str]]] | None = None
        self._body: list[bytes] = []

    def respond(self, response: HttpResponse) -> None:
        self.response = response

    def start(self, status: int, headers: list[tuple[str, str]]) -> None:
        self._head = (status, headers)

    def write(self, data: bytes) -> None:
        self._body.append(data)

    def end(self, trailers: list[tuple[str, str]] | None = None) -> None:
        self._finish(trailers=trailers)

    def abort(self) -> None:
        self._finish(truncated=True)

    def flush(self) -> None:
        pass

    def _finish(
        self, trailers: list[tuple[str, str]] | None = None, truncated: bool = False
    ) -> None:
        if self._head is not None:
            status, headers = self._head
            body = b"".join(self._body)
            self.response = HttpResponse(status, headers, body, truncated, trailers)
