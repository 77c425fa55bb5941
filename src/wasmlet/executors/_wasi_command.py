"""Run a WASI preview1 command module once, in a fresh instance, as cheaply as possible.

This is the hot path of the Wagi executor. wasmtime-py's object API costs tens of
microseconds per request in Python glue, so this module talks to wasmtime's C API (through
the ctypes bindings wasmtime-py ships) for the per-run steps: a new store with limits and an
epoch deadline, a WASI context (argv, env, stdin bytes, stdout/stderr into per-thread memfds
(`_output.py`), the component's files preopened read-only at `/`), instantiation from an
`InstancePre`, and a direct call of `_start`. The store is deleted before returning, so
nothing outlives a run.

One WASI function is wasmlet's own: `poll_oneoff` (`sleep`, `nanosleep`, `poll`). wasmtime's
waits in native code, where the epoch deadline cannot reach it (a guest sleeping 20 s with a
2 s timeout answered after 20 s), on its worker thread. wasmlet waits for clocks itself,
until the run's deadline at most (then the guest traps as timed out), and lets other guests
run meanwhile (`gate.released`). A poll that names a file descriptor is ready at once under
Wagi (stdin is bytes, stdout, stderr and files are files), so it goes to wasmtime's own,
called from Wasm through a small relay module that imports the guest's memory.
"""

from __future__ import annotations

import ctypes
import dataclasses
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import wasmtime
from wasmtime import _ffi as ffi

from ..engine import DEFAULT_LIMITS, Limits, WasmEngine
from ..errors import EngineError
from ..gate import released
from ..observe.metrics import ComponentMetrics
from ._output import OutputFiles, thread_files

_INTERRUPT = wasmtime.TrapCode.INTERRUPT.value
# A failed run whose memory ended this close to the memory limit (or a sixteenth of it, if
# more) is put down to the limit: a refused `memory.grow` only returns -1 to the guest.
_NEAR_LIMIT = 1 << 20


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """What one run of a command produced."""

    exit_code: int | None  # None when the guest trapped
    stdout: bytes
    stderr: bytes
    trap: str | None = None  # the trap or error message
    timed_out: bool = False
    overflowed: bool = False  # stdout passed `Limits.max_output` (its writes then failed)
    stderr_cut: bool = False  # stderr passed what is kept for the log
    memory_full: bool = False  # it failed near its memory limit (looked at with metrics on)


class _Run(threading.local):
    """The run on this thread, as `poll_oneoff` needs it."""

    command: WasiCommand | None = None
    deadline: float | None = None  # time.monotonic() when the run's time is up
    clock_base = 0.0  # time.monotonic() when its WASI context (monotonic clock) began


_run = _Run()


def _c_strings(items: list[bytes]) -> ctypes.Array[ctypes.c_char_p]:
    return (ctypes.c_char_p * len(items))(*items)


_CHARPP = ctypes.POINTER(ctypes.POINTER(ctypes.c_char))
_NO_FINALIZER = ctypes.CFUNCTYPE(None, ctypes.c_void_p)()  # a NULL function pointer


def _error_message(err: ctypes._Pointer[Any]) -> str:
    vec = ffi.wasm_byte_vec_t()
    ffi.wasmtime_error_message(err, ctypes.byref(vec))
    text = ffi.to_str(vec)
    ffi.wasm_byte_vec_delete(ctypes.byref(vec))
    return text


def _outcome(
    trap: ctypes._Pointer[Any], err: ctypes._Pointer[Any] | None, stdout: bytes, stderr: bytes
) -> RunOutcome:
    if trap:
        return _trap_outcome(trap, stdout, stderr)
    if err:
        status = ctypes.c_int()
        if ffi.wasmtime_error_exit_status(err, ctypes.byref(status)):
            ffi.wasmtime_error_delete(err)
            return RunOutcome(status.value, stdout, stderr)
        message = _error_message(err)
        ffi.wasmtime_error_delete(err)
        return RunOutcome(None, stdout, stderr, message)
    return RunOutcome(0, stdout, stderr)


def _cut(outcome: RunOutcome, files: OutputFiles) -> RunOutcome:
    """The outcome of a run that wrote past a cap (its stdout is then not a response)."""
    return RunOutcome(
        outcome.exit_code,
        outcome.stdout,
        outcome.stderr,
        outcome.trap,
        outcome.timed_out,
        files.overflowed,
        files.err_overflowed,
    )


