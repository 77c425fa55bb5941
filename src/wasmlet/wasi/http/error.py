"""Mapping failures onto wasi:http's `error-code`.

`error_code` maps what sending an outbound request with httpx raised. It looks at exception
*types*, never at message text: httpx wraps httpcore's exception (its `__cause__`), which
wraps what the socket, resolver or TLS layer raised, so the chain says what happened:

    httpx.ConnectError <- httpcore.ConnectError <- socket.gaierror          name lookup failed
    httpx.ConnectError <- httpcore.ConnectError <- ConnectionRefusedError   nothing listens
    httpx.ConnectError <- httpcore.ConnectError <- ssl.SSLCertVerificationError
    httpx.RemoteProtocolError <- httpcore.RemoteProtocolError <- h11.RemoteProtocolError
                                                                 (the response did not parse)
    httpx.RemoteProtocolError <- httpcore.RemoteProtocolError    (closed before a response)

httpcore's connection pool re-raises with `from None`, which hides the inner exceptions in
tracebacks but keeps them as `__context__`, so the chain follows `__cause__`, else
`__context__`. (tests/test_wasi_http_outbound.py provokes each case for real.)
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator

from ..io import IoError
from .types import ErrorCode


def error_code(exc: BaseException) -> ErrorCode:
    """The error-code for a failure to send a request or receive its response head."""
    # Imported here: only an app that sends outbound requests needs them, and they are a
    # good share of a fresh server's imports.
    import h11
    import httpcore
    import httpx

    chain = list(_chain(exc))

    def caused_by(*kinds: type[BaseException]) -> BaseException | None:
        return next((e for e in chain if isinstance(e, kinds)), None)

    # Before the connection: the name, then the TLS handshake (both raise ConnectError, so
    # what they wrap decides).
    lookup = caused_by(socket.gaierror)
    if isinstance(lookup, socket.gaierror):
        # No DNS rcode to give: getaddrinfo reports only its own EAI_* code and text.
        return ("DNS-error", {"rcode": lookup.strerror or str(lookup), "info-code": None})
    if caused_by(ssl.SSLCertVerificationError):
        return "TLS-certificate-error"
    if caused_by(ssl.SSLError):
        return "TLS-protocol-error"
    if caused_by(httpx.ConnectTimeout, httpcore.ConnectTimeout):
        return "connection-timeout"
    if caused_by(httpx.ReadTimeout, httpcore.ReadTimeout):
        return "HTTP-response-timeout"  # connected, but no response head in time
    if caused_by(httpx.WriteTimeout, httpcore.WriteTimeout):
        return "connection-write-timeout"
    if caused_by(httpx.PoolTimeout, httpcore.PoolTimeout):
        return "connection-limit-reached"  # every connection the client may open is busy
    if caused_by(httpx.ConnectError, httpcore.ConnectError):
        return "connection-refused"  # ECONNREFUSED, and whatever else fails a connect (as Spin)
    if caused_by(httpx.RemoteProtocolError, httpcore.RemoteProtocolError):
        # The parser's own error inside: the peer sent something that is not HTTP/1.1;
        # none: httpcore saw the connection close before any response.
        if caused_by(h11.RemoteProtocolError):
            return "HTTP-protocol-error"
        return "connection-terminated"
    if caused_by(httpx.ReadError, httpx.WriteError, httpcore.ReadError, httpcore.WriteError):
        return "connection-terminated"  # reset or closed while the request was under way
    if caused_by(httpx.UnsupportedProtocol, httpcore.UnsupportedProtocol, httpx.InvalidURL):
        return "HTTP-request-URI-invalid"
    return ("internal-error", str(exc) or type(exc).__name__)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and what caused it, outermost first (`raise … from` or raised while handling)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def io_error_code(error: IoError) -> ErrorCode | None:
    """The error-code a stream error carries (`http-error-code`), if it is an HTTP one."""
    cause = error.cause
    return cause if isinstance(cause, str | tuple) else None


def stream_error_code(error: IoError) -> ErrorCode:
    """The error-code for a body that failed to be read (`future-trailers.get`)."""
    return io_error_code(error) or ("internal-error", error.message)
