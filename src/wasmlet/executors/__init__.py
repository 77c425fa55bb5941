"""Executors: what runs a request in a fresh instance of a component, by its ABI.

`http_executor` is the one place an HTTP trigger's executor is chosen: Wagi when the
trigger says `executor = { type = "wagi" }`, otherwise by the HTTP handler the component
exports (`wasi:http/incoming-handler@0.2.x` or Spin's `fermyon:spin/inbound-http`).
"""

from __future__ import annotations

from typing import Any

from ..errors import EngineError, ManifestError, NotSupportedError
from ..runtime import AppRuntime
from ._wasi_command import WasiCommand
from .spin_inbound import INBOUND_HTTP, SpinInboundHttpExecutor
from .types import (
    CollectedResponse,
    HttpExecutor,
    HttpRequest,
    HttpResponse,
    ResponseSink,
    RouteMatch,
)
from .wagi import DEFAULT_ARGV, WagiExecutor
from .wasi_http import WasiHttpExecutor

WASI_HANDLER = "wasi:http/incoming-handler"
WASI_03_HANDLER = "wasi:http/handler"


def handler_exports(export_names: list[str]) -> list[str]:
    """The HTTP handler interfaces a component exports (by Spin's detection rules)."""
    found = []
    for name in export_names:
        base, _, version = name.partition("@")
        wasi_02 = base == WASI_HANDLER and version.startswith("0.2.")
        wasi_03 = base == WASI_03_HANDLER and version.startswith("0.3")
        if wasi_02 or wasi_03 or base == INBOUND_HTTP:
            found.append(name)
    return found


def http_executor(
    runtime: AppRuntime, trigger_id: str, component_id: str, executor: dict[str, Any]
) -> HttpExecutor:
    """The executor for one `[[trigger.http]]` (its `executor` table as in the manifest)."""
    kind = executor.get("type", "http")
    prepared = runtime.prepare(component_id)
    if kind == "wagi":
        module = prepared.require_module()
        name = f"component {component_id!r}"
        command = WasiCommand(runtime.engine, module, name, prepared.files_root, runtime.limits)
        argv = executor.get("argv") or DEFAULT_ARGV
        return WagiExecutor(command, component_id, prepared.locked.env, argv)
    if kind not in ("http", "spin"):
        raise ManifestError(
            "spin.toml", f"trigger {trigger_id}.executor.type", f"unknown executor {kind!r}"
        )
    if prepared.component is None:
        raise NotSupportedError(
            f"trigger {trigger_id!r}: component {component_id!r} is a core module; "
            'core modules run with executor = { type = "wagi" }'
        )
    handlers = handler_exports(runtime.exports(prepared))
    if not handlers:
        raise EngineError(
            f"component {component_id!r} exports no HTTP handler (expected "
            "wasi:http/incoming-handler@0.2.x or fermyon:spin/inbound-http)"
        )
    if len(handlers) > 1:
        raise EngineError(
            f"component {component_id!r} exports more than one HTTP handler: " + ", ".join(handlers)
        )
    export = handlers[0]
    if export.startswith(WASI_HANDLER + "@"):
        return WasiHttpExecutor(runtime.engine, prepared, export, runtime.limits)
    if export == INBOUND_HTTP:
        return SpinInboundHttpExecutor(runtime.engine, prepared, export, runtime.limits)
    raise NotSupportedError(
        f"component {component_id!r}: the {export} handler is not supported yet"
    )


__all__ = [
    "CollectedResponse",
    "HttpExecutor",
    "HttpRequest",
    "HttpResponse",
    "ResponseSink",
    "RouteMatch",
    "handler_exports",
    "http_executor",
]
