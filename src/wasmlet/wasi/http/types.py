"""The host side of wasi:http's `types`: its WIT declarations (resources, `method`,
`error-code`, …) and the Python objects the guest's handles stand for.

The interface's functions are in `types_impl`; the body objects in `body`. What the outgoing
handler hands a transport (`OutboundRequest`) and the transport hook itself (`SendRequest`)
are here too, as wasmtime keeps `OutgoingRequestConfig` and `send_request` beside its types.
"""

from __future__ import annotations

import concurrent.futures
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeAlias

from .._abi import (
    LIST_U8,
    STRING,
    U8,
    U16,
    U32,
    U64,
    Err,
    List,
    Option,
    Record,
    Result,
    Tuple,
    Variant,
)
from .._iface import Interface
from .._state import table
from .body import Entries, IncomingBody, OutgoingBody, ResponseStream, drop_outgoing_body

types_iface = Interface("wasi:http/types")


def _pop(rep: int) -> None:
    table().pop(rep)


FIELDS = types_iface.resource("fields", _pop)
INCOMING_REQUEST = types_iface.resource("incoming-request", _pop)
OUTGOING_REQUEST = types_iface.resource("outgoing-request", _pop)
REQUEST_OPTIONS = types_iface.resource("request-options", _pop)
RESPONSE_OUTPARAM = types_iface.resource("response-outparam", _pop)
INCOMING_RESPONSE = types_iface.resource("incoming-response", _pop)
INCOMING_BODY = types_iface.resource("incoming-body", _pop)
FUTURE_TRAILERS = types_iface.resource("future-trailers", _pop)
OUTGOING_RESPONSE = types_iface.resource("outgoing-response", _pop)
OUTGOING_BODY = types_iface.resource("outgoing-body", drop_outgoing_body)
FUTURE_INCOMING_RESPONSE = types_iface.resource("future-incoming-response", _pop)

METHODS = ("get", "head", "post", "put", "delete", "connect", "options", "trace", "patch")
METHOD = Variant(*((m, None) for m in METHODS), ("other", STRING))
SCHEME = Variant(("HTTP", None), ("HTTPS", None), ("other", STRING))
DURATION = U64
FIELD_SIZE = Record(("field-name", Option(STRING)), ("field-size", Option(U32)))
ERROR_CODE = Variant(
    ("DNS-timeout", None),
    ("DNS-error", Record(("rcode", Option(STRING)), ("info-code", Option(U16)))),
    ("destination-not-found", None),
    ("destination-unavailable", None),
    ("destination-IP-prohibited", None),
    ("destination-IP-unroutable", None),
    ("connection-refused", None),
    ("connection-terminated", None),
    ("connection-timeout", None),
    ("connection-read-timeout", None),
    ("connection-write-timeout", None),
    ("connection-limit-reached", None),
    ("TLS-protocol-error", None),
    ("TLS-certificate-error", None),
    ("TLS-alert-received", Record(("alert-id", Option(U8)), ("alert-message", Option(STRING)))),
    ("HTTP-request-denied", None),
    ("HTTP-request-length-required", None),
    ("HTTP-request-body-size", Option(U64)),
    ("HTTP-request-method-invalid", None),
    ("HTTP-request-URI-invalid", None),
    ("HTTP-request-URI-too-long", None),
    ("HTTP-request-header-section-size", Option(U32)),
    ("HTTP-request-header-size", Option(FIELD_SIZE)),
    ("HTTP-request-trailer-section-size", Option(U32)),
    ("HTTP-request-trailer-size", FIELD_SIZE),
    ("HTTP-response-incomplete", None),
    ("HTTP-response-header-section-size", Option(U32)),
    ("HTTP-response-header-size", FIELD_SIZE),
    ("HTTP-response-body-size", Option(U64)),
    ("HTTP-response-trailer-section-size", Option(U32)),
    ("HTTP-response-trailer-size", FIELD_SIZE),
    ("HTTP-response-transfer-coding", Option(STRING)),
    ("HTTP-response-content-coding", Option(STRING)),
    ("HTTP-response-timeout", None),
    ("HTTP-upgrade-failed", None),
    ("HTTP-protocol-error", None),
    ("loop-detected", None),
    ("configuration-error", None),
    ("internal-error", Option(STRING)),
)
HEADER_ERROR = Variant(("invalid-syntax", None), ("forbidden", None), ("immutable", None))
ENTRIES = List(Tuple(STRING, LIST_U8))
UNIT = Result(None, None)

