"""What the component executors share: one linker per component, built once, and per request
a fresh store, instance state and instance, then one call of the handler export.

wasmtime's C API has no component `InstancePre`, so each request instantiates through the
linker; the linker (WASI, wasmlet's WASI pieces, the component's factors) is built once.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import wasmtime
from wasmtime.component import Component, Linker

from ..engine import Limits, WasmEngine
from ..errors import EngineError
from ..observe import metrics, spans
from ..runtime import PreparedComponent
from ..wasi import (
    GuestError,
    HostTrap,
    InstanceState,
    Interface,
    ResourceTable,
    Ty,
    active,
    call_export,
)
from ..wasi.host import build_linker

log = logging.getLogger("wasmlet.component")

# Interfaces whose functions never wait: a component importing only these cannot sleep, poll
# or do I/O (without wasi:io/poll no pollable can be waited on), so it can run on the event
# loop's thread (`ComponentHandler.can_wait`). Its streams are the request's body, whole
# before such a run, and the response's, held in memory then; stdout/stderr go to the log.
NEVER_WAIT = frozenset(
    {
        "wasi:http/types",
        "wasi:io/error",
        "wasi:io/streams",
        "wasi:cli/environment",
        "wasi:cli/exit",
        "wasi:cli/stdin",
        "wasi:cli/stdout",
        "wasi:cli/stderr",
        "wasi:cli/terminal-input",
        "wasi:cli/terminal-output",
        "wasi:cli/terminal-stdin",
        "wasi:cli/terminal-stdout",
        "wasi:cli/terminal-stderr",
        "wasi:clocks/monotonic-clock",
        "wasi:clocks/wall-clock",
        "wasi:random/random",
        "wasi:random/insecure",
        "wasi:random/insecure-seed",
    }
)


@dataclass(slots=True)
class Outcome:
    """How a call went: its result, or why it failed (already logged)."""

    value: Any = None
    failure: Exception | None = None
    overran: bool = False  # stopped at a `budget` (not logged: the caller runs it again)


class ComponentHandler:
    """A component's handler export, called in a fresh instance per request."""

    def __init__(
        self,
        engine: WasmEngine,
        prepared: PreparedComponent,
        export: str,
        entry: str,
        limits: Limits,
    ) -> None:
        component = prepared.require_component()
        self.engine = engine
        self.limits = limits
        self.component = component
        self.component_id = prepared.id
        self.capabilities = prepared.factors.capabilities
        self.environment = list(prepared.locked.env.items())
        imports = tuple(sorted(component.type.imports(engine.engine)))
        self.linker = _linker(engine, component, imports, prepared.factors.interfaces)
        self.can_wait = any(name.partition("@")[0] not in NEVER_WAIT for name in imports)
        self.metrics = metrics.component(prepared.app, prepared.id)  # None: metrics are off
        if export:  # a function of an exported interface
            iface = component.get_export_index(export)
            func = component.get_export_index(entry, iface) if iface is not None else None
        else:  # a function the world exports itself (the MQTT and cron plugins' form)
            func = component.get_export_index(entry)
        if func is None:
            where = f"export {export}" if export else "the component"
            raise EngineError(f"component {self.component_id!r}: {where} has no `{entry}`")
        self._entry = func

    def call(
        self,
        args: Callable[[ResourceTable], Sequence[tuple[Ty, Any]]],
        result: Ty | None,
        before_block: Callable[[], None] | None = None,
        budget: int | None = None,
        abandoned: Callable[[], bool] | None = None,
    ) -> Outcome:
        """Instantiate, call the entry with `args(table)` (the arguments, which may put host
        resources in the new instance's table), and end the instance. With a `budget` (epoch
        ticks), a guest still running after it is stopped and `overran`, as is one that
        failed once `abandoned()` (the caller gave up on this run): neither is logged."""
        if budget is not None and budget >= self.limits.deadline_ticks:
            budget = None  # the deadline comes first: stopping there is a timeout
        store = self._store(budget)
        timeout = self.limits.request_timeout
        state = InstanceState(
            self.component_id,
            self.capabilities,
            deadline=time.monotonic() + timeout if timeout > 0 else None,
            clock_base=time.monotonic(),  # the WASI context's clock starts with the store
            before_block=before_block,
        )
        outcome = Outcome()
        watch = self.metrics
        took: float | None = None  # instantiating, with metrics on
        with active(state):
            try:
                if watch is None:
                    instance = self.linker.instantiate(store, self.component)
                else:
                    watch.running()
                    began = time.perf_counter()
                    instance = self.linker.instantiate(store, self.component)
                    took = time.perf_counter() - began
                outcome.value = call_export(store, instance, self._entry, args(state.table), result)
            except (GuestError, wasmtime.WasmtimeError, HostTrap) as e:
                outcome.failure = e
        failure = outcome.failure
        stopped = (  # at its budget, not at its deadline
            budget is not None
            and failure is not None
            and failure_kind(_failure_text(failure)) == "timeout"
        )
        if stopped or (abandoned is not None and abandoned()):
            outcome.overran = True
        elif failure is not None:
            self._log_failure(failure)
        if watch is not None and took is not None and not outcome.overran:
            watch.instantiated(took)  # a run given up (run again elsewhere) is not counted
        return outcome

    def counted(self, trigger: str, ok: bool) -> bool:
        """`ok`, after counting a message trigger's message as handled (with metrics on)."""
        if self.metrics is not None:
            self.metrics.handled(trigger, ok)
        return ok

    def _store(self, budget: int | None = None) -> wasmtime.Store:
        store = wasmtime.Store(self.engine.engine)
        if self.limits.max_instance_memory is not None:
            store.set_limits(memory_size=self.limits.max_instance_memory)
        ticks = self.limits.deadline_ticks
        store.set_epoch_deadline(ticks if budget is None else min(budget, ticks))
        wasi = wasmtime.WasiConfig()  # files are wasmlet's wasi:filesystem (the files factor)
        if self.environment:  # handing over even an empty list costs ~5 µs per request
            wasi.env = self.environment
        store.set_wasi(wasi)
        return store

    def _log_failure(self, error: Exception) -> None:
        text = _failure_text(error)
        kind = failure_kind(text)
        if kind == "timeout":
            log.error("component %s timed out", self.component_id)
        else:
            log.error("component %s trapped: %s", self.component_id, _trap_summary(text))
        if self.metrics is not None:
            self.metrics.failed(kind, text)  # with its backtrace, for the status page
        spans.failed(kind)  # the guest's span, with traces on


