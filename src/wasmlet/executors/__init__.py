"""Executors: what runs a request in a fresh instance of a component, by its ABI.

`http_executor` is the one place an HTTP trigger's executor is chosen: Wagi when the
trigger says `executor = { type = "wagi" }`, otherwise by the HTTP handler the component
exports (`wasi:http/incoming-handler@0.2.x` or Spin's `fermyon:spin/inbound-http`).
`redis_executor`, `mqtt_executor` and `cron_executor` are the same for a Redis trigger
(`fermyon:spin/inbound-redis`), an MQTT trigger (the plugin's world-level `handle-message`) and
a cron trigger (the plugin's world-level `handle-cron-event`).
"""

from __future__ import annotations

from typing import Any

from ..errors import EngineError, ManifestError, NotSupportedError
from ..observe import metrics
from ..runtime import AppRuntime
from ._wasi_command import WasiCommand
from .cron_inbound import HANDLE_CRON_EVENT, CronEventExecutor
from .mqtt_inbound import HANDLE_MESSAGE, MqttMessageExecutor
from .redis_inbound import INBOUND_REDIS, INBOUND_REDIS_3, RedisMessageExecutor
from .spin_inbound import INBOUND_HTTP, SpinInboundHttpExecutor
from .types import (
    CollectedResponse,
    HttpExecutor,
    HttpRequest,
    HttpResponse,
    InlineExecutor,
    ResponseSink,
    RouteMatch,
)
from .wagi import DEFAULT_ARGV, WagiExecutor
from .wasi_http import WasiHttpExecutor

WASI_HANDLER = "wasi:http/incoming-handler"
ASYNC_CAUSE = "component model async"  # wasmtime's reason for refusing an `async func`
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
        watch = metrics.component(runtime.app.name, component_id)
        command = WasiCommand(
            runtime.engine, module, name, prepared.files_root, runtime.limits, watch
        )
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


def redis_executor(runtime: AppRuntime, trigger_id: str, component_id: str) -> RedisMessageExecutor:
    """The executor for one `[[trigger.redis]]`'s component, by the Redis interface it
    exports (exactly one, as Spin requires)."""
    prepared = runtime.prepare(component_id)
    if prepared.component is None:
        raise NotSupportedError(
            f"trigger {trigger_id!r}: component {component_id!r} is a core module; a Redis "
            f"trigger needs a component exporting {INBOUND_REDIS}"
        )
    exports = runtime.exports(prepared)
    found = [e for e in exports if e == INBOUND_REDIS or e.startswith(INBOUND_REDIS_3 + "@")]
    if not found:
        raise EngineError(
            f"trigger {trigger_id!r}: component {component_id!r} does not export a Redis "
            f"interface (expected {INBOUND_REDIS}; it exports: {', '.join(exports) or 'nothing'})"
        )
    if len(found) > 1:
        raise EngineError(
            f"component {component_id!r} exports more than one Redis interface: " + ", ".join(found)
        )
    if found[0] != INBOUND_REDIS:
        raise NotSupportedError(
            f"component {component_id!r}: {found[0]} (an async export, Spin 4) is not "
            f"supported: wasmtime's C API has no component-model async; export {INBOUND_REDIS}"
        )
    return RedisMessageExecutor(runtime.engine, prepared, INBOUND_REDIS, runtime.limits)


def mqtt_executor(runtime: AppRuntime, trigger_id: str, component_id: str) -> MqttMessageExecutor:
    """The executor for one `[[trigger.mqtt]]`'s component: it must export the MQTT trigger
    plugin's `handle-message` function (world-level, as spin-trigger-mqtt v0.7 defines it)."""
    prepared = runtime.prepare(component_id)
    if prepared.component is None:
        raise NotSupportedError(
            f"trigger {trigger_id!r}: component {component_id!r} is a core module; an MQTT "
            f"trigger needs a component exporting `{HANDLE_MESSAGE}`"
        )
    exports = runtime.exports(prepared)
    if HANDLE_MESSAGE not in exports:
        raise EngineError(
            f"trigger {trigger_id!r}: component {component_id!r} does not export the MQTT "
            f"trigger's `{HANDLE_MESSAGE}` function (it exports: "
            f"{', '.join(exports) or 'nothing'})"
        )
    return MqttMessageExecutor(runtime.engine, prepared, runtime.limits)


def cron_executor(runtime: AppRuntime, trigger_id: str, component_id: str) -> CronEventExecutor:
    """The executor for one `[[trigger.cron]]`'s component: it must export the cron plugin's
    synchronous world-level `handle-cron-event` (fermyon/spin-trigger-cron). The plugin's later
    generations export it as an `async func` (`fermyon:spin-cron@2.0.0` in
    spin-trigger-plugins, `spin:cron@3.0.0`), which wasmtime's C API cannot call: compiling
    such a component fails, and is refused as not supported."""
    try:
        prepared = runtime.prepare(component_id)
    except EngineError as e:
        if any(ASYNC_CAUSE in note for note in getattr(e, "__notes__", ())):
            raise NotSupportedError(
                f"trigger {trigger_id!r}: component {component_id!r} exports an `async func` "
                "(the cron plugin's later WIT: fermyon:spin-cron@2.0.0 of spin-trigger-plugins "
                "or spin:cron@3.0.0), which is not supported: wasmtime's C API has no "
                "component-model async; build it against the synchronous WIT "
                f"(`export {HANDLE_CRON_EVENT}: func(metadata: metadata) -> result<_, error>`)"
            ) from None
        raise
    if prepared.component is None:
        raise NotSupportedError(
            f"trigger {trigger_id!r}: component {component_id!r} is a core module; a cron "
            f"trigger needs a component exporting `{HANDLE_CRON_EVENT}`"
        )
    exports = runtime.exports(prepared)
    if HANDLE_CRON_EVENT not in exports:
        raise EngineError(
            f"trigger {trigger_id!r}: component {component_id!r} does not export the cron "
            f"trigger's `{HANDLE_CRON_EVENT}` function (it exports: "
            f"{', '.join(exports) or 'nothing'})"
        )
    return CronEventExecutor(runtime.engine, prepared, runtime.limits)


__all__ = [
    "CollectedResponse",
    "CronEventExecutor",
    "HttpExecutor",
    "HttpRequest",
    "HttpResponse",
    "InlineExecutor",
    "MqttMessageExecutor",
    "RedisMessageExecutor",
    "ResponseSink",
    "RouteMatch",
    "cron_executor",
    "handler_exports",
    "http_executor",
    "mqtt_executor",
    "redis_executor",
]