# Python values of those WIT types: a case without payload is its name, one with a payload
# `(name, payload)` (a record payload is a dict keyed by the WIT field names).
ErrorCode: TypeAlias = str | tuple[str, object]
Method: TypeAlias = str | tuple[str, str]  # "get", …, ("other", "PROPFIND")
Scheme: TypeAlias = str | tuple[str, str]  # "HTTP", "HTTPS", ("other", "ws")

# Hop-by-hop and host-controlled headers a guest may not set (as wasmtime-wasi-http).
FORBIDDEN = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
        "host",
        "http2-settings",
    }
)
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-zA-Z]+")


def _valid_name(name: str) -> bool:
    return _TOKEN.fullmatch(name) is not None


def _valid_value(value: bytes) -> bool:
    return b"\r" not in value and b"\n" not in value and b"\0" not in value


def method_value(method: str) -> Method:
    """An HTTP method as a WIT `method` value."""
    low = method.lower()
    return low if low in METHODS else ("other", method)


# -- the objects behind the guest's handles --------------------------------------------------


@dataclass
class Fields:
    entries: Entries = field(default_factory=list)
    immutable: bool = False  # a request's or response's own headers (WIT: `immutable`)

    def check(self, name: str, values: Sequence[bytes] = ()) -> Err[str] | None:
        """Why setting `name` to `values` is refused (a `header-error`), or None."""
        if self.immutable:
            return Err("immutable")
        if not _valid_name(name) or not all(_valid_value(v) for v in values):
            return Err("invalid-syntax")
        if name.lower() in FORBIDDEN:
            return Err("forbidden")
        return None

    def get(self, name: str) -> list[bytes]:
        key = name.lower()
        return [v for k, v in self.entries if k.lower() == key]


@dataclass
class IncomingRequest:
    method: str
    path_with_query: str
    scheme: str
    authority: str | None
    headers: Entries
    body: bytes  # what has arrived when the request is routed
    consumed: bool = False
    body_rest: Callable[[], bytes | None] | None = None  # more body, read as the guest asks
    # The trailer fields, complete once the whole body has been read (None: not known).
    trailers: Callable[[], Entries] | None = None


@dataclass
class OutgoingResponse:
    status: int
    headers: Fields
    body: OutgoingBody | None = None
    body_taken: bool = False


@dataclass
class ResponseOutparam:
    """Where the guest puts its answer. With a `stream`, the response starts going to the
    client when the guest sets it and its body as the guest writes it; without, the
    executor reads it after `handle` returns."""

    response: OutgoingResponse | None = None
    error: object = None  # an error-code value
    was_set: bool = False
    stream: ResponseStream | None = None


@dataclass
class OutgoingRequest:
    headers: Fields
    method: Method = "get"
    path_with_query: str | None = None
    scheme: Scheme | None = None
    authority: str | None = None
    body: OutgoingBody | None = None
    body_taken: bool = False


@dataclass
class RequestOptions:
    # Nanoseconds (WIT `duration`); None: the transport's default.
    connect_timeout: int | None = None
    first_byte_timeout: int | None = None
    between_bytes_timeout: int | None = None


@dataclass
class IncomingResponse:
    status: int
    headers: Entries
    body: IncomingBody | None  # None once the guest has consumed it


# What a transport's future resolves to: the response, or why there is none.
SendOutcome: TypeAlias = IncomingResponse | ErrorCode


@dataclass
class FutureIncomingResponse:
    future: concurrent.futures.Future[SendOutcome]
    taken: bool = False


# -- the transport hook ----------------------------------------------------------------------


@dataclass(frozen=True)
class OutboundRequest:
    """An outbound request the component's policy has allowed, as a transport sends it."""

    method: str  # upper case
    url: str  # absolute
    headers: Entries
    # The whole body, or (written after `handle`) its chunks as the guest writes them; the
    # iteration raises if the guest abandons the body.
    body: bytes | Iterable[bytes]
    # Seconds, from the guest's `request-options`; None: the transport's default.
    connect_timeout: float | None = None
    first_byte_timeout: float | None = None
    between_bytes_timeout: float | None = None


class SendRequest(Protocol):
    """How outbound requests are sent (wasmtime's `WasiHttpView::send_request`): start
    sending and return at once; the future resolves when the response head has arrived,
    to an `IncomingResponse` whose body streams the rest, or to an error-code value."""

    def __call__(self, request: OutboundRequest) -> concurrent.futures.Future[SendOutcome]: ...
