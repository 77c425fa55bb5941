"""One builder from a locked app plus options to a running app, for every way wasmlet runs
one: `wasmlet up` and each of its `--workers`, the containerd shim's runner, and anything
later (a multi-app host).

Building resolves the app's variables (a missing required one fails here, as in Spin),
configures every factor (bad runtime config fails here), compiles the components (through
the compile cache) and builds the HTTP trigger with an executor per route.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .engine import EngineSettings, Limits, WasmEngine
from .factors import AppContext, configure
from .gate import RunGate
from .locked import LockedApp
from .runtime import AppRuntime
from .runtime_config import RuntimeConfig, variable_providers
from .trigger.http.app import DEFAULT_MAX_BODY, HttpTrigger
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

    @property
    def thread_count(self) -> int:
        return thread_count(self.threads)


def thread_count(threads: int) -> int:
    """Guests in progress at once per process (`threads`, or 0 for the default).

    Only `max_running` of them run a guest at a time (gate.py); the others are guests waiting
    for I/O or for their turn, which cost little. At most 32: each holds an instance, and a
    component's instance can take several of the pooling allocator's 256 core-instance
    slots."""
    return threads or min(32, max(8, 4 * (os.cpu_count() or 1)))


@dataclass
class Shared:
    """What the apps one process runs share: the engine, the thread pool guests run on, and
    the run gate (see gate.py). Whoever made it closes it (`close`), after its apps."""

    engine: WasmEngine
    pool: ThreadPoolExecutor
    gate: RunGate

    @classmethod
    def create(cls, engine: EngineSettings, threads: int, max_running: int) -> Shared:
        pool = ThreadPoolExecutor(threads, thread_name_prefix="wasmlet-wasm")
        return cls(WasmEngine(engine), pool, RunGate(max_running))

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


def build_app(
    app: LockedApp,
    opts: AppOptions,
    self_origin: str | None = None,
    shared: Shared | None = None,
    self_host: str | None = None,
) -> RunningApp:
    """Build `app` to run with `opts`. `self_origin` is the app's own base URL (for relative
    outbound requests; `self_host` their Host header, where the server routes by it);
    `shared` runs it on an engine, pool and gate other apps use too (default: its own, made
    from `opts`). Raises a `WasmletError` naming what is wrong."""
    resolver = make_resolver(app, opts.runtime_config, opts.home, opts.variables, opts.environ)
    resolver.resolve_app()  # a missing required variable fails at startup, as in Spin
    ctx = AppContext(app, opts.state_dir, opts.runtime_config, resolver, self_origin, self_host)
    factors = configure(ctx)
    owns_shared = shared is None
    if shared is None:
        shared = Shared.create(opts.engine, opts.thread_count, opts.max_running)
    try:
        runtime = AppRuntime(app, shared.engine, opts.state_dir, factors, opts.limits)
        trigger = HttpTrigger(runtime, shared.pool, opts.max_body, gate=shared.gate)
    except BaseException:
        factors.close()
        if owns_shared:
            shared.close()
        raise
    return RunningApp(app, runtime, trigger, shared, owns_shared)
