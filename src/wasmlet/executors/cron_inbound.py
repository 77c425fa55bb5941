"""The cron executor: components built for Spin's cron trigger plugin (fermyon/spin-trigger-cron,
the synchronous generation): a world-level export `handle-cron-event: func(metadata:
metadata) -> result<_, error>` with `record metadata { timestamp: u64 }` (Unix seconds) and
`variant error { other(string) }`; one fresh instance per tick."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from ..engine import Limits, WasmEngine
from ..runtime import PreparedComponent
from ..wasi import STRING, U64, Err, Record, Result, Variant
from ._component import ComponentHandler

log = logging.getLogger("wasmlet.cron")

HANDLE_CRON_EVENT = "handle-cron-event"
METADATA = Record(("timestamp", U64))
RESULT = Result(None, Variant(("other", STRING)))


class CronEventExecutor:
    """Runs a component's `handle-cron-event` for one tick, in a fresh instance."""

    def __init__(self, engine: WasmEngine, prepared: PreparedComponent, limits: Limits) -> None:
        self.component = ComponentHandler(engine, prepared, "", HANDLE_CRON_EVENT, limits)
        self.component_id = prepared.id

    def handle(self, timestamp: int) -> bool:
        """Whether the handler succeeded (a failure is logged, with the tick's time)."""
        return self.component.counted("cron", self._handle(timestamp))

    def _handle(self, timestamp: int) -> bool:
        outcome = self.component.call(lambda _table: [(METADATA, {"timestamp": timestamp})], RESULT)
        if outcome.failure is not None:  # a trap or timeout, logged by the call
            log.error("component %s failed on the tick of %s", self.component_id, _utc(timestamp))
            return False
        if isinstance(outcome.value, Err):
            log.error(
                "component %s handler failed on the tick of %s: %s",
                self.component_id,
                _utc(timestamp),
                _error_text(outcome.value.value),
            )
            return False
        return True


def _error_text(error: object) -> str:
    """`variant error { other(string) }` as lifted (`("other", text)`), for the log."""
    if isinstance(error, tuple) and len(error) == 2:
        return f"{error[0]}: {error[1]}"
    return str(error)


def _utc(timestamp: int) -> str:
    return f"{datetime.fromtimestamp(timestamp, UTC):%Y-%m-%dT%H:%M:%SZ} ({timestamp})"
