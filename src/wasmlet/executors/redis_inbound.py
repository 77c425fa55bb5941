"""The Redis message executor: components exporting `fermyon:spin/inbound-redis`
(`handle-message: func(message: payload) -> result<_, error>`, Spin 1.x-4.x and the SDKs'
Redis components), one fresh instance per message."""

from __future__ import annotations

import logging

from ..engine import Limits, WasmEngine
from ..runtime import PreparedComponent
from ..wasi import LIST_U8, Enum, Err, Result
from ._component import ComponentHandler

log = logging.getLogger("wasmlet.redis")

INBOUND_REDIS = "fermyon:spin/inbound-redis"
INBOUND_REDIS_3 = "spin:redis/inbound-redis"  # Spin 4's async export (component-model async)
RESULT = Result(None, Enum("success", "error"))


class RedisMessageExecutor:
    """Runs a component's `handle-message` for one message, in a fresh instance."""

    def __init__(
        self, engine: WasmEngine, prepared: PreparedComponent, export: str, limits: Limits
    ) -> None:
        self.component = ComponentHandler(engine, prepared, export, "handle-message", limits)
        self.component_id = prepared.id

    def handle(self, payload: bytes, channel: str) -> bool:
        return self.component.counted("redis", self._handle(payload, channel))

    def _handle(self, payload: bytes, channel: str) -> bool:
        """Whether the handler succeeded (a failure is logged, with the channel)."""
        outcome = self.component.call(lambda _table: [(LIST_U8, payload)], RESULT)
        if outcome.failure is not None:  # a trap or timeout, logged by the call
            log.error("component %s failed on a message from %s", self.component_id, channel)
            return False
        if isinstance(outcome.value, Err):
            log.error(
                "component %s handler failed on a message from %s: %s",
                self.component_id,
                channel,
                outcome.value.value,
            )
            return False
        return True
