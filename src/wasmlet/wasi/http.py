"""wasi:http 0.2 (`types`, `outgoing-handler`) implemented in Python.

The incoming side is driven by the executor: it creates an `IncomingRequest` and a
`ResponseOutparam`, calls the guest's `handle`, then reads what the guest set. The outgoing
side sends real HTTP with httpx, after the component's outbound policy allows it.
"""

from __future__ import annotations

import concurrent.futures
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from ..outbound import OutboundPolicy
from ._abi import (
    BOOL,
    LIST_U8,
    STRING,
    U8,
    U16,
    U32,
    U64,
    Borrow,
    Err,
    HostTrap,
    List,
    Ok,
    Option,
    Own,
    Record,
    Result,
    Tuple,
    Variant,
)
from ._iface import Interface
from ._state import current, table
from .io import (
    ERROR,
    INPUT_STREAM,
    OUTPUT_STREAM,
    POLLABLE,
    BytesInputStream,
    FuturePollable,
    InputStream,
    IoError,
    IterInputStream,
    Pollable,
    StreamClosed,
    StreamFailed,
    StreamingOutputStream,
    new_pollable,
)

log = logging.getLogger("wasmlet.http")

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
OUTGOING_BODY = types_iface.resource("outgoing-body", lambda rep: _drop_outgoing_body(rep))
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


# -- objects ---------------------------------------------------------------------------------


@dataclass
class Fields:
    entries: list[tuple[str, bytes]] = field(default_factory=list)
    immutable: bool = False

    def check(self, name: str, values: list[bytes] = ()) -> object | None:  # type: ignore[assignment]
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
    headers: list[tuple[str, bytes]]
    body: bytes
    consumed: bool = False
    body_rest: Callable[[], bytes | None] | None = None  # more body, read as the guest asks
    # The trailer fields, complete once the whole body has been read (None: not known).
    trailers: Callable[[], list[tuple[str, bytes]]] | None = None


@dataclass
class IncomingBody:
    stream: Any  # an InputStream
    taken: bool = False
    trailers: Callable[[], list[tuple[str, bytes]]] | None = None


@dataclass
class FutureTrailers:
    """The trailers of an incoming body: known once the rest of the body has been read
    (and discarded, if the guest did not read it)."""

    stream: Any  # the body's InputStream
    source: Callable[[], list[tuple[str, bytes]]] | None
    taken: bool = False

    def resolve(self) -> list[tuple[str, bytes]] | None:
        while True:
            try:
                self.stream.blocking_read(65536)
            except StreamClosed:
                break
        fields = self.source() if self.source is not None else []
        return fields or None  # an empty trailer section is no trailers


@dataclass
class OutgoingBody:
    stream: StreamingOutputStream = field(default_factory=StreamingOutputStream)
    write_taken: bool = False
    finished: bool = False
    trailers: list[tuple[str, bytes]] | None = None
    response_stream: ResponseStream | None = None  # set once the response has started


@dataclass
class OutgoingResponse:
    status: int
    headers: Fields
    body: OutgoingBody | None = None
    body_taken: bool = False


class ResponseStream(Protocol):
    """Where a response goes as soon as the guest sets it (the HTTP trigger's channel)."""

    def start(self, status: int, headers: list[tuple[str, str]]) -> None: ...
    def write(self, data: bytes) -> None: ...
    def end(self, trailers: list[tuple[str, str]] | None = None) -> None: ...


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
    method: object = "get"
    path_with_query: str | None = None
    scheme: object = None
    authority: str | None = None
    body: OutgoingBody | None = None
    body_taken: bool = False


@dataclass
class RequestOptions:
    connect_timeout: int | None = None
    first_byte_timeout: int | None = None
    between_bytes_timeout: int | None = None


@dataclass
class IncomingResponse:
    status: int
    headers: list[tuple[str, bytes]]
    body: IncomingBody | None


@dataclass
class FutureIncomingResponse:
    future: concurrent.futures.Future[object]
    taken: bool = False


