"""wasi:http's `types` interface: its functions over the objects of `types` and `body`.

Every function finds the calling instance's resource table through `table()`; handles the
guest owns are popped from it when the guest passes them on (`Own`), borrowed ones only read.
"""

from __future__ import annotations

import concurrent.futures
from typing import Any, cast

from .._abi import BOOL, LIST_U8, STRING, U16, Borrow, Err, List, Ok, Option, Own, Result
from .._calls import HostTrap
from .._iface import Interface
from .._state import table
from ..io import (
    ERROR,
    INPUT_STREAM,
    OUTPUT_STREAM,
    POLLABLE,
    FuturePollable,
    IoError,
    Pollable,
    StreamFailed,
    new_pollable,
)
from .body import (
    FutureTrailers,
    IncomingBody,
    OutgoingBody,
    request_body_stream,
    start_response,
)
from .error import io_error_code, stream_error_code
from .types import (
    DURATION,
    ENTRIES,
    ERROR_CODE,
    FIELDS,
    FUTURE_INCOMING_RESPONSE,
    FUTURE_TRAILERS,
    HEADER_ERROR,
    INCOMING_BODY,
    INCOMING_REQUEST,
    INCOMING_RESPONSE,
    METHOD,
    OUTGOING_BODY,
    OUTGOING_REQUEST,
    OUTGOING_RESPONSE,
    REQUEST_OPTIONS,
    RESPONSE_OUTPARAM,
    SCHEME,
    UNIT,
    Fields,
    FutureIncomingResponse,
    IncomingRequest,
    IncomingResponse,
    OutgoingRequest,
    OutgoingResponse,
    RequestOptions,
    ResponseOutparam,
    method_value,
    types_iface,
)

_t = table  # the calling instance's resource table


def _take(rep: int, kind: type[Any], what: str) -> Any:
    """Pop an owned handle the guest passed in; trap if it is not a `kind`."""
    obj = _t().pop(rep)
    if not isinstance(obj, kind):
        raise HostTrap(f"unknown {what} handle")
    return obj


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
    stream = request_body_stream(req.body, req.body_rest)
    return Ok(_t().push(IncomingBody(stream, trailers=req.trailers)))


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
    body: IncomingBody = _take(rep, IncomingBody, "incoming-body")
    return _t().push(FutureTrailers(body.stream, body.trailers))


@types_iface.func("[method]future-trailers.subscribe", (Borrow(FUTURE_TRAILERS),), Own(POLLABLE))
def _trailers_subscribe(rep: int) -> int:
    _t().get(rep, FutureTrailers)
    return new_pollable(Pollable())  # ready at once: `get` reads the rest of the body


TRAILERS_GET = Option(Result(Result(Option(Own(FIELDS)), ERROR_CODE), None))


@types_iface.func("[method]future-trailers.get", (Borrow(FUTURE_TRAILERS),), TRAILERS_GET)
def _trailers_get(rep: int) -> object:
    ft = _t().get(rep, FutureTrailers)
    if ft.taken:
        return Err()
    ft.taken = True
    try:
        fields = ft.resolve()
    except StreamFailed as e:  # the client went away, or the body was too large
        return Ok(Err(stream_error_code(e.error)))
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
    body: OutgoingBody = _take(rep, OutgoingBody, "outgoing-body")
    entries = None
    if trailers is not None:
        entries = list(_t().get(trailers, Fields).entries)
        _t().pop(trailers)
    body.finish(entries)
    return Ok()


# -- outgoing response -----------------------------------------------------------------------


def _oresp(rep: int) -> OutgoingResponse:
    return _t().get(rep, OutgoingResponse)


@types_iface.func("[constructor]outgoing-response", (Own(FIELDS),), Own(OUTGOING_RESPONSE))
def _oresp_new(headers: int) -> int:
    f: Fields = _take(headers, Fields, "fields")
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
    resp.body = OutgoingBody()
    return Ok(_t().push(resp.body))


@types_iface.func(
    "[static]response-outparam.set",
    (Own(RESPONSE_OUTPARAM), Result(Own(OUTGOING_RESPONSE), ERROR_CODE)),
)
def _outparam_set(rep: int, response: Ok[int] | Err[object]) -> None:
    param: ResponseOutparam = _take(rep, ResponseOutparam, "response-outparam")
    param.was_set = True
    if isinstance(response, Err):
        param.error = response.value
        return
    resp: OutgoingResponse = _take(response.value, OutgoingResponse, "outgoing-response")
    param.response = resp
    if param.stream is not None:  # streaming: the response starts now
        start_response(param.stream, resp.status, resp.headers.entries, resp.body)


@types_iface.func("http-error-code", (Borrow(ERROR),), Option(ERROR_CODE))
def _http_error_code(rep: int) -> object:
    return io_error_code(_t().get(rep, IoError))


# -- outgoing request ------------------------------------------------------------------------


def _oreq(rep: int) -> OutgoingRequest:
    return _t().get(rep, OutgoingRequest)


@types_iface.func("[constructor]outgoing-request", (Own(FIELDS),), Own(OUTGOING_REQUEST))
def _oreq_new(headers: int) -> int:
    f: Fields = _take(headers, Fields, "fields")
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


def _request_accessors(attr: str, ty: Any) -> None:
    """`outgoing-request.<attr>` and `.set-<attr>` (plain fields, every value accepted)."""
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


_request_accessors("method", METHOD)
_request_accessors("path_with_query", Option(STRING))
_request_accessors("scheme", Option(SCHEME))
_request_accessors("authority", Option(STRING))


@types_iface.func("[method]outgoing-request.headers", (Borrow(OUTGOING_REQUEST),), Own(FIELDS))
def _oreq_headers(rep: int) -> int:
    return _t().push(_oreq(rep).headers)


@types_iface.func("[constructor]request-options", (), Own(REQUEST_OPTIONS))
def _options_new() -> int:
    return _t().push(RequestOptions())


def _option_accessors(attr: str) -> None:
    """`request-options.<attr>` and `.set-<attr>` (a duration in nanoseconds, or none)."""
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
    future = _t().get(rep, FutureIncomingResponse).future
    # A pollable only waits for the future; what it resolves to does not matter to it.
    return new_pollable(FuturePollable(cast("concurrent.futures.Future[object]", future)))


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


TYPES: Interface = types_iface  # with every function above defined
