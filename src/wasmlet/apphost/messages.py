"""Apps with message triggers (Redis, MQTT) in a multi-app host.

An HTTP app is built by its first request and costs little while idle; an app that consumes
messages cannot wait for a request, since nothing reaches it until it is subscribed. So such
an app is built and its triggers started as soon as its version is installed, and kept
subscribed for as long as that version is current: it is never idle in the host's sense.
When it is removed or replaced, its triggers stop first (unsubscribing), the messages being
handled finish on that version, and only then is it closed. Its HTTP routes, if any, are
served as any app's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, ParamSpec, TypeVar

from ..running import RunningApp, message_trigger_types
from ..trigger import TriggerTasks
from .apps import AppVersion, BuildFailed

log = logging.getLogger("wasmlet.host")

P = ParamSpec("P")
T = TypeVar("T")
IDLE_POLL = 0.02  # seconds between looks at the guests still running, when stopping


class Counted(Executor):
    """An app's share of the host's guest pool that knows how much of its work is still in
    progress: the host's pool outlives the app, so closing the app cannot wait for the pool
    as `wasmlet up` does, and a message's handler, unlike a request, is counted nowhere
    else."""

    def __init__(self, pool: Executor) -> None:
        self.pool = pool
        self.busy = 0
        self._lock = threading.Lock()

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        with self._lock:
            self.busy += 1
        try:
            future = self.pool.submit(fn, *args, **kwargs)
        except BaseException:
            self._done(None)
            raise
        future.add_done_callback(self._done)
        return future

    def _done(self, _: Any) -> None:
        with self._lock:
            self.busy -= 1

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        pass  # the host's pool is the host's to shut down

    async def idle(self) -> None:
        """Until nothing submitted here runs any more (each guest ends by its deadline)."""
        while self.busy:
            await asyncio.sleep(IDLE_POLL)


class Subscriber:
    """One version's message triggers in a host: `start` (build it, run its triggers),
    `stop` (unsubscribe, let the messages being handled finish). Lives on the host's loop."""

    def __init__(self, version: AppVersion, pool: Executor) -> None:
        self.version = version
        self.pool = Counted(pool)  # what the version is built to run its guests on
        self.types = message_trigger_types(version.app)
        self.tasks: TriggerTasks | None = None
        self.running: RunningApp | None = None
        self.stopped = False
        self._starting: asyncio.Task[None] | None = None

    def start(self, build: Callable[[AppVersion], RunningApp], builds: Executor) -> None:
        """Build the version (on `builds`) and start its triggers, in the background."""
        if self._starting is None and not self.stopped:
            self._starting = asyncio.ensure_future(self._start(build, builds))

    async def _start(self, build: Callable[[AppVersion], RunningApp], builds: Executor) -> None:
        try:
            running = await self.version.ready(build, builds)
        except BuildFailed:  # logged by the build; its status says why
            return
        if self.stopped:
            return
        self.running = running
        self.tasks = TriggerTasks(running.triggers)
        self.tasks.start()
        for trigger in running.triggers:
            for line in trigger.describe():
                log.info("app %s: %s", self.version.name, line.strip())

    @property
    def state(self) -> str:
        """For the host's status: `subscribed`, `subscribing`, `failed` (not built), `stopped`."""
        if self.stopped:
            return "stopped"
        if self.version.error is not None:
            return "failed"
        if self.running is not None and self.running.subscribed:
            return "subscribed"
        return "subscribing"

    def describe(self) -> dict[str, Any]:
        return {"triggers": self.types, "messages": self.state}

    async def stop(self) -> None:
        """Unsubscribe, then wait for the messages (and requests) being handled."""
        self.stopped = True
        if self._starting is not None:  # a build in progress finishes (and is closed with
            with contextlib.suppress(asyncio.CancelledError):  # the version), unsubscribed
                await self._starting
        if self.tasks is not None:
            await self.tasks.stop()
            self.tasks = None
        await self.pool.idle()
        log.info("app %s (version %d): message triggers stopped", self.version.name,
                 self.version.number)  # fmt: skip