def _trap_outcome(trap: ctypes._Pointer[Any], stdout: bytes, stderr: bytes) -> RunOutcome:
    code = ctypes.c_uint8()
    timed_out = bool(ffi.wasmtime_trap_code(trap, ctypes.byref(code))) and code.value == _INTERRUPT
    vec = ffi.wasm_byte_vec_t()
    ffi.wasm_trap_message(trap, ctypes.byref(vec))
    message = ffi.to_str(vec).rstrip("\x00")
    ffi.wasm_byte_vec_delete(ctypes.byref(vec))
    ffi.wasm_trap_delete(trap)
    return RunOutcome(None, stdout, stderr, message, timed_out)


class WasiCommand:
    """A compiled WASI command, linked once; `run` gives each call a fresh instance."""

    def __init__(
        self,
        engine: WasmEngine,
        module: wasmtime.Module,
        name: str,
        root: Path | None = None,
        limits: Limits = DEFAULT_LIMITS,
        metrics: ComponentMetrics | None = None,
    ) -> None:
        self.engine = engine
        self.limits = limits
        self.name = name
        self.metrics = metrics  # None: metrics are off
        self._root = str(root).encode() if root is not None else None
        linker = wasmtime.Linker(engine.engine)
        linker.define_wasi()
        linker.allow_shadowing = True
        _define_poll_oneoff(linker)
        self._native: tuple[wasmtime.Linker, wasmtime.Module] | None = None  # for `_relay`
        exports = {e.name for e in module.exports}
        if "_start" not in exports:
            raise EngineError(f"{name}: module has no `_start` export (not a WASI command)")
        try:
            self._pre = linker.instantiate_pre(module)
        except wasmtime.WasmtimeError as e:
            raise EngineError(f"{name}: cannot link module: {e}") from None
        self._module = module  # keep alive as long as the InstancePre

    def run(self, argv: list[bytes], env: list[tuple[bytes, bytes]], stdin: bytes) -> RunOutcome:
        files = thread_files()
        limits = self.limits
        run = _run
        run.command = self
        files.start(limits.max_output)
        store = ffi.wasmtime_store_new(self.engine.engine.ptr(), None, _NO_FINALIZER)
        try:
            ctx = ffi.wasmtime_store_context(store)
            if limits.max_instance_memory is not None:
                ffi.wasmtime_store_limiter(store, limits.max_instance_memory, -1, -1, -1, -1)
            ffi.wasmtime_context_set_epoch_deadline(ctx, limits.deadline_ticks)
            run.clock_base = now = time.monotonic()
            timeout = limits.request_timeout
            run.deadline = now + timeout if timeout > 0 else None
            self._configure_wasi(ctx, files, argv, env, stdin)

            trap = ctypes.POINTER(ffi.wasm_trap_t)()
            instance = ffi.wasmtime_instance_t()
            watch = self.metrics
            began = time.perf_counter() if watch is not None else 0.0
            err = ffi.wasmtime_instance_pre_instantiate(
                self._pre.ptr(), ctx, ctypes.byref(instance), ctypes.byref(trap)
            )
            memory_full = False
            if not err and not trap:
                if watch is not None:
                    watch.instantiated(time.perf_counter() - began)
                start = ffi.wasmtime_extern_t()
                ffi.wasmtime_instance_export_get(
                    ctx, ctypes.byref(instance), b"_start", 6, ctypes.byref(start)
                )
                err = ffi.wasmtime_func_call(
                    ctx, ctypes.byref(start.of.func), None, 0, None, 0, ctypes.byref(trap)
                )
                limit = limits.max_instance_memory
                if watch is not None and (err or trap) and limit is not None:
                    memory_full = _near_limit(ctx, instance, limit)
        finally:
            ffi.wasmtime_store_delete(store)  # closes the guest's stdout/stderr
            run.command = None
            stdout, stderr = files.finish()
        outcome = _outcome(trap, err, stdout, stderr)
        if files.overflowed or files.err_overflowed:
            outcome = _cut(outcome, files)
        if memory_full:
            outcome = dataclasses.replace(outcome, memory_full=True)
        return outcome

    def native(self) -> tuple[wasmtime.Linker, wasmtime.Module]:
        """A linker with wasmtime's own WASI, and the relay module (made on first use)."""
        if self._native is None:
            linker = wasmtime.Linker(self.engine.engine)
            linker.define_wasi()
            self._native = (linker, wasmtime.Module(self.engine.engine, _RELAY_WAT))
        return self._native

    def _configure_wasi(
        self,
        ctx: ctypes._Pointer[Any],
        files: OutputFiles,
        argv: list[bytes],
        env: list[tuple[bytes, bytes]],
        stdin: bytes,
    ) -> None:
        cfg = ffi.wasi_config_new()
        args = _c_strings(argv)
        ffi.wasi_config_set_argv(cfg, len(argv), ctypes.cast(args, _CHARPP))
        names = _c_strings([k for k, _ in env])
        values = _c_strings([v for _, v in env])
        ffi.wasi_config_set_env(
            cfg, len(env), ctypes.cast(names, _CHARPP), ctypes.cast(values, _CHARPP)
        )
        if stdin:
            vec = ffi.wasm_byte_vec_t()
            buf = (ctypes.c_uint8 * len(stdin)).from_buffer_copy(stdin)
            ffi.wasm_byte_vec_new(ctypes.byref(vec), len(stdin), buf)
            ffi.wasi_config_set_stdin_bytes(cfg, ctypes.byref(vec))  # takes ownership
        ffi.wasi_config_set_stdout_file(cfg, files.out_path)
        ffi.wasi_config_set_stderr_file(cfg, files.err_path)
        if self._root is not None and not ffi.wasi_config_preopen_dir(cfg, self._root, b"/", False):
            ffi.wasi_config_delete(cfg)
            raise EngineError(f"{self.name}: cannot mount files directory {self._root.decode()}")
        err = ffi.wasmtime_context_set_wasi(ctx, cfg)  # consumes cfg
        if err:
            message = _error_message(err)
            ffi.wasmtime_error_delete(err)
            raise EngineError(f"{self.name}: cannot set up WASI: {message}")


