"""wasi:http 0.2 (`types`, `outgoing-handler`) implemented in Python.

The incoming side is driven by the executor: it creates an `IncomingRequest` and a
`ResponseOutparam`, calls the guest's `handle`, then reads what the guest set (or, with a
`ResponseOutparam.stream`, gets the response as the guest produces it). The outgoing side
checks the component's outbound policy, then sends the request through the transport its
`OutboundHttp` capability carries (by default an `HttpxSender`, one per app).

The modules, one concern each (after wasmtime's `crates/wasi-http/src/p2/`):
- `types`: the WIT declarations (resources, `method`, `error-code`, …), the objects behind
  the guest's handles, and the transport hook `SendRequest` with the `OutboundRequest` it
  takes;
- `body`: incoming and outgoing bodies, future trailers, the streaming hand-over of a
  response to the trigger;
- `types_impl`: the `types` interface's functions over those objects;
- `outgoing`: the `outgoing-handler` interface and the `OutboundHttp` capability;
- `error`: transport failures (by exception type) and stream errors onto `error-code`;
- `sender`: the default transport, httpx on a thread pool.
"""

from __future__ import annotations

from .._iface import Interface
from .body import IncomingBody, OutgoingBody, ResponseStream, decode_fields
from .error import error_code
from .outgoing import OUTBOUND_HTTP, OUTGOING, OutboundHttp
from .sender import HttpxSender
from .types import (
    ERROR_CODE,
    INCOMING_REQUEST,
    RESPONSE_OUTPARAM,
    ErrorCode,
    IncomingRequest,
    IncomingResponse,
    OutboundRequest,
    ResponseOutparam,
    SendOutcome,
    SendRequest,
)
from .types_impl import TYPES

INTERFACES: list[Interface] = [TYPES]  # always defined (the incoming side needs them)
OUTGOING_INTERFACES: list[Interface] = [OUTGOING]  # with the outbound-http factor

__all__ = [
    "ERROR_CODE",
    "INCOMING_REQUEST",
    "INTERFACES",
    "OUTBOUND_HTTP",
    "OUTGOING_INTERFACES",
    "RESPONSE_OUTPARAM",
    "ErrorCode",
    "HttpxSender",
    "IncomingBody",
    "IncomingRequest",
    "IncomingResponse",
    "OutboundHttp",
    "OutboundRequest",
    "OutgoingBody",
    "ResponseOutparam",
    "ResponseStream",
    "SendOutcome",
    "SendRequest",
    "decode_fields",
    "error_code",
]