def _drop_outgoing_body(rep: int) -> None:
    body = table().pop(rep)
    if isinstance(body, OutgoingBody) and not body.finished:
        body.stream.close()  # dropped without finish: the body is incomplete


_t = table  # the instance's resource table


# -- fields ----------------------------------------------------------------------------------


@types_iface.func("[constructor]fields", (), Own(FIELDS))
def _fields_new() -> int:
    return _t().push(Fields())


@types_iface.func("[static]fields.from-list", (ENTRIES,), Result(Own(FIELDS), HEADER_ERROR))
def _fields_from_list(entries: list[tuple[str, bytes]]) -> object:
    f = Fields()
    for name, value in entries:
        if (err := f.check(name, [value])) is not None:
            return err
    f.entries = list(entries)
    return Ok(_t().push(f))


@types_iface.func("[method]fields.get", (Borrow(FIELDS), STRING), List(LIST_U8))
def _fields_get(rep: int, name: str) -> list[bytes]:
    return _t().get(rep, Fields).get(name)


@types_iface.func("[method]fields.has", (Borrow(FIELDS), STRING), BOOL)
def _fields_has(rep: int, name: str) -> bool:
    return bool(_t().get(rep, Fields).get(name))


@types_iface.func(
    "[method]fields.set", (Borrow(FIELDS), STRING, List(LIST_U8)), Result(None, HEADER_ERROR)
)
def _fields_set(rep: int, name: str, values: list[bytes]) -> object:
    f = _t().get(rep, Fields)
    if (err := f.check(name, values)) is not None:
        return err
    key = name.lower()
    f.entries = [(k, v) for k, v in f.entries if k.lower() != key] + [(name, v) for v in values]
    return Ok()


@types_iface.func("[method]fields.delete", (Borrow(FIELDS), STRING), Result(None, HEADER_ERROR))
def _fields_delete(rep: int, name: str) -> object:
    f = _t().get(rep, Fields)
    if (err := f.check(name)) is not None:
        return err
    key = name.lower()
    f.entries = [(k, v) for k, v in f.entries if k.lower() != key]
    return Ok()


@types_iface.func(
    "[method]fields.append", (Borrow(FIELDS), STRING, LIST_U8), Result(None, HEADER_ERROR)
)
def _fields_append(rep: int, name: str, value: bytes) -> object:
    f = _t().get(rep, Fields)
    if (err := f.check(name, [value])) is not None:
        return err
    f.entries.append((name, value))
    return Ok()


@types_iface.func("[method]fields.entries", (Borrow(FIELDS),), ENTRIES)
def _fields_entries(rep: int) -> list[tuple[str, bytes]]:
    return list(_t().get(rep, Fields).entries)


@types_iface.func("[method]fields.clone", (Borrow(FIELDS),), Own(FIELDS))
def _fields_clone(rep: int) -> int:
    return _t().push(Fields(list(_t().get(rep, Fields).entries)))


# -- incoming request ------------------------------------------------------------------------


def _req(rep: int) -> IncomingRequest:
    return _t().get(rep, IncomingRequest)


def method_value(method: str) -> object:
    low = method.lower()
    return low if low in METHODS else ("other", method)


@types_iface.func("[method]incoming-request.method", (Borrow(INCOMING_REQUEST),), METHOD)
def _ireq_method(rep: int) -> object:
    return method_value(_req(rep).method)


@types_iface.func(
    "[method]incoming-request.path-with-query", (Borrow(INCOMING_REQUEST),), Option(STRING)
)
def _ireq_path(rep: int) -> str:
    return _req(rep).path_with_query


@types_iface.func("[method]incoming-request.scheme", (Borrow(INCOMING_REQUEST),), Option(SCHEME))
def _ireq_scheme(rep: int) -> object:
    return "HTTPS" if _req(rep).scheme == "https" else "HTTP"


@types_iface.func("[method]incoming-request.authority", (Borrow(INCOMING_REQUEST),), Option(STRING))
def _ireq_authority(rep: int) -> str | None:
    return _req(rep).authority