def _failure_text(error: Exception) -> str:
    """What a failed call says: its host function's error, else wasmtime's."""
    return str(getattr(error, "cause", None) or error)


def failure_kind(text: str) -> str:
    """What a failed call's error says it was: `timeout` (the epoch deadline's interrupt, or
    a host wait cut at the deadline), `memory_limit` (instantiation refused by the memory
    limit), else `trap`. A refused `memory.grow` is not an error (the guest gets -1), so a
    component that fails after one counts as `trap`."""
    if "interrupt" in text.lower() or "deadline" in text:
        return "timeout"
    if "exceeds memory limits" in text:
        return "memory_limit"
    return "trap"


# Linkers by engine, then by what a linker depends on: the component's imports and the
# interfaces its factors serve. Apps whose components import the same (copies of one app in a
# multi-app host) share one linker; what differs between them is instance state, not linking.
_LINKERS: weakref.WeakKeyDictionary[WasmEngine, dict[tuple[object, ...], Linker]] = (
    weakref.WeakKeyDictionary()
)
_LINKERS_LOCK = threading.Lock()


def _linker(
    engine: WasmEngine, component: Component, imports: tuple[str, ...], interfaces: list[Interface]
) -> Linker:
    key = (imports, tuple(id(i) for i in interfaces))
    with _LINKERS_LOCK:
        linkers = _LINKERS.setdefault(engine, {})
        linker = linkers.get(key)
        if linker is None:
            linker = linkers[key] = build_linker(engine.engine, component, interfaces)
        return linker


def _trap_summary(text: str) -> str:
    """The informative part of a wasmtime error: what follows "Caused by:", else line one."""
    head, sep, cause = text.partition("Caused by:")
    lines = [line.strip() for line in (cause if sep else head).splitlines() if line.strip()]
    return "; ".join(lines) if lines else "unknown error"
