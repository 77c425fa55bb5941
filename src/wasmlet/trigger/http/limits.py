"""Connection limits on uvicorn's HTTP/1.1 protocol: how long a request head may take, how
large it may be, how many connections a worker holds.

uvicorn (httptools) has only the keep-alive timeout: a client may trickle its headers for
ever, httptools buffers a header field of any size (by concatenating the pieces: one 50 MB
header cost hundreds of MB), and every accepted connection holds a file descriptor until it
ends. uvicorn's `limit_concurrency` answers 503 only once a request's headers are in, so slow
clients still use up the descriptors. The model is nginx: `client_header_timeout`,
`large_client_header_buffers`, `keepalive_timeout`, `worker_connections`.
"""

from __future__ import annotations

import logging
import resource
import time
from asyncio import TimerHandle, Transport
from dataclasses import dataclass, replace
from typing import Any, ClassVar, cast

from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from .protocol import TrailerProtocol

log = logging.getLogger("wasmlet.http")

DEFAULT_HEADER_TIMEOUT = 10.0  # seconds; nginx 60, hyper 30: a real client needs milliseconds
DEFAULT_KEEP_ALIVE_TIMEOUT = 5.0  # seconds; uvicorn's default
DEFAULT_MAX_CONNECTIONS = 10_000  # per worker, lowered to fit the open-file limit
DEFAULT_MAX_HEADER_BYTES = 64 * 1024  # request line + fields; nginx 4 x 8k, hyper ~400 KB
DEFAULT_MAX_HEADERS = 100  # fields (trailers included); hyper's (so Spin's) limit
DEFAULT_SHUTDOWN_TIMEOUT = 30.0  # seconds, when there is no request timeout

# After an error response (400, 408, 431, 503) the connection is read and the input dropped
# until the client closes, at most this long: closing with unread input sends a reset, which
# can destroy the response before the client reads it (a "lingering close", as nginx does).
_LINGER = 2.0
# A refused connection lingers less, and only so many at once (half the open files left over
# by `max_connections`): past that it is closed at once, as nginx does out of connections.
_REFUSED_LINGER = 1.0
_WARN_EVERY = 10.0  # seconds between warnings that connections are refused


@dataclass(frozen=True)
class ServerLimits:
    """What a client may hold of a worker. Timeouts in seconds, 0 = none."""

    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    """From the connection (or a request's first byte) to the end of the request head."""
    keep_alive_timeout: float = DEFAULT_KEEP_ALIVE_TIMEOUT
    """An idle keep-alive connection is closed after this long."""
    max_connections: int = 0
    """Connections per worker; past it a new one is answered 503. 0: the default."""
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    max_headers: int = DEFAULT_MAX_HEADERS
    shutdown_timeout: float | None = None
    """How long SIGTERM waits for requests in flight; None: the request timeout + 5 s, or
    DEFAULT_SHUTDOWN_TIMEOUT without one (used by the server, not the protocol)."""

    def resolved(self) -> ServerLimits:
        """With `max_connections` decided for this process's open-file limit."""
        if self.max_connections > 0:
            return self
        return replace(self, max_connections=default_max_connections())