@types_iface.func("[method]incoming-request.headers", (Borrow(INCOMING_REQUEST),), Own(FIELDS))
def _ireq_headers(rep: int) -> int:
    return _t().push(Fields(list(_req(rep).headers), immutable=True))


@types_iface.func(
    "[method]incoming-request.consume",
    (Borrow(INCOMING_REQUEST),),
    Result(Own(INCOMING_BODY), None),
)
def _ireq_consume(rep: int) -> object:
    req = _req(rep)
    if req.consumed:
        return Err()
    req.consumed = True
    if req.body_rest is None:
        stream: InputStream = BytesInputStream(req.body)
    else:
        stream = IterInputStream(_body_chunks(req.body, req.body_rest))
    return Ok(_t().push(IncomingBody(stream, trailers=req.trailers)))


def _body_chunks(first: bytes, rest: Callable[[], bytes | None]) -> Callable[[], bytes | None]:
    """What has arrived, then the rest as the client sends it."""
    pending = [first] if first else []

    def next_chunk() -> bytes | None:
        return pending.pop() if pending else rest()

    return next_chunk


# -- bodies ----------------------------------------------------------------------------------


@types_iface.func(
    "[method]incoming-body.stream", (Borrow(INCOMING_BODY),), Result(Own(INPUT_STREAM), None)
)
def _ibody_stream(rep: int) -> object:
    body = _t().get(rep, IncomingBody)
    if body.taken:
        return Err()
    body.taken = True
    return Ok(_t().push(body.stream))


@types_iface.func("[static]incoming-body.finish", (Own(INCOMING_BODY),), Own(FUTURE_TRAILERS))
def _ibody_finish(rep: int) -> int:
    body = _t().pop(rep)
    if not isinstance(body, IncomingBody):
        raise HostTrap("unknown incoming-body handle")
    return _t().push(FutureTrailers(body.stream, body.trailers))


@types_iface.func("[method]future-trailers.subscribe", (Borrow(FUTURE_TRAILERS),), Own(POLLABLE))
def _trailers_subscribe(rep: int) -> int:
    _t().get(rep, FutureTrailers)
    return new_pollable(Pollable())


TRAILERS_GET = Option(Result(Result(Option(Own(FIELDS)), ERROR_CODE), None))


def _stream_error_code(e: StreamFailed) -> object:
    cause = e.error.cause
    return cause if isinstance(cause, (str, tuple)) else ("internal-error", e.error.message)


@types_iface.func("[method]future-trailers.get", (Borrow(FUTURE_TRAILERS),), TRAILERS_GET)
def _trailers_get(rep: int) -> object:
    ft = _t().get(rep, FutureTrailers)
    if ft.taken:
        return Err()
    ft.taken = True
    try:
        fields = ft.resolve()
    except StreamFailed as e:  # the client went away, or the body was too large
        return Ok(Err(_stream_error_code(e)))
    trailers = None if fields is None else _t().push(Fields(fields, immutable=True))
    return Ok(Ok(trailers))


@types_iface.func(
    "[method]outgoing-body.write", (Borrow(OUTGOING_BODY),), Result(Own(OUTPUT_STREAM), None)
)
def _obody_write(rep: int) -> object:
    body = _t().get(rep, OutgoingBody)
    if body.write_taken:
        return Err()
    body.write_taken = True
    return Ok(_t().push(body.stream))


@types_iface.func(
    "[static]outgoing-body.finish",
    (Own(OUTGOING_BODY), Option(Own(FIELDS))),
    Result(None, ERROR_CODE),
)
def _obody_finish(rep: int, trailers: int | None) -> object:
    body = _t().pop(rep)
    if not isinstance(body, OutgoingBody):
        raise HostTrap("unknown outgoing-body handle")
    if trailers is not None:
        body.trailers = list(_t().get(trailers, Fields).entries)
        _t().pop(trailers)
    body.finished = True
    body.stream.close()
    if body.response_stream is not None:  # the client gets the end of the body now
        body.response_stream.end(decode_fields(body.trailers) if body.trailers else None)
    return Ok()


# -- outgoing response -----------------------------------------------------------------------


