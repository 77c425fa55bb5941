"""The process-wide wasmtime engine: configuration, compile cache, and the epoch clock.

One `WasmEngine` per process, shared by every app the process runs. It owns the wasmtime
`Engine` (pooling allocator, epoch interruption), a background thread that advances the epoch
so that a request past its deadline traps, and an on-disk cache of precompiled modules so that
a restart does not recompile. What an app may use per instance (`Limits`: its request
deadline and memory) is the app's, applied to each store.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import platform
import tempfile
import threading
import weakref
from dataclasses import dataclass, field
from importlib.metadata import version as dist_version
from pathlib import Path
from typing import Any, TypeVar

import wasmtime
import wasmtime.component
from wasmtime import _ffi as ffi

from .dirs import default_cache_dir
from .errors import EngineError
from .guestlimits import DEFAULT_MAX_OUTPUT, DEFAULT_REQUEST_TIMEOUT
from .observe import metrics

log = logging.getLogger("wasmlet.engine")

EPOCH_TICK_SECONDS = 0.01
WASMTIME_VERSION = dist_version("wasmtime")

# What the compile cache holds: core modules (Wagi) and components.
Compiled = TypeVar("Compiled", wasmtime.Module, wasmtime.component.Component)


@dataclass(frozen=True)
class Limits:
    """What one app's instances may use: set on each store, so apps sharing an engine each
    keep their own."""

    request_timeout: float = DEFAULT_REQUEST_TIMEOUT  # seconds; 0 = no deadline
    max_instance_memory: int | None = None  # bytes of linear memory per instance
    max_output: int = DEFAULT_MAX_OUTPUT  # bytes a Wagi guest may write to stdout

    @property
    def deadline_ticks(self) -> int:
        """Epoch ticks after which a running instance traps (very large when no timeout)."""
        if self.request_timeout <= 0:
            return 1 << 62
        return max(1, math.ceil(self.request_timeout / EPOCH_TICK_SECONDS)) + 1


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class EngineSettings:
    """What a process's engine is configured with."""

    pooling: bool = True
    pool_instances: int = 256  # concurrent instances the pooling allocator holds
    cache_dir: Path | None = field(default_factory=default_cache_dir)

    def fingerprint(self) -> str:
        """What compiled code depends on: wasmtime's version, the config, the machine."""
        key = "|".join(
            [
                WASMTIME_VERSION,
                platform.machine(),
                "epoch=1",
                "concurrency=0",
                f"pooling={int(self.pooling)}",
            ]
        )
        return hashlib.sha256(key.encode()).hexdigest()[:16]


