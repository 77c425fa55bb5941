"""Triggers: what starts a component. `http` serves requests (an ASGI app); the others (Redis,
MQTT, cron) are `MessageTrigger`s that run beside it on the server's event loop
(`with_triggers`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Protocol

from ..gate import RunGate, running

log = logging.getLogger("wasmlet.trigger")

Scope = dict[str, Any]
SUPPORTED = ("http", "redis", "mqtt", "cron")  # trigger types wasmlet runs


class MessageTrigger(Protocol):
    """A trigger fed by something other than HTTP requests (a Redis channel, ...)."""

    @property
    def ready(self) -> bool:
        """Subscribed to everything it listens to."""

    def describe(self) -> list[str]:
        """Lines for the startup banner."""

    async def run(self) -> None:
        """Listen and handle until cancelled."""


class TriggerTasks:
    """The message triggers' tasks, started and stopped with the server."""

    def __init__(self, triggers: list[MessageTrigger]) -> None:
        self.triggers = triggers
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.ensure_future(t.run()) for t in self.triggers]
        for task in self._tasks:
            task.add_done_callback(_report)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []


def handle_message(
    gate: RunGate | None, handle: Callable[[bytes, str], bool], payload: bytes, source: str
) -> bool:
    """Run one message's handler on a guest thread, under the run gate as an HTTP request;
    whatever goes wrong is logged, never raised (one message must not stop a trigger)."""
    return run_guarded(gate, lambda: handle(payload, source), f"a message from {source}")


def run_guarded(gate: RunGate | None, call: Callable[[], bool], what: str) -> bool:
    """`call` (one event's handler) on a guest thread, under the run gate; whatever goes
    wrong is logged as "error handling <what>", never raised."""
    try:
        with running(gate):
            return call()
    except Exception:
        log.exception("error handling %s", what)
        return False


def _report(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("a trigger stopped", exc_info=task.exception())


def with_triggers(app: Any, triggers: list[MessageTrigger]) -> Any:
    """`app` (ASGI), with `triggers` running from its lifespan's startup to its shutdown."""
    if not triggers:
        return app
    tasks = TriggerTasks(triggers)

    async def asgi(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return

        async def receive_and_follow() -> Any:
            message = await receive()
            if message["type"] == "lifespan.startup":
                tasks.start()
            elif message["type"] == "lifespan.shutdown":
                await tasks.stop()
            return message

        await app(scope, receive_and_follow, send)

    return asgi


__all__ = [
    "SUPPORTED",
    "MessageTrigger",
    "TriggerTasks",
    "handle_message",
    "run_guarded",
    "with_triggers",
]