def _oresp(rep: int) -> OutgoingResponse:
    return _t().get(rep, OutgoingResponse)


@types_iface.func("[constructor]outgoing-response", (Own(FIELDS),), Own(OUTGOING_RESPONSE))
def _oresp_new(headers: int) -> int:
    f = _t().pop(headers)
    if not isinstance(f, Fields):
        raise HostTrap("unknown fields handle")
    return _t().push(OutgoingResponse(200, Fields(f.entries, immutable=True)))


@types_iface.func("[method]outgoing-response.status-code", (Borrow(OUTGOING_RESPONSE),), U16)
def _oresp_status(rep: int) -> int:
    return _oresp(rep).status


@types_iface.func(
    "[method]outgoing-response.set-status-code", (Borrow(OUTGOING_RESPONSE), U16), UNIT
)
def _oresp_set_status(rep: int, status: int) -> object:
    if not 100 <= status <= 999:
        return Err()
    _oresp(rep).status = status
    return Ok()


@types_iface.func("[method]outgoing-response.headers", (Borrow(OUTGOING_RESPONSE),), Own(FIELDS))
def _oresp_headers(rep: int) -> int:
    return _t().push(_oresp(rep).headers)  # the same (immutable) object: a child handle


@types_iface.func(
    "[method]outgoing-response.body", (Borrow(OUTGOING_RESPONSE),), Result(Own(OUTGOING_BODY), None)
)
def _oresp_body(rep: int) -> object:
    resp = _oresp(rep)
    if resp.body_taken:
        return Err()
    resp.body_taken = True
    resp.body = OutgoingBody(StreamingOutputStream(limit=current().capabilities.get("max_body")))
    return Ok(_t().push(resp.body))


@types_iface.func(
    "[static]response-outparam.set",
    (Own(RESPONSE_OUTPARAM), Result(Own(OUTGOING_RESPONSE), ERROR_CODE)),
)
def _outparam_set(rep: int, response: object) -> None:
    param = _t().pop(rep)
    if not isinstance(param, ResponseOutparam):
        raise HostTrap("unknown response-outparam handle")
    param.was_set = True
    if isinstance(response, Ok):
        resp = _t().pop(response.value)
        if not isinstance(resp, OutgoingResponse):
            raise HostTrap("unknown outgoing-response handle")
        param.response = resp
        if param.stream is not None:
            param.stream.start(resp.status, decode_fields(resp.headers.entries))
            if resp.body is not None:
                resp.body.response_stream = param.stream
                resp.body.stream.attach(param.stream)
                if resp.body.finished:  # finished before the response was set
                    trailers = resp.body.trailers
                    param.stream.end(decode_fields(trailers) if trailers else None)
    else:
        param.error = response.value  # type: ignore[union-attr]


def decode_fields(entries: list[tuple[str, bytes]]) -> list[tuple[str, str]]:
    return [(k, v.decode("latin-1")) for k, v in entries]


@types_iface.func("http-error-code", (Borrow(ERROR),), Option(ERROR_CODE))
def _http_error_code(rep: int) -> object:
    cause = _t().get(rep, IoError).cause
    return cause if isinstance(cause, (str, tuple)) else None


# -- outgoing request ------------------------------------------------------------------------


def _oreq(rep: int) -> OutgoingRequest:
    return _t().get(rep, OutgoingRequest)


@types_iface.func("[constructor]outgoing-request", (Own(FIELDS),), Own(OUTGOING_REQUEST))
def _oreq_new(headers: int) -> int:
    f = _t().pop(headers)
    if not isinstance(f, Fields):
        raise HostTrap("unknown fields handle")
    return _t().push(OutgoingRequest(Fields(f.entries, immutable=True)))


@types_iface.func(
    "[method]outgoing-request.body", (Borrow(OUTGOING_REQUEST),), Result(Own(OUTGOING_BODY), None)
)
def _oreq_body(rep: int) -> object:
    req = _oreq(rep)
    if req.body_taken:
        return Err()
    req.body_taken = True
    req.body = OutgoingBody()
    return Ok(_t().push(req.body))


