"""The Spin inbound-http executor: components exporting `fermyon:spin/inbound-http`
(`handle-request: func(req: request) -> response`, from Spin 1.x SDKs)."""

from __future__ import annotations

import logging

import wasmtime

from ..trigger.http.headers import forwarded_headers, spin_headers
from ..trigger.http.router import RouteMatch
from ..trigger.http.types import HttpRequest, HttpResponse
from ..wasi._abi import (
    LIST_U8,
    STRING,
    U16,
    Enum,
    GuestError,
    HostTrap,
    List,
    Option,
    Record,
    Tuple,
    call_func,
)
from ..wasi._state import active
from .wasi_http import ComponentExecutor

log = logging.getLogger("wasmlet.spin_inbound")

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


class SpinInboundHttpExecutor(ComponentExecutor):
    entry = "handle-request"

    def handle(self, request: HttpRequest, match: RouteMatch) -> HttpResponse:
        method = request.method.lower()
        if method not in METHODS:
            return HttpResponse(405)
        headers = forwarded_headers(request) + spin_headers(request, match)
        req = {
            "method": method,
            "uri": request.path_and_query,
            "headers": headers,
            "params": [],
            "body": request.body,
        }
        store, clock_base = self._store()
        with active(self._state(clock_base)):
            try:
                instance = self.linker.instantiate(store, self.component)
                func = instance.get_func(store, self.handle_index)
                assert func is not None
                resp = call_func(store._context(), func._func, [(REQUEST, req)], RESPONSE)
            except (GuestError, wasmtime.WasmtimeError, HostTrap) as e:
                self._log_failure(e)
                return HttpResponse(500)
        status = resp["status"]
        if not 100 <= status <= 600:
            log.error("component %s returned invalid status %d", self.component_id, status)
            return HttpResponse(500)
        out: dict[str, tuple[str, str]] = {}
        for k, v in resp["headers"] or []:
            out[k.lower()] = (k, v)  # a repeated name: the last one wins
        return HttpResponse(status, list(out.values()), resp["body"] or b"")
