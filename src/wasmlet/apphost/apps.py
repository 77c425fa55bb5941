"""One version of a hosted app: loaded (its locked app and how to run it) until the first
request builds it, then serving; retired when its source changes or goes, and closed once its
last request is done, so a changed app finishes old requests on the old version."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from ..locked import LockedApp
from ..running import AppOptions, RunningApp

log = logging.getLogger("wasmlet.host")


class BuildFailed(Exception):
    """The app could not be built (its error is logged and shown in the host's status)."""


@dataclass(eq=False)
class AppVersion:
    name: str  # how requests find it
    app: LockedApp
    options: AppOptions  # how it runs (its state, variables, runtime config, limits)
    source: str  # where it came from, for the status
    number: int = 1  # 1, 2, … per name: how many times it was (re)loaded
    self_host: str | None = None  # the Host its relative requests carry
    running: RunningApp | None = None
    error: str | None = None  # why it could not be built
    in_flight: int = 0
    requests: int = 0
    retired: bool = False
    busy: float = 0.0  # seconds of requests in flight, summed over time (load, for scaling)
    _since: float = 0.0  # when `busy` was last brought up to date
    _building: asyncio.Future[RunningApp] | None = None

    @property
    def status(self) -> str:
        if self.error is not None:
            return "failed"
        return "ready" if self.running is not None else "loaded"

    async def ready(self, build: Callable[[AppVersion], RunningApp], pool: Executor) -> RunningApp:
        """The running app, built by the first request that needs it (the others wait)."""
        if self.running is not None:
            return self.running
        if self.error is not None:
            raise BuildFailed(self.error)
        if self._building is None:
            loop = asyncio.get_running_loop()
            self._building = loop.run_in_executor(pool, build, self)
        try:
            running = await asyncio.shield(self._building)
        except Exception as e:
            self.error = self.error or str(e) or type(e).__name__
            raise BuildFailed(self.error) from None
        self.running = running  # (if retired meanwhile, its last request's done() closes it)
        return running

    def begin(self) -> None:
        """A request of this version starts."""
        self._account()
        self.in_flight += 1
        self.requests += 1

    def busy_seconds(self) -> float:
        """`busy` up to now: its growth over an interval is the average concurrency."""
        self._account()
        return self.busy

    def _account(self) -> None:
        now = time.monotonic()
        if self._since:
            self.busy += self.in_flight * (now - self._since)
        self._since = now

    def retire(self) -> None:
        """A newer version (or none) serves new requests; close once this one is idle."""
        self.retired = True
        if self.in_flight == 0:
            self.close()

    def done(self) -> None:
        """A request of this version has finished."""
        self._account()
        self.in_flight -= 1
        if self.retired and self.in_flight == 0:
            self.close()

    def close(self) -> None:
        running, self.running = self.running, None
        if running is not None:
            try:
                running.close()  # its factors' state; the host's engine and pool stay
            except Exception:
                log.exception("closing app %s (version %d)", self.name, self.number)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "status": self.status,
            "version": self.number,
            "source": self.source,
            "requests": self.requests,
            "in_flight": self.in_flight,
        }
        if self.error is not None:
            out["error"] = self.error
        return out