def _getter_setter(attr: str, ty: Any) -> None:
    name = attr.replace("_", "-")

    def get(rep: int) -> object:
        return getattr(_oreq(rep), attr)

    def set_(rep: int, value: object) -> object:
        setattr(_oreq(rep), attr, value)
        return Ok()

    types_iface.func(f"[method]outgoing-request.{name}", (Borrow(OUTGOING_REQUEST),), ty)(get)
    types_iface.func(f"[method]outgoing-request.set-{name}", (Borrow(OUTGOING_REQUEST), ty), UNIT)(
        set_
    )


_getter_setter("method", METHOD)
_getter_setter("path_with_query", Option(STRING))
_getter_setter("scheme", Option(SCHEME))
_getter_setter("authority", Option(STRING))


@types_iface.func("[method]outgoing-request.headers", (Borrow(OUTGOING_REQUEST),), Own(FIELDS))
def _oreq_headers(rep: int) -> int:
    return _t().push(_oreq(rep).headers)


@types_iface.func("[constructor]request-options", (), Own(REQUEST_OPTIONS))
def _options_new() -> int:
    return _t().push(RequestOptions())


def _option_accessors(attr: str) -> None:
    name = attr.replace("_", "-")

    def get(rep: int) -> object:
        return getattr(_t().get(rep, RequestOptions), attr)

    def set_(rep: int, value: int | None) -> object:
        setattr(_t().get(rep, RequestOptions), attr, value)
        return Ok()

    types_iface.func(
        f"[method]request-options.{name}", (Borrow(REQUEST_OPTIONS),), Option(DURATION)
    )(get)
    types_iface.func(
        f"[method]request-options.set-{name}", (Borrow(REQUEST_OPTIONS), Option(DURATION)), UNIT
    )(set_)


for _attr in ("connect_timeout", "first_byte_timeout", "between_bytes_timeout"):
    _option_accessors(_attr)


# -- incoming response (of an outbound request) ----------------------------------------------


def _iresp(rep: int) -> IncomingResponse:
    return _t().get(rep, IncomingResponse)


@types_iface.func("[method]incoming-response.status", (Borrow(INCOMING_RESPONSE),), U16)
def _iresp_status(rep: int) -> int:
    return _iresp(rep).status


@types_iface.func("[method]incoming-response.headers", (Borrow(INCOMING_RESPONSE),), Own(FIELDS))
def _iresp_headers(rep: int) -> int:
    return _t().push(Fields(list(_iresp(rep).headers), immutable=True))


@types_iface.func(
    "[method]incoming-response.consume",
    (Borrow(INCOMING_RESPONSE),),
    Result(Own(INCOMING_BODY), None),
)
def _iresp_consume(rep: int) -> object:
    resp = _iresp(rep)
    if resp.body is None:
        return Err()
    body, resp.body = resp.body, None
    return Ok(_t().push(body))


@types_iface.func(
    "[method]future-incoming-response.subscribe", (Borrow(FUTURE_INCOMING_RESPONSE),), Own(POLLABLE)
)
def _fresp_subscribe(rep: int) -> int:
    return new_pollable(FuturePollable(_t().get(rep, FutureIncomingResponse).future))


FRESP_GET = Option(Result(Result(Own(INCOMING_RESPONSE), ERROR_CODE), None))


@types_iface.func(
    "[method]future-incoming-response.get", (Borrow(FUTURE_INCOMING_RESPONSE),), FRESP_GET
)
def _fresp_get(rep: int) -> object:
    fr = _t().get(rep, FutureIncomingResponse)
    if not fr.future.done():
        return None
    if fr.taken:
        return Err()
    fr.taken = True
    outcome = fr.future.result()
    if isinstance(outcome, IncomingResponse):
        return Ok(Ok(_t().push(outcome)))
    return Ok(Err(outcome))


# -- outgoing handler ------------------------------------------------------------------------

handler_iface = Interface("wasi:http/outgoing-handler")

