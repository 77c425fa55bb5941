"""uvicorn's httptools HTTP/1.1 protocol with trailer fields, both ways.

uvicorn parses HTTP/1.1 with httptools, which reports a chunked request's trailer fields
through the same callback as its header fields; uvicorn would append them to the request
headers after the application has read them. Here they go to a list the application finds
in the scope at `scope["extensions"][REQUEST_TRAILERS]`, complete once the last body
message (`more_body` false) has been received.

Response trailers follow the ASGI "HTTP Trailers" extension: `http.response.start` with
`"trailers": True`, the body, then one or more `http.response.trailers` messages. They are
sent after the last chunk of a chunked response when the request said it accepts them
(`TE: trailers`, RFC 9110 §10.1.4); otherwise, or when the response has a content-length,
they are dropped, as a proxy that de-chunks the message would do.

An `http.response.start` carrying `BODY_FOLLOWS` is held until the body message that follows
it, and the two leave in one write: uvicorn writes the head and the body separately, which
cost a small response a second TCP segment and a second wake-up of the client (profiled: a
quarter of the CPU of a request to a tiny component went to the two writes).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from uvicorn.protocols.http.httptools_impl import (
    HEADER_RE,
    HEADER_VALUE_RE,
    HttpToolsProtocol,
    RequestResponseCycle,
)

log = logging.getLogger("wasmlet.http")

REQUEST_TRAILERS = "wasmlet.request_trailers"
RESPONSE_TRAILERS = "http.response.trailers"
BODY_FOLLOWS = "wasmlet.body_follows"  # in a start message: its body message comes next

# Fields that frame or route the message: never valid as trailers (RFC 9110 §6.5.1).
_FRAMING = frozenset(
    {b"content-length", b"transfer-encoding", b"host", b"trailer", b"te", b"connection"}
)


def accepts_trailers(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """Whether a request's `TE` header lists `trailers`."""
    for name, value in headers:
        if name.lower() == b"te":
            tokens = (t.split(b";", 1)[0].strip().lower() for t in value.split(b","))
            if b"trailers" in tokens:
                return True
    return False


class TrailerProtocol(HttpToolsProtocol):
    """One connection; `TrailerCycle` for each request on it."""

    def _unsupported_upgrade_warning(self) -> None:
        # An `Upgrade` request (websocket, h2c) goes to the guest as a plain request, as
        # Spin's server passes it on; uvicorn would warn of a missing WebSocket library.
        log.debug("upgrade to %r not supported: served as a plain request", self._get_upgrade())

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._trailers: list[tuple[bytes, bytes]] = []
        self._in_trailers = False
        extensions: dict[str, Any] = {REQUEST_TRAILERS: self._trailers, RESPONSE_TRAILERS: {}}
        self.scope["extensions"] = extensions

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._in_trailers:
            name = name.lower()
            if name not in _FRAMING:
                self._trailers.append((name, value))
            return
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_trailers = True
        super().on_headers_complete()

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        cycle.__class__ = TrailerCycle  # before its task runs: adds trailers to `send`
        super()._start_asgi_task(cycle, app)


class _Cork:
    """Stands for a cycle's transport while uvicorn writes one response: keeps what it
    writes (and a close) for one write after."""

    __slots__ = ("chunks", "closing", "transport")

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.chunks: list[bytes] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.chunks.append(data)

    def close(self) -> None:
        self.closing = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class TrailerCycle(RequestResponseCycle):
    """A request/response cycle whose `send` understands `http.response.trailers`."""

    _trailers_expected = False
    _awaiting_trailers = False
    _trailers: list[tuple[bytes, bytes]] | None = None
    _held_start: Any = None  # a start message with BODY_FOLLOWS, sent with its body

    async def send(self, message: Any) -> None:
        kind = message["type"]
        if kind == "http.response.start" and not self.response_started:
            self._trailers_expected = bool(message.get("trailers", False))
            if message.get(BODY_FOLLOWS) and not self._trailers_expected:
                self._held_start = message
                return
            await super().send(message)
            return
        if self._held_start is not None:
            start, self._held_start = self._held_start, None
            await self._send_together(start, message)
            return
        if kind == "http.response.body" and self._trailers_expected:
            if self._awaiting_trailers:
                raise RuntimeError("ASGI message 'http.response.body' sent after the last body")
            if not message.get("more_body", False):
                self._awaiting_trailers = True  # the end of the body goes out with the trailers
                message = {**message, "more_body": True}
            if message.get("body"):
                await super().send(message)
            return
        if kind == RESPONSE_TRAILERS:
            await self._send_trailers(message)
            return
        await super().send(message)

    async def _send_together(self, start: Any, body: Any) -> None:
        """The start and the (first) body message, in one write."""
        real = self.transport
        cork = _Cork(real)
        self.transport = cork  # type: ignore[assignment]  # writes only, for one response
        try:
            await super().send(start)
            await super().send(body)
        finally:
            self.transport = real
            if cork.chunks:
                real.write(b"".join(cork.chunks))
            if cork.closing:
                real.close()

    async def _send_trailers(self, message: Any) -> None:
        if not self._awaiting_trailers:
            raise RuntimeError(
                "ASGI message 'http.response.trailers' sent before the end of the body or "
                "without 'trailers' in 'http.response.start'"
            )
        if self._trailers is None:
            self._trailers = []
        for name, value in message.get("headers", []):
            if HEADER_RE.search(name) or HEADER_VALUE_RE.search(value):
                raise RuntimeError("Invalid HTTP trailer field.")
            name = name.lower()
            if name not in _FRAMING:
                self._trailers.append((name, value))
        if message.get("more_trailers", False):
            return
        if self.disconnected:
            return
        if self.chunked_encoding:
            send_them = self._trailers and accepts_trailers(self.scope["headers"])
            if self._trailers and not send_them:
                log.debug("dropping response trailers: the client did not send TE: trailers")
            end = [b"0\r\n"]
            for name, value in self._trailers if send_them else []:
                end += [name, b": ", value, b"\r\n"]
            end.append(b"\r\n")
            if self.flow.write_paused:
                await self.flow.drain()
            self.transport.write(b"".join(end))
            # The terminating chunk is written: let uvicorn complete the response as one
            # of known length with nothing left to send.
            self.chunked_encoding = False
            self.expected_content_length = 0
        self._trailers_expected = False
        await super().send({"type": "http.response.body", "body": b"", "more_body": False})
