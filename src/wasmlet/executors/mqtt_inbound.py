"""The MQTT message executor: components built for the MQTT trigger plugin
(spin-trigger-mqtt up to v0.7.2, the version containerd-shim-spin runs): a world-level export
`handle-message: func(message: payload, metadata: metadata) -> result<_, error>` with
`record metadata { topic: string }` and `variant error { other(string) }`; one fresh instance
per message."""

from __future__ import annotations

import logging

from ..engine import Limits, WasmEngine
from ..runtime import PreparedComponent
from ..wasi import LIST_U8, STRING, Err, Record, Result, Variant
from ._component import ComponentHandler

log = logging.getLogger("wasmlet.mqtt")

HANDLE_MESSAGE = "handle-message"
METADATA = Record(("topic", STRING))
RESULT = Result(None, Variant(("other", STRING)))


class MqttMessageExecutor:
    """Runs a component's `handle-message` for one message, in a fresh instance."""

    def __init__(self, engine: WasmEngine, prepared: PreparedComponent, limits: Limits) -> None:
        self.component = ComponentHandler(engine, prepared, "", HANDLE_MESSAGE, limits)
        self.component_id = prepared.id

    def handle(self, payload: bytes, topic: str) -> bool:
        return self.component.counted("mqtt", self._handle(payload, topic))

    def _handle(self, payload: bytes, topic: str) -> bool:
        """Whether the handler succeeded (a failure is logged, with the topic)."""
        outcome = self.component.call(
            lambda _table: [(LIST_U8, payload), (METADATA, {"topic": topic})], RESULT
        )
        if outcome.failure is not None:  # a trap or timeout, logged by the call
            log.error("component %s failed on a message from %s", self.component_id, topic)
            return False
        if isinstance(outcome.value, Err):
            log.error(
                "component %s handler failed on a message from %s: %s",
                self.component_id,
                topic,
                outcome.value.value,
            )
            return False
        return True