def _open_file_limit() -> int | None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def default_max_connections() -> int:
    """DEFAULT_MAX_CONNECTIONS, or fewer so that a quarter of the open files (at least 256)
    stay for everything else: refused connections, guests' files, the compile cache."""
    soft = _open_file_limit()
    if soft is None:
        return DEFAULT_MAX_CONNECTIONS
    return max(16, min(DEFAULT_MAX_CONNECTIONS, soft - max(256, soft // 4)))


def _refusals_lingering(max_connections: int) -> int:
    soft = _open_file_limit()
    if soft is None:
        return 1024
    if max_connections > soft - 64:
        log.warning(
            "--max-connections %d is near or above the open-file limit (%d): connections "
            "past the limit may be dropped instead of answered 503",
            max_connections,
            soft,
        )
    return max(16, (soft - max_connections) // 2)


_last_warning = 0.0


def _warn_refusing(limit: int) -> None:
    global _last_warning
    now = time.monotonic()
    if now - _last_warning >= _WARN_EVERY:  # once in a while, not once per connection
        _last_warning = now
        log.warning("%d connections open (--max-connections): refusing new ones with 503", limit)


class _HeadTooLarge(Exception):
    """Raised in a parser callback to stop parsing: the request gets 431."""


class LimitedProtocol(TrailerProtocol):
    """uvicorn's httptools protocol (with trailers) under `limits`: make a subclass with
    `with_limits` and give it to uvicorn as its `http` protocol."""

    limits: ClassVar[ServerLimits] = ServerLimits(max_connections=DEFAULT_MAX_CONNECTIONS)
    refusing: ClassVar[set[LimitedProtocol]] = set()  # refused, lingering
    max_refusing: ClassVar[int] = 1024

    @classmethod
    def with_limits(cls, limits: ServerLimits) -> type[LimitedProtocol]:
        limits = limits.resolved()
        own = {
            "limits": limits,
            "refusing": set(),
            "max_refusing": _refusals_lingering(limits.max_connections),
        }
        return cast(type[LimitedProtocol], type(cls.__name__, (cls,), own))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # uvicorn's own keep-alive timer, at this value (its Config takes whole seconds).
        self.timeout_keep_alive = self.limits.keep_alive_timeout  # type: ignore[assignment]
        self._refused = False  # past max_connections: answered 503, never parsed
        self._heads = 0  # request heads parsed on this connection
        self._closing = False  # answered with an error: the input is dropped
        self._in_head = True  # the next bytes are a request head
        self._head_bytes = 0  # of the current head, counted before they are parsed
        self._head_timer: TimerHandle | None = None
        self._linger: TimerHandle | None = None
        self._fields = 0  # header and trailer fields of the current message
        self._too_large = ""  # why the head is refused with 431
        self._chunk_open = False  # between a chunk's size line and its end
        self._chunk_body = False  # ... and data of that chunk has come
        self._trailer_bytes = 0

    # -- connections ------------------------------------------------------------------------
    def connection_made(self, transport: Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_connections:
            self._refused = True
            self.transport = transport
            _warn_refusing(self.limits.max_connections)
            self._answer_and_close(503, "Too many connections; try again later.", b"1")
            return
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._head_timer, self._linger):
            if timer is not None:
                timer.cancel()
        if self._refused:
            self.refusing.discard(self)
        else:
            super().connection_lost(exc)

    def _idle(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm_head_timer(self) -> None:
        if self.limits.header_timeout > 0:
            self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_late)

    def _head_late(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or not self._in_head or not self._idle():
            return
        if self._head_bytes:
            self._answer_and_close(408, "Request header timeout.")
        else:  # nothing was asked: an idle connection, closed as keep-alive ones are
            self.transport.close()

    # -- input ----------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self._closing or self._refused:
            return
        if not self._in_head:
            # Trailer fields are buffered like headers: count what comes while a chunk that
            # had no data is open (the last chunk, whose trailers are being received).
            watch = self._chunk_open and not self._chunk_body
            super().data_received(data)
            if watch and self._chunk_open and not self._chunk_body and not self._closing:
                self._trailer_bytes += len(data)
                if self._trailer_bytes > self.limits.max_header_bytes:
                    self._answer_and_close(431, "Request trailer fields too large.")
            return
        self._receive_head(data)

    def _receive_head(self, data: bytes) -> None:
        if self._head_timer is None and self._idle():
            self._arm_head_timer()  # a keep-alive connection's next request has begun
        room = self.limits.max_header_bytes - self._head_bytes
        if len(data) <= room:
            self._head_bytes += len(data)
            super().data_received(data)
            return
        # Parse only what may belong to the head; the rest once it is known to have ended.
        self._head_bytes += room
        heads = self._heads
        super().data_received(data[:room])
        if self._closing or self.transport.is_closing():
            return
        if self._heads == heads:
            self._answer_and_close(431, "Request header fields too large.")
        else:
            self.data_received(data[room:])

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._fields = 0
        self._trailer_bytes = 0
        self._chunk_open = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self._fields += 1
        if self._fields > self.limits.max_headers:
            self._too_large = "Too many request header fields."
            raise _HeadTooLarge  # httptools stops; uvicorn answers via send_400_response
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._heads += 1
        self._in_head = False
        self._head_bytes = 0
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().on_headers_complete()

    def on_chunk_header(self) -> None:
        self._chunk_open, self._chunk_body = True, False

    def on_chunk_complete(self) -> None:
        self._chunk_open = False

    def on_body(self, body: bytes) -> None:
        self._chunk_body = True
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._in_head = True
        super().on_message_complete()

    # -- error responses -------------------------------------------------------------------
    def send_400_response(self, msg: str) -> None:
        if self._too_large:
            self._answer_and_close(431, self._too_large)
        else:
            self._answer_and_close(400, msg)

    def _answer_and_close(self, status: int, message: str, retry_after: bytes = b"") -> None:
        """Answer `status` and close gracefully (see _LINGER)."""
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            if self._in_head or cycle.response_started:
                # A response is due before any other (pipelining), or is being sent: none
                # can be written now.
                self.transport.close()
                return
            cycle.disconnected = True  # the request ends here: its app sees a disconnect
            cycle.message_event.set()
        body = message.encode("ascii")
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        if retry_after:
            head.append(b"retry-after: " + retry_after + b"\r\n")
        head += [
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
            body,
        ]
        self._closing = True
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        self.transport.write(b"".join(head))
        if self.transport.can_write_eof():
            self.transport.write_eof()
        if self.flow is not None:
            self.flow.resume_reading()
        linger = _LINGER
        if self._refused:
            if len(self.refusing) >= self.max_refusing:
                self.transport.close()
                return
            self.refusing.add(self)
            linger = _REFUSED_LINGER
        self._linger = self.loop.call_later(linger, self.transport.close)