_SENDER = concurrent.futures.ThreadPoolExecutor(32, thread_name_prefix="wasmlet-outbound")
_CLIENT = httpx.Client(follow_redirects=False, timeout=httpx.Timeout(30.0))


@dataclass(frozen=True)
class OutboundHttp:
    """The outbound-HTTP capability of one component."""

    policy: OutboundPolicy
    self_origin: str | None = None  # base URL for relative (`self`) requests


def _scheme_name(scheme: object) -> str:
    if scheme is None or scheme == "HTTPS":
        return "https" if scheme is not None else "http"
    if scheme == "HTTP":
        return "http"
    return str(scheme[1]).lower() if isinstance(scheme, tuple) else "http"


@handler_iface.func(
    "handle",
    (Own(OUTGOING_REQUEST), Option(Own(REQUEST_OPTIONS))),
    Result(Own(FUTURE_INCOMING_RESPONSE), ERROR_CODE),
)
def _handle(rep: int, options: int | None) -> object:
    t = _t()
    req = t.pop(rep)
    if not isinstance(req, OutgoingRequest):
        raise HostTrap("unknown outgoing-request handle")
    opts = t.pop(options) if options is not None else None
    cap: OutboundHttp = current().capability("outbound_http")
    scheme = _scheme_name(req.scheme)
    if req.authority:
        parts = urlsplit(f"{scheme}://{req.authority}")
        host, port = parts.hostname, parts.port
        base = f"{scheme}://{req.authority}"
    else:
        host, port = None, None
        if cap.self_origin is None:
            return Err("HTTP-request-URI-invalid")
        base = cap.self_origin
    if not cap.policy.allows(scheme, host, port):
        log.info(
            "outbound request to %s://%s denied by allowed_outbound_hosts",
            scheme,
            req.authority or "self",
        )
        return Err("HTTP-request-denied")
    method = req.method if isinstance(req.method, str) else req.method[1]  # type: ignore[index]
    url = base + (req.path_with_query or "/")
    body = req.body.stream.getvalue() if req.body is not None else b""
    headers = [(k, v) for k, v in req.headers.entries]
    timeout = _timeout(opts if isinstance(opts, RequestOptions) else None)
    fut = _SENDER.submit(_send, method.upper(), url, headers, body, timeout)
    return Ok(t.push(FutureIncomingResponse(fut)))


def _timeout(opts: RequestOptions | None) -> httpx.Timeout:
    def secs(ns: int | None, default: float) -> float:
        return ns / 1e9 if ns is not None else default

    if opts is None:
        return httpx.Timeout(30.0)
    return httpx.Timeout(
        connect=secs(opts.connect_timeout, 30.0),
        read=secs(opts.between_bytes_timeout, 30.0),
        write=30.0,
        pool=30.0,
    )


def _send(
    method: str, url: str, headers: list[tuple[str, bytes]], body: bytes, timeout: httpx.Timeout
) -> object:
    try:
        request = _CLIENT.build_request(
            method, url, headers=headers, content=body or None, timeout=timeout
        )
        response = _CLIENT.send(request, stream=True)
    except httpx.ConnectTimeout:
        return "connection-timeout"
    except httpx.ConnectError as e:
        text = str(e).lower()
        if "name or service" in text or "nodename" in text or "resolve" in text:
            return ("DNS-error", {"rcode": str(e), "info-code": None})
        return "connection-refused"
    except httpx.TimeoutException:
        return "HTTP-response-timeout"
    except httpx.HTTPError as e:
        return ("internal-error", str(e))
    chunks = response.iter_raw(65536)

    def next_chunk() -> bytes | None:
        try:
            return next(chunks)
        except StopIteration:
            response.close()
            return None
        except httpx.HTTPError as e:
            response.close()
            raise StreamFailed(IoError(str(e), "HTTP-response-incomplete")) from e

    headers_out = [(k.decode("latin-1"), v) for k, v in response.headers.raw]
    return IncomingResponse(
        response.status_code, headers_out, IncomingBody(IterInputStream(next_chunk))
    )


INTERFACES = [types_iface, handler_iface]
