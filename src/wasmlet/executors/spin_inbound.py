"""The Spin inbound-http executor: components exporting `fermyon:spin/inbound-http`
(`handle-request: func(req: request) -> response`, from Spin 1.x SDKs)."""

from __future__ import annotations

import logging

from ..engine import Limits, WasmEngine
from ..runtime import PreparedComponent
from ..wasi import LIST_U8, STRING, U16, Enum, List, Option, Record, Tuple
from ._component import ComponentHandler
from .headers import forwarded_headers, spin_headers
from .types import HttpRequest, HttpResponse, ResponseSink, RouteMatch

log = logging.getLogger("wasmlet.spin_inbound")

INBOUND_HTTP = "fermyon:spin/inbound-http"
METHODS = ("get", "post", "put", "delete", "patch", "head", "options")
PAIRS = List(Tuple(STRING, STRING))
REQUEST = Record(
    ("method", Enum(*METHODS)),
    ("uri", STRING),
    ("headers", PAIRS),
    ("params", PAIRS),
    ("body", Option(LIST_U8)),
)
RESPONSE = Record(("status", U16), ("headers", Option(PAIRS)), ("body", Option(LIST_U8)))


class SpinInboundHttpExecutor:
    """Serves requests with a component's `handle-request`, one instance per request."""

    streaming = False  # the request and the response are single values

    def __init__(
        self, engine: WasmEngine, prepared: PreparedComponent, export: str, limits: Limits
    ) -> None:
        self.component = ComponentHandler(engine, prepared, export, "handle-request", limits)
        self.component_id = prepared.id

    def handle(self, request: HttpRequest, match: RouteMatch, sink: ResponseSink) -> None:
        sink.respond(self._respond(request, match))

    def _respond(self, request: HttpRequest, match: RouteMatch) -> HttpResponse:
        method = request.method.lower()
        if method not in METHODS:
            return HttpResponse(405)
        req = {
            "method": method,
            "uri": request.path_and_query,
            "headers": forwarded_headers(request) + spin_headers(request, match),
            "params": [],
            "body": request.body,
        }
        outcome = self.component.call(lambda _table: [(REQUEST, req)], RESPONSE)
        if outcome.failure is not None:
            return HttpResponse(500)
        resp = outcome.value
        status = resp["status"]
        if not 100 <= status <= 600:
            log.error("component %s returned invalid status %d", self.component_id, status)
            return HttpResponse(500)
        out: dict[str, tuple[str, str]] = {}
        for k, v in resp["headers"] or []:
            out[k.lower()] = (k, v)  # a repeated name: the last one wins
        return HttpResponse(status, list(out.values()), resp["body"] or b"")