class WasmEngine:
    """The wasmtime `Engine` plus what every instance of every app shares."""

    def __init__(self, settings: EngineSettings | None = None) -> None:
        self.settings = settings or EngineSettings()
        self.engine = wasmtime.Engine(self._config())
        self.compiled = 0  # modules compiled by this engine (cache misses)
        self.cache_hits = 0
        # What this engine has loaded, by digest, while anything uses it: apps with the same
        # component (a multi-app host) share one compiled module.
        self._loaded: weakref.WeakValueDictionary[tuple[type, str], Any] = (
            weakref.WeakValueDictionary()
        )
        self._load_lock = threading.Lock()
        self._loading: dict[tuple[type, str], threading.Lock] = {}
        self._ticker: threading.Thread | None = None
        self._stop = threading.Event()

    # -- configuration ------------------------------------------------------------------
    def _config(self) -> wasmtime.Config:
        cfg = wasmtime.Config()
        cfg.epoch_interruption = True
        cfg.cranelift_opt_level = "speed"
        # Off: wasmtime 50 with concurrency support (the component-model-async machinery)
        # traps on any dynamic host call carrying two or more borrowed handles ("BUG: deferred
        # host scope has no call context": lifting the first borrow moves the call's borrow
        # record into a new host task whose scope the second lift never sees), which broke
        # `poll` over several pollables, `splice`, `rename-at`. wasmlet serves WASI 0.2 only.
        ffi.wasmtime_config_concurrency_support_set(cfg.ptr(), False)
        if self.settings.pooling:
            # wasmtime-py has no wrapper for the pooling allocator; its C API does.
            pool = ffi.wasmtime_pooling_allocation_config_new()
            n = self.settings.pool_instances
            ffi.wasmtime_pooling_allocation_config_total_core_instances_set(pool, n)
            ffi.wasmtime_pooling_allocation_config_total_memories_set(pool, n)
            ffi.wasmtime_pooling_allocation_config_total_tables_set(pool, n)
            ffi.wasmtime_pooling_allocation_config_total_stacks_set(pool, n)
            ffi.wasmtime_pooling_allocation_config_linear_memory_keep_resident_set(pool, 1 << 20)
            ffi.wasmtime_pooling_allocation_config_table_keep_resident_set(pool, 1 << 16)
            ffi.wasmtime_pooling_allocation_strategy_set(cfg.ptr(), pool)
            ffi.wasmtime_pooling_allocation_config_delete(pool)
        return cfg

    # -- the epoch ticker ---------------------------------------------------------------
    def start(self) -> None:
        """Start advancing the epoch; call once the process will run guests."""
        if self._ticker is None:
            self._ticker = threading.Thread(target=self._tick, name="wasmlet-epoch", daemon=True)
            self._ticker.start()

    def _tick(self) -> None:
        while not self._stop.wait(EPOCH_TICK_SECONDS):
            self.engine.increment_epoch()

    def close(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=1)
            self._ticker = None

    # -- modules and the compile cache ---------------------------------------------------
    def load_module(self, wasm: bytes, digest: str, name: str = "module") -> wasmtime.Module:
        """Compile a core module (whose sha256 is `digest`), or load it from the cache."""
        return self._load(wasmtime.Module, wasm, digest, name)

    def load_component(
        self, wasm: bytes, digest: str, name: str = "component"
    ) -> wasmtime.component.Component:
        """Compile a component, or load it from the cache."""
        return self._load(wasmtime.component.Component, wasm, digest, name)

    def _load(self, kind: type[Compiled], wasm: bytes, digest: str, name: str) -> Compiled:
        key = (kind, digest)
        with self._load_lock:
            lock = self._loading.setdefault(key, threading.Lock())
        with lock:  # one compile per digest, however many apps ask for it at once
            loaded: Compiled | None = self._loaded.get(key)
            if loaded is None:
                loaded = self._load_new(kind, wasm, digest, name)
                self._loaded[key] = loaded
        with self._load_lock:
            self._loading.pop(key, None)
        return loaded

    def _load_new(self, kind: type[Compiled], wasm: bytes, digest: str, name: str) -> Compiled:
        cache = self._cache_path(digest)
        if cache is not None:
            loaded = self._load_cached(kind, cache)
            metrics.compile_cache(hit=loaded is not None)
            if loaded is not None:
                self.cache_hits += 1
                return loaded
        try:
            compiled = kind(self.engine, wasm)
        except wasmtime.WasmtimeError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else "invalid binary"
            error = EngineError(f"{name}: cannot compile: {first}")
            error.add_note(str(e))  # wasmtime's causes, for callers that explain some of them
            raise error from None
        self.compiled += 1
        if cache is not None:
            self._store_cached(cache, bytes(compiled.serialize()))
        return compiled

    def _cache_path(self, digest: str) -> Path | None:
        if self.settings.cache_dir is None:
            return None
        hexdigest = digest.removeprefix("sha256:")
        return (
            self.settings.cache_dir
            / "compiled"
            / f"{hexdigest}-{self.settings.fingerprint()}.cwasm"
        )

    def _load_cached(self, kind: type[Compiled], path: Path) -> Compiled | None:
        """Load a precompiled artifact after checking its checksum; None means rebuild."""
        try:
            data = path.read_bytes()
            expected = path.with_suffix(".sha256").read_text().strip()
        except OSError:
            return None
        if hashlib.sha256(data).hexdigest() != expected:
            log.warning("compile cache entry %s is corrupt; recompiling", path.name)
            return None
        try:
            return kind.deserialize_file(self.engine, str(path))
        except wasmtime.WasmtimeError as e:
            log.warning("compile cache entry %s unusable (%s); recompiling", path.name, e)
            return None

    def _store_cached(self, path: Path, artifact: bytes) -> None:
        """Write the artifact and its checksum atomically; failures only cost a recompile."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            for target, content in (
                (path, artifact),
                (path.with_suffix(".sha256"), hashlib.sha256(artifact).hexdigest().encode()),
            ):
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
                with os.fdopen(fd, "wb") as f:
                    f.write(content)
                os.replace(tmp, target)
        except OSError as e:
            log.warning("cannot write compile cache %s: %s", path, e)