def _near_limit(ctx: Any, instance: Any, limit: int) -> bool:
    """Whether the instance's exported memory is within `_NEAR_LIMIT` (or limit / 16) of
    `limit` bytes."""
    memory = ffi.wasmtime_extern_t()
    found = ffi.wasmtime_instance_export_get(
        ctx, ctypes.byref(instance), b"memory", 6, ctypes.byref(memory)
    )
    if not found or cast(int, memory.kind) != ffi.WASMTIME_EXTERN_MEMORY.value:
        return False
    size = int(ffi.wasmtime_memory_data_size(ctx, ctypes.byref(memory.of.memory)))
    return size + max(_NEAR_LIMIT, limit // 16) > limit


# -- poll_oneoff ---------------------------------------------------------------------------

_WASI = b"wasi_snapshot_preview1"
_POLL_ONEOFF = b"poll_oneoff"
_SUBSCRIPTION = struct.Struct("<QB7xI4xQQH6x")  # userdata, tag, clock id, timeout, precision, flags
_EVENT = struct.Struct("<QHB5xQH6x")  # userdata, error, type, nbytes, flags
_CLOCK, _REALTIME, _MONOTONIC, _ABSTIME = 0, 0, 1, 1
_LONGEST_SLEEP = 3600.0

# wasmtime's poll_oneoff, called from Wasm so that it finds the guest's memory as its caller's.
_RELAY_WAT = """
(module
  (import "wasmlet" "memory" (memory 0))
  (import "wasi_snapshot_preview1" "poll_oneoff"
    (func $poll (param i32 i32 i32 i32) (result i32)))
  (export "memory" (memory 0))
  (func (export "poll") (param i32 i32 i32 i32) (result i32)
    (call $poll (local.get 0) (local.get 1) (local.get 2) (local.get 3))))
"""


def _define_poll_oneoff(linker: wasmtime.Linker) -> None:
    # A function type per linker: the C API ties one to the first engine it is used with
    # (and aborts the process when it meets another).
    functype = wasmtime.FuncType([wasmtime.ValType.i32()] * 4, [wasmtime.ValType.i32()])
    err = ffi.wasmtime_linker_define_func(
        linker.ptr(),
        _WASI,
        len(_WASI),
        _POLL_ONEOFF,
        len(_POLL_ONEOFF),
        functype.ptr(),
        _poll_oneoff,
        None,
        _NO_FINALIZER,
    )
    if err:
        message = _error_message(err)
        ffi.wasmtime_error_delete(err)
        raise EngineError(f"cannot define poll_oneoff: {message}")


def _trap_address(trap: ctypes._Pointer[Any]) -> int:
    return ctypes.cast(trap, ctypes.c_void_p).value or 0


def _trap_message(message: str) -> int:
    data = message.encode()
    return _trap_address(ffi.wasmtime_trap_new(data, len(data)))


@ffi.wasmtime_func_callback_t  # type: ignore[untyped-decorator]
def _poll_oneoff(
    _env: Any, caller: Any, args: Any, _nargs: int, results: Any, _nresults: int
) -> int:
    try:
        return _poll(caller, args, results)
    except BaseException as e:  # nothing may unwind into wasmtime
        return _trap_message(f"poll_oneoff failed in the host: {e!r}")


def _poll(caller: Any, args: Any, results: Any) -> int:
    """wasmlet's poll_oneoff: clocks waited for here, anything else by wasmtime's own."""
    ctx = ffi.wasmtime_caller_context(caller)
    memory = ffi.wasmtime_extern_t()
    found = ffi.wasmtime_caller_export_get(caller, b"memory", 6, ctypes.byref(memory))
    if not found or cast(int, memory.kind) != ffi.WASMTIME_EXTERN_MEMORY.value:
        return _trap_message("poll_oneoff: the module exports no memory")
    size = ffi.wasmtime_memory_data_size(ctx, ctypes.byref(memory.of.memory))
    base = ffi.wasmtime_memory_data(ctx, ctypes.byref(memory.of.memory))
    view = (ctypes.c_ubyte * size).from_address(ctypes.addressof(base.contents))
    in_, out, n, nevents = (args[i].of.i32 & 0xFFFFFFFF for i in range(4))
    wakes = _clock_wakes(view, in_, n)
    if wakes is None or out + n * _EVENT.size > size or nevents + 4 > size:
        return _relay(ctx, memory, args, results)
    run = _run
    earliest = min(at for _, at in wakes)
    limit = run.deadline
    if not _sleep_until(earliest if limit is None else min(earliest, limit)):
        return _trap_address(ffi.wasmtime_trap_new_code(_INTERRUPT))  # the deadline passed
    # The view may be stale (memory.grow cannot happen meanwhile: this instance is waiting).
    now = time.monotonic()
    ready = [userdata for userdata, at in wakes if at <= now]
    for i, userdata in enumerate(ready):
        _EVENT.pack_into(view, out + i * _EVENT.size, userdata, 0, _CLOCK, 0, 0)
    struct.pack_into("<I", view, nevents, len(ready))
    results[0].kind = ffi.WASMTIME_I32.value
    results[0].of.i32 = 0
    return 0


def _clock_wakes(view: Any, in_: int, n: int) -> list[tuple[int, float]] | None:
    """(userdata, time.monotonic() to wake at) of each subscription, when all are clocks
    wasmlet can wait for; None when wasmtime's own poll must answer."""
    if n == 0 or in_ + n * _SUBSCRIPTION.size > len(view):
        return None
    now, wall = time.monotonic(), time.time()
    base = _run.clock_base
    wakes = []
    for i in range(n):
        userdata, tag, clock, timeout, _, flags = _SUBSCRIPTION.unpack_from(
            view, in_ + i * _SUBSCRIPTION.size
        )
        if tag != _CLOCK or clock not in (_REALTIME, _MONOTONIC):
            return None
        seconds = timeout / 1e9
        if not flags & _ABSTIME:
            at = now + seconds
        elif clock == _MONOTONIC:  # wasmtime's monotonic clock counts from the WASI context
            at = base + seconds
        else:
            at = now + (seconds - wall)
        wakes.append((userdata, at))
    return wakes


def _sleep_until(until: float) -> bool:
    """Wait until `until` (time.monotonic()), letting other guests run; False when the
    run's deadline is what ended the wait."""
    if time.monotonic() < until:
        with released():
            while (left := until - time.monotonic()) > 0:
                time.sleep(min(left, _LONGEST_SLEEP))
    limit = _run.deadline
    return limit is None or until < limit


def _relay(ctx: Any, memory: Any, args: Any, results: Any) -> int:
    """Call wasmtime's own poll_oneoff (from Wasm, on the guest's memory)."""
    command = _run.command
    if command is None:
        return _trap_message("poll_oneoff called outside a run")
    linker, relay = command.native()
    func = ffi.wasmtime_extern_t()
    if not ffi.wasmtime_linker_get(
        linker.ptr(), ctx, _WASI, len(_WASI), _POLL_ONEOFF, len(_POLL_ONEOFF), ctypes.byref(func)
    ):
        return _trap_message("poll_oneoff: wasmtime's own is missing")
    imports = (ffi.wasmtime_extern_t * 2)(memory, func)
    instance = ffi.wasmtime_instance_t()
    trap = ctypes.POINTER(ffi.wasm_trap_t)()
    err = ffi.wasmtime_instance_new(
        ctx, relay.ptr(), imports, 2, ctypes.byref(instance), ctypes.byref(trap)
    )
    if not err and not trap:
        poll = ffi.wasmtime_extern_t()
        ffi.wasmtime_instance_export_get(
            ctx, ctypes.byref(instance), b"poll", 4, ctypes.byref(poll)
        )
        err = ffi.wasmtime_func_call(
            ctx, ctypes.byref(poll.of.func), args, 4, results, 1, ctypes.byref(trap)
        )
    if trap:
        return _trap_address(trap)
    if err:  # e.g. proc_exit cannot happen here; pass the message on as a trap
        message = _error_message(err)
        ffi.wasmtime_error_delete(err)
        return _trap_message(message)
    return 0
