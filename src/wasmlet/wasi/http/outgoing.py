"""wasi:http's `outgoing-handler`, and the outbound-HTTP capability it reads.

`handle` decides, as Spin does, whether the component may send the request (its
`allowed_outbound_hosts`; a relative request goes to the app's own origin), then hands the
request to the capability's `send` hook: the transport the outbound-http factor built for
the app (httpx by default, see `sender`), or whatever an embedder or a test injects.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from ...outbound import OutboundPolicy
from .._abi import Err, Ok, Option, Own, Result
from .._calls import HostTrap
from .._iface import Interface
from .._state import Key, current, table
from .body import BodyPipe, OutgoingBody
from .types import (
    ERROR_CODE,
    FUTURE_INCOMING_RESPONSE,
    OUTGOING_REQUEST,
    REQUEST_OPTIONS,
    FutureIncomingResponse,
    OutboundRequest,
    OutgoingRequest,
    RequestOptions,
    Scheme,
    SendRequest,
)

log = logging.getLogger("wasmlet.http")

handler_iface = Interface("wasi:http/outgoing-handler")


@dataclass(frozen=True)
class OutboundHttp:
    """The outbound-HTTP capability of one component."""

    policy: OutboundPolicy
    self_origin: str | None  # base URL for relative (`self`) requests; None: refused
    send: SendRequest  # how allowed requests are sent (the app's transport)
    self_host: str | None = None  # Host of relative requests (a server that routes by Host)


OUTBOUND_HTTP: Key[OutboundHttp] = Key("outbound-http")
SELF_ALT = "self.alt"  # Spin 3's name for the app itself, as a request's host
BODY_WAIT = 30.0  # seconds the transport waits for the guest's next body write, at most


def _scheme_name(scheme: Scheme | None) -> str:
    """The URL scheme of a request's WIT `scheme` (none: http)."""
    if scheme == "HTTPS":
        return "https"
    if isinstance(scheme, tuple):
        return scheme[1].lower()
    return "http"


def _self_host(cap: OutboundHttp, relative: bool) -> list[tuple[str, bytes]]:
    """The Host a relative request needs when the server picks the app by Host."""
    if not relative or cap.self_host is None:
        return []
    return [("host", cap.self_host.encode("latin-1"))]


def _seconds(ns: int | None) -> float | None:
    return ns / 1e9 if ns is not None else None


def _time_left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.001, deadline - time.monotonic())


def _within(timeout: float | None, left: float | None) -> float | None:
    """A transport timeout no longer than the request's time left: a response body read
    later cannot keep the guest's thread far past its deadline."""
    if left is None:
        return timeout
    return left if timeout is None else min(timeout, left)


def _body(body: OutgoingBody | None, timeout: float | None) -> bytes | BodyPipe:
    """The request body as the transport reads it: whole if the guest has finished (or
    dropped) it, else streamed as the guest goes on writing it."""
    if body is None:
        return b""
    if body.finished or body.stream.closed:
        return body.stream.getvalue()
    pipe = BodyPipe(min(timeout, BODY_WAIT) if timeout is not None else BODY_WAIT)
    body.stream_to(pipe)
    return pipe


@handler_iface.func(
    "handle",
    (Own(OUTGOING_REQUEST), Option(Own(REQUEST_OPTIONS))),
    Result(Own(FUTURE_INCOMING_RESPONSE), ERROR_CODE),
)
def _handle(rep: int, options: int | None) -> object:
    t = table()
    req = t.pop(rep)
    if not isinstance(req, OutgoingRequest):
        raise HostTrap("unknown outgoing-request handle")
    opts = t.pop(options) if options is not None else None
    cap = current().get(OUTBOUND_HTTP)
    scheme = _scheme_name(req.scheme)
    host: str | None = None
    port: int | None = None
    if req.authority:
        base = f"{scheme}://{req.authority}"
        try:
            parts = urlsplit(base)
            host, port = parts.hostname, parts.port
        except ValueError:  # e.g. "host:port", "[::1": the guest's to fix, not a trap
            return Err("HTTP-request-URI-invalid")
    relative = not host or host == SELF_ALT  # spin-sdk sends a relative URL as ":80"/":443"
    if relative:
        host, port = None, None
        if cap.self_origin is None:
            return Err("HTTP-request-URI-invalid")
        base = cap.self_origin
    if not cap.policy.allows(scheme, host, port):
        log.info(
            "outbound request to %s://%s denied by allowed_outbound_hosts",
            scheme,
            "self" if relative else req.authority,
        )
        return Err("HTTP-request-denied")
    method = req.method if isinstance(req.method, str) else req.method[1]
    options_ = opts if isinstance(opts, RequestOptions) else RequestOptions()
    left = _time_left(current().deadline)
    request = OutboundRequest(
        method=method.upper(),
        url=base + (req.path_with_query or "/"),
        headers=list(req.headers.entries) + _self_host(cap, relative),
        body=_body(req.body, _within(_seconds(options_.between_bytes_timeout), left)),
        connect_timeout=_within(_seconds(options_.connect_timeout), left),
        first_byte_timeout=_within(_seconds(options_.first_byte_timeout), left),
        between_bytes_timeout=_within(_seconds(options_.between_bytes_timeout), left),
    )
    return Ok(t.push(FutureIncomingResponse(cap.send(request))))


OUTGOING: Interface = handler_iface
