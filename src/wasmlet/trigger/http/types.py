"""The plain request/response values the HTTP trigger hands to executors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from .router import RouteMatch


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


class HttpExecutor(Protocol):
    """Runs one request in a fresh instance. Called on a worker thread; may block."""

    def handle(self, request: HttpRequest, match: RouteMatch) -> HttpResponse: ...
