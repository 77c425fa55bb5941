"""One builder from a locked app plus options to a running app, for every way wasmlet runs
one: `wasmlet up` and each of its `--workers`, the containerd shim's runner, and the
multi-app host (`wasmlet host`, the activator).

Building resolves the app's variables (a missing required one fails here, as in Spin),
configures every factor (bad runtime config fails here), compiles the components (through
the compile cache) and builds the HTTP trigger with an executor per route and the message
triggers (Redis, MQTT, cron). Whoever runs the app starts the message triggers
(`TriggerTasks`) and, where readiness matters, waits for `until_subscribed`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from pathlib import Path

from .engine import EngineSettings, Limits, WasmEngine
from .errors import NotSupportedError, WasmletError
from .factors import AppContext, configure
from .gate import RunGate
from .locked import LockedApp
from .pool import DEFAULT_MAX_WAITING, GuestPool
from .runtime import AppRuntime
from .runtime_config import RuntimeConfig, variable_providers
from .trigger import SUPPORTED, MessageTrigger
from .trigger.http.app import DEFAULT_BODY_READ_TIMEOUT, DEFAULT_MAX_BODY, HttpTrigger
from .variables import VariableResolver


@dataclass
class AppOptions:
    """How to run one app (from the CLI, a runtime config, a pod's environment)."""

    state_dir: Path = field(default_factory=lambda: Path(".spin"))
    engine: EngineSettings = field(default_factory=EngineSettings)  # if it makes its engine
    limits: Limits = field(default_factory=Limits)  # per instance: deadline, memory
    runtime_config: RuntimeConfig = field(default_factory=RuntimeConfig)
    variables: dict[str, str] = field(default_factory=dict)  # --variable overrides
    home: Path = field(default_factory=Path.cwd)  # the app's directory (for .env)
    # Where SPIN_VARIABLE_* come from: None = this process's environment.
    environ: dict[str, str] | None = None
    threads: int = 0  # requests in progress per worker; 0 = automatic
    max_running: int = 1  # guests running at once per worker (the others wait: gate.py)
    max_body: int = DEFAULT_MAX_BODY
    max_waiting: int = DEFAULT_MAX_WAITING  # guests waiting in host calls, beyond `threads`
    body_read_timeout: float = DEFAULT_BODY_READ_TIMEOUT  # seconds; 0 = none

    @property
    def thread_count(self) -> int:
        return thread_count(self.threads)


def thread_count(threads: int) -> int:
    """Guests in progress at once per process, not counting those waiting in host calls
    (`threads`, or 0 for the default; up to `max_waiting` more wait: pool.py).

    Only `max_running` of them run a guest at a time (gate.py); the others are guests waiting
    for their turn, which cost little. At most 32: each holds an instance (the engine's
    pooling allocator is sized for every thread the pool may have: `pool_sized`)."""
    return threads or min(32, max(8, 4 * (os.cpu_count() or 1)))


# Core-module instances one guest may take: a component instantiates each of its core
# modules, 14 for a componentize-py component (CPython, its libraries, the WASI adapter).
CORE_INSTANCES_PER_GUEST = 16
MAX_POOL_INSTANCES = 8192  # ~34 TB of address space (a process has 128 TiB)
SUBSCRIBED_POLL = 0.005  # seconds between looks at the message triggers' readiness


def message_trigger_types(app: LockedApp) -> list[str]:
    """The app's trigger types other than HTTP (redis, mqtt, cron), sorted: what makes it
    run with no request (subscribed, or on a schedule), which every side treats alike."""
    return sorted({t.trigger_type for t in app.triggers} - {"http"})


def pool_sized(engine: EngineSettings, guests: int) -> EngineSettings:
    """`engine` with a pooling allocator big enough for `guests` instances in progress at
    once (every thread of the guest pool, waiting ones included): past its limit an
    instantiation fails, so 40 Python guests waiting on a slow upstream made every component
    request fail with "maximum concurrent limit of 256 for core instances reached". A slot
    costs address space (about 4 GiB each, reserved, never touched), not memory: unused warm
    slots beyond wasmtime's 100 are decommitted whatever the pool's size."""
    wanted = min(CORE_INSTANCES_PER_GUEST * guests, MAX_POOL_INSTANCES)
    return engine if wanted <= engine.pool_instances else replace(engine, pool_instances=wanted)


@dataclass
class Shared:
    """What the apps one process runs share: the engine, the thread pool guests run on, and
    the run gate (see gate.py). Whoever made it closes it (`close`), after its apps."""

    engine: WasmEngine
    pool: Executor  # a GuestPool (the containerd shim has its own)
    gate: RunGate

    @classmethod
    def create(
        cls,
        engine: EngineSettings,
        threads: int,
        max_running: int,
        max_waiting: int = DEFAULT_MAX_WAITING,
    ) -> Shared:
        # `max_running` start at once, the rest of `threads` when queued work is overdue.
        pool = GuestPool(threads, max_waiting, running=max_running)
        return cls(
            WasmEngine(pool_sized(engine, threads + max_waiting)), pool, RunGate(max_running)
        )

    def start(self) -> None:
        """Start the engine's deadline ticker (call once requests will run)."""
        self.engine.start()

    def close(self) -> None:
        """Wait for guests still running; stop the engine."""
        self.pool.shutdown(wait=True, cancel_futures=False)
        self.engine.close()


@dataclass
class RunningApp:
    """An app ready to serve: its compiled runtime and HTTP trigger, on `shared`."""

    app: LockedApp
    runtime: AppRuntime
    trigger: HttpTrigger
    shared: Shared
    owns_shared: bool = True  # made for this app alone (closed with it)
    triggers: list[MessageTrigger] = field(default_factory=list)  # Redis, MQTT, cron

    @property
    def subscribed(self) -> bool:
        """Every message trigger is subscribed to everything it listens to (true with none):
        a task or a host reports such an app ready only then."""
        return all(t.ready for t in self.triggers)

    async def until_subscribed(self, timeout: float | None) -> bool:
        """Wait (on the loop its triggers run on) until `subscribed`, at most `timeout`
        seconds (None: as long as it takes); whether it is. Polled: it is only waited for
        while an app starts, and the triggers have no readiness event to wait on."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not self.subscribed:
            if deadline is not None and loop.time() >= deadline:
                return False
            await asyncio.sleep(SUBSCRIBED_POLL)
        return True

    @property
    def engine(self) -> WasmEngine:
        return self.shared.engine

    def start(self) -> None:
        """Start the engine's deadline ticker (call once requests will run)."""
        self.shared.start()

    def close(self) -> None:
        """Wait for its requests in flight (all of the process's, if it owns the pool);
        release the factors' app state (outbound clients and their threads)."""
        if self.owns_shared:
            self.shared.pool.shutdown(wait=True, cancel_futures=False)
        self.runtime.factors.close()
        if self.owns_shared:
            self.shared.close()


def make_resolver(
    app: LockedApp,
    config: RuntimeConfig,
    home: Path,
    overrides: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> VariableResolver:
    """The app's variables: overrides, the runtime config's providers, the environment
    (`SPIN_VARIABLE_*`, then `home/.env`), defaults."""
    env = dict(os.environ) if environ is None else dict(environ)
    return VariableResolver(
        app,
        overrides=dict(overrides or {}),
        providers=variable_providers(config, env, config.base_dir or home),
        environ=env,
        dotenv_path=home / ".env",
    )


def check_app(app: LockedApp, opts: AppOptions) -> None:
    """What can be checked of `app` with `opts` without building it: its variables resolve
    and its outbound hosts render to valid entries (the runtime config was checked when it
    was read). A host checks each app when it loads it, so a broken one is reported as not
    served at once, not on its first request. Raises a `WasmletError`."""
    resolver = make_resolver(app, opts.runtime_config, opts.home, opts.variables, opts.environ)
    resolver.resolve_app()
    AppContext(app, opts.state_dir, opts.runtime_config, resolver).policies  # noqa: B018


def build_app(
    app: LockedApp,
    opts: AppOptions,
    self_origin: str | None = None,
    shared: Shared | None = None,
    self_host: str | None = None,
    pool: Executor | None = None,
) -> RunningApp:
    """Build `app` to run with `opts`. `self_origin` is the app's own base URL (for relative
    outbound requests; `self_host` their Host header, where the server routes by it);
    `shared` runs it on an engine, pool and gate other apps use too (default: its own, made
    from `opts`); `pool` is where its guests run (default: the shared pool; a multi-app host
    gives each app a group of it). Raises a `WasmletError` naming what is wrong."""
    if opts.state_dir.exists() and not opts.state_dir.is_dir():
        raise WasmletError(f"state directory {opts.state_dir}: exists and is not a directory")
    resolver = make_resolver(app, opts.runtime_config, opts.home, opts.variables, opts.environ)
    resolver.resolve_app()  # a missing required variable fails at startup, as in Spin
    for locked in app.triggers:
        if locked.trigger_type not in SUPPORTED:
            raise NotSupportedError(
                f"trigger type {locked.trigger_type!r} (trigger {locked.id!r}) is not "
                f"supported; wasmlet runs: {', '.join(SUPPORTED)}"
            )
    ctx = AppContext(app, opts.state_dir, opts.runtime_config, resolver, self_origin, self_host)
    factors = configure(ctx)
    owns_shared = shared is None
    if shared is None:
        shared = Shared.create(opts.engine, opts.thread_count, opts.max_running, opts.max_waiting)
    try:
        runtime = AppRuntime(app, shared.engine, opts.state_dir, factors, opts.limits)
        guests = pool or shared.pool
        trigger = HttpTrigger(
            runtime,
            guests,
            opts.max_body,
            gate=shared.gate,
            body_read_timeout=opts.body_read_timeout,
        )
        triggers: list[MessageTrigger] = []
        # Imported only for apps that have them: their clients (redis, paho) load nothing
        # into an HTTP-only server.
        if app.triggers_of("redis"):
            from .trigger.redis import RedisTrigger

            triggers.append(RedisTrigger(runtime, guests, resolver.render, shared.gate))
        if app.triggers_of("mqtt"):
            from .trigger.mqtt import MqttTrigger

            triggers.append(MqttTrigger(runtime, guests, resolver.render, shared.gate))
        if app.triggers_of("cron"):
            from .trigger.cron import CronTrigger

            triggers.append(CronTrigger(runtime, guests, shared.gate))
    except BaseException:
        factors.close()
        if owns_shared:
            shared.close()
        raise
    return RunningApp(app, runtime, trigger, shared, owns_shared, triggers)
