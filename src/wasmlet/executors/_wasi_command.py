"""Run a WASI preview1 command module once, in a fresh instance, as cheaply as possible.

This is the hot path of the Wagi executor. wasmtime-py's object API costs tens of
microseconds per request in Python glue, so this module talks to wasmtime's C API (through
the ctypes bindings wasmtime-py ships) for the per-run steps: a new store with limits and an
epoch deadline, a WASI context (argv, env, stdin bytes, stdout/stderr into per-thread memfds,
the component's files preopened read-only at `/`), instantiation from an `InstancePre`, and a
direct call of `_start`. The store is deleted before returning, so nothing outlives a run.
"""

from __future__ import annotations

import ctypes
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import wasmtime
from wasmtime import _ffi as ffi

from ..engine import DEFAULT_LIMITS, Limits, WasmEngine
from ..errors import EngineError

_INTERRUPT = wasmtime.TrapCode.INTERRUPT.value
_MAX_OUTPUT = 1 << 30


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """What one run of a command produced."""

    exit_code: int | None  # None when the guest trapped
    stdout: bytes
    stderr: bytes
    trap: str | None = None  # the trap or error message
    timed_out: bool = False


class _Pipes(threading.local):
    """Per-thread memfds that receive a guest's stdout and stderr."""

    def __init__(self) -> None:
        self.out = os.memfd_create("wasmlet-stdout", os.MFD_CLOEXEC)
        self.err = os.memfd_create("wasmlet-stderr", os.MFD_CLOEXEC)
        self.out_path = f"/proc/self/fd/{self.out}".encode()
        self.err_path = f"/proc/self/fd/{self.err}".encode()

    def reset(self) -> None:
        os.ftruncate(self.out, 0)
        os.ftruncate(self.err, 0)

    @staticmethod
    def take(fd: int) -> bytes:
        size = os.fstat(fd).st_size
        return os.pread(fd, min(size, _MAX_OUTPUT), 0) if size else b""


_pipes = _Pipes()


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
    ) -> None:
        self.engine = engine
        self.limits = limits
        self.name = name
        self._root = str(root).encode() if root is not None else None
        linker = wasmtime.Linker(engine.engine)
        linker.define_wasi()
        exports = {e.name for e in module.exports}
        if "_start" not in exports:
            raise EngineError(f"{name}: module has no `_start` export (not a WASI command)")
        try:
            self._pre = linker.instantiate_pre(module)
        except wasmtime.WasmtimeError as e:
            raise EngineError(f"{name}: cannot link module: {e}") from None
        self._module = module  # keep alive as long as the InstancePre

    def run(self, argv: list[bytes], env: list[tuple[bytes, bytes]], stdin: bytes) -> RunOutcome:
        pipes = _pipes
        pipes.reset()
        limits = self.limits
        store = ffi.wasmtime_store_new(self.engine.engine.ptr(), None, _NO_FINALIZER)
        try:
            ctx = ffi.wasmtime_store_context(store)
            if limits.max_instance_memory is not None:
                ffi.wasmtime_store_limiter(store, limits.max_instance_memory, -1, -1, -1, -1)
            ffi.wasmtime_context_set_epoch_deadline(ctx, limits.deadline_ticks)
            self._configure_wasi(ctx, pipes, argv, env, stdin)

            trap = ctypes.POINTER(ffi.wasm_trap_t)()
            instance = ffi.wasmtime_instance_t()
            err = ffi.wasmtime_instance_pre_instantiate(
                self._pre.ptr(), ctx, ctypes.byref(instance), ctypes.byref(trap)
            )
            if not err and not trap:
                start = ffi.wasmtime_extern_t()
                ffi.wasmtime_instance_export_get(
                    ctx, ctypes.byref(instance), b"_start", 6, ctypes.byref(start)
                )
                err = ffi.wasmtime_func_call(
                    ctx, ctypes.byref(start.of.func), None, 0, None, 0, ctypes.byref(trap)
                )
        finally:
            ffi.wasmtime_store_delete(store)  # closes the guest's stdout/stderr
        stdout, stderr = pipes.take(pipes.out), pipes.take(pipes.err)
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

    def _configure_wasi(
        self,
        ctx: ctypes._Pointer[Any],
        pipes: _Pipes,
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
        ffi.wasi_config_set_stdout_file(cfg, pipes.out_path)
        ffi.wasi_config_set_stderr_file(cfg, pipes.err_path)
        if self._root is not None and not ffi.wasi_config_preopen_dir(cfg, self._root, b"/", False):
            ffi.wasi_config_delete(cfg)
            raise EngineError(f"{self.name}: cannot mount files directory {self._root.decode()}")
        err = ffi.wasmtime_context_set_wasi(ctx, cfg)  # consumes cfg
        if err:
            message = _error_message(err)
            ffi.wasmtime_error_delete(err)
            raise EngineError(f"{self.name}: cannot set up WASI: {message}")
