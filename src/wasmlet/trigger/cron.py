"""The cron trigger, in the format of Spin's cron trigger plugin (fermyon/spin-trigger-cron, the
synchronous generation):

```toml
[[trigger.cron]]
component = "tick"
cron_expression = "1/2 * * * * *"    # sec min hour day-of-month month day-of-week [year], UTC
```

No application-level settings; `component` and `cron_expression` are the only keys (the
plugin denies unknown ones). The expression's syntax and meaning are the plugin's (see
cron_schedule.py: seconds first, days of the week 1-7 from Sunday, UTC).

Each tick runs the component in a fresh instance, on the app's guest pool under its run gate,
with `metadata.timestamp` = the tick's time in Unix seconds. As in the plugin
(tokio-cron-scheduler 0.9.4):

- a tick starts its handler even while the previous tick's still runs (handlers overlap; each
  is bounded by the request timeout);
- a failing handler (its `error`, a trap, a timeout) is logged with the tick's time and the
  schedule goes on;
- ticks missed because the process was stopped are not run when it starts again (nothing is
  persisted); ticks missed while it could not run them (the machine suspended, the wall clock
  jumped forward, a stalled process) run once, as the latest of them, and the schedule goes on
  from the present; if the wall clock goes back, the ticks it goes back over are not run a
  second time: the next tick is the one after the last that ran.

The plugin polls its schedule every 500 ms and passes the time of the poll that noticed a
tick; wasmlet sleeps until the tick (waking at least once a second, to notice a clock jump or
a resume from suspend: asyncio's clock is monotonic and stops during a suspend) and passes the
tick's own second, which is what the plugin passes when it is on time.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ..errors import ManifestError
from ..executors import CronEventExecutor, cron_executor
from ..gate import RunGate
from ..locked import LockedApp
from ..observe import spans
from ..runtime import AppRuntime
from . import run_guarded
from .cron_schedule import CronError, Schedule, parse

log = logging.getLogger("wasmlet.cron")

KEYS = ("component", "cron_expression")
POLL = 1.0  # seconds between looks at the wall clock while waiting for a tick
MISSED_COUNT_LIMIT = 10_000  # missed ticks counted for the log, at most


@dataclass
class Job:
    """One `[[trigger.cron]]`: its schedule and the component it runs."""

    index: int
    component: str
    schedule: Schedule
    executor: CronEventExecutor | None = None
    next_at: int | None = None  # the next tick, Unix seconds
    running: set[asyncio.Future[bool]] = field(default_factory=set)


def plan(app: LockedApp, now: float | None = None) -> list[Job]:
    """The app's cron triggers with their expressions parsed. Raises ManifestError naming the
    key of a missing, unknown or invalid setting."""
    now = time.time() if now is None else now
    jobs = []
    for i, trigger in enumerate(app.triggers_of("cron")):
        config = trigger.trigger_config
        where = f"trigger.cron[{i}]"
        for key in config:
            if key not in KEYS:
                raise ManifestError(
                    "spin.toml",
                    f"{where}.{key}",
                    "unknown setting (a cron trigger has component and cron_expression)",
                )
        component = config.get("component")
        if not isinstance(component, str):
            raise ManifestError("spin.toml", f"{where}.component", "missing")
        expression = config.get("cron_expression")
        if not isinstance(expression, str) or not expression.strip():
            raise ManifestError(
                "spin.toml",
                f"{where}.cron_expression",
                'missing: the schedule, e.g. "0 */5 * * * *" (sec min hour day-of-month '
                "month day-of-week [year])",
            )
        try:
            schedule = parse(expression, now)
        except CronError as e:
            raise ManifestError(
                "spin.toml", f"{where}.cron_expression", f"{expression!r} {e}"
            ) from None
        jobs.append(Job(i, component, schedule))
    return jobs


def catch_up(schedule: Schedule, next_at: int, now: float) -> tuple[int, int | None, int]:
    """For a wake-up at `now` >= `next_at`: the tick to run (the latest one due), the tick
    after it, and how many due ticks are skipped (counted up to MISSED_COUNT_LIMIT)."""
    latest = schedule.latest_at_or_before(int(now))
    if latest is None or latest < next_at:  # (cannot be: next_at is a tick <= now)
        latest = next_at
    skipped, tick = 0, next_at
    while tick < latest and skipped < MISSED_COUNT_LIMIT:
        following = schedule.next_after(tick)
        if following is None:
            break
        skipped, tick = skipped + 1, following
    return latest, schedule.next_after(latest), skipped


class CronTrigger:
    """Runs an app's cron triggers while `run` runs, on the app's guest pool under its run
    gate, as HTTP requests are."""

    def __init__(self, runtime: AppRuntime, pool: Executor, gate: RunGate | None = None) -> None:
        self.pool = pool
        self.gate = gate
        self.jobs = plan(runtime.app)
        for job in self.jobs:
            job.executor = cron_executor(runtime, f"cron[{job.index}]", job.component)
        self.observer = spans.messages(runtime.app.name, "cron")  # None: all off

    @property
    def ready(self) -> bool:
        """Always: a schedule has no connection to wait for."""
        return True

    def describe(self) -> list[str]:
        now = time.time()
        lines = []
        for job in self.jobs:
            upcoming = job.schedule.next_after(now)
            when = _utc(upcoming) if upcoming is not None else "never"
            lines.append(
                f"Cron {job.schedule.expression!r} (UTC): [{job.component}], next tick {when}"
            )
        return lines

    async def run(self) -> None:
        await asyncio.gather(*(self._follow(job) for job in self.jobs))

    async def _follow(self, job: Job, clock: Callable[[], float] = time.time) -> None:
        job.next_at = job.schedule.next_after(clock())
        while job.next_at is not None:
            now = clock()
            if now < job.next_at:
                await asyncio.sleep(min(job.next_at - now, POLL))
                continue
            tick, job.next_at, skipped = catch_up(job.schedule, job.next_at, now)
            if skipped:
                log.warning(
                    "cron %s: %s%d ticks were due at once (the machine was suspended, the "
                    "clock jumped or the process stalled); running the latest, %s",
                    job.schedule.expression,
                    "over " if skipped >= MISSED_COUNT_LIMIT else "",
                    skipped + 1,
                    _utc(tick),
                )
            self._fire(job, tick)
        log.info("cron %s: no more ticks (its year field is past)", job.schedule.expression)

    def _fire(self, job: Job, tick: int) -> None:
        """Start the tick's handler and return: a tick does not wait for the previous one."""
        assert job.executor is not None
        loop = asyncio.get_running_loop()
        what = f"the tick of {_utc(tick)} (component {job.component})"
        call = functools.partial(job.executor.handle, tick)
        if self.observer is None:
            future = loop.run_in_executor(self.pool, run_guarded, self.gate, call, what)
        else:
            observed = self.observer.fired(job.schedule.expression, tick)
            run = observed.on_thread(run_guarded, job.component)
            future = loop.run_in_executor(self.pool, run, self.gate, call, what)
            future.add_done_callback(lambda _f: observed.end())
        job.running.add(future)
        future.add_done_callback(job.running.discard)


def _utc(timestamp: int) -> str:
    return f"{datetime.fromtimestamp(timestamp, UTC):%Y-%m-%dT%H:%M:%SZ}"


__all__ = ["CronTrigger", "catch_up", "plan"]
