"""The engine: compile cache, deadlines, memory limits, fresh instances (WAT guests)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import wasmtime

from wasmlet.engine import EngineSettings, Limits, WasmEngine
from wasmlet.errors import EngineError, WasmletError
from wasmlet.executors._wasi_command import WasiCommand
from wasmlet.guestlimits import parse_size
from wasmlet.locked import sha256_digest

# A WASI command that writes "n=<counter>" where counter is a global incremented per run:
# with a fresh instance per run it is always 1.
COUNTER_WAT = """
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $n (mut i32) (i32.const 0))
  (data (i32.const 16) "n=0\\n")
  (func (export "_start")
    (global.set $n (i32.add (global.get $n) (i32.const 1)))
    (i32.store8 (i32.const 18) (i32.add (i32.const 48) (global.get $n)))
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 4))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
"""

LOOP_WAT = '(module (memory (export "memory") 1) (func (export "_start") (loop $l (br $l))))'

# Grows memory by 1 MiB (16 pages) until memory.grow fails, then traps (unreachable).
GROW_WAT = """
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $l
      (if (i32.eq (memory.grow (i32.const 16)) (i32.const -1)) (then unreachable))
      (br $l))))
"""

EXIT_WAT = """
(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (call $exit (i32.const 7))))
"""


def compile_wat(engine: WasmEngine, wat: str) -> wasmtime.Module:
    wasm = wasmtime.wat2wasm(wat)
    return engine.load_module(bytes(wasm), sha256_digest(bytes(wasm)))


LIMITS = Limits(request_timeout=0.3, max_instance_memory=8 << 20)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[WasmEngine]:
    e = WasmEngine(EngineSettings(cache_dir=tmp_path / "cache"))
    e.start()
    yield e
    e.close()


def command(engine: WasmEngine, wat: str, name: str) -> WasiCommand:
    return WasiCommand(engine, compile_wat(engine, wat), name, limits=LIMITS)


def test_fresh_instance_per_run(engine: WasmEngine) -> None:
    cmd = command(engine, COUNTER_WAT, "counter")
    for _ in range(5):
        out = cmd.run([b"x"], [], b"")
        assert out.exit_code == 0
        assert out.stdout == b"n=1\n"


def test_loop_is_interrupted_at_the_deadline(engine: WasmEngine) -> None:
    cmd = command(engine, LOOP_WAT, "loop")
    t0 = time.monotonic()
    out = cmd.run([b"x"], [], b"")
    elapsed = time.monotonic() - t0
    assert out.exit_code is None
    assert out.timed_out
    assert 0.25 <= elapsed < 2.0


def test_memory_limit_makes_grow_fail(engine: WasmEngine) -> None:
    cmd = command(engine, GROW_WAT, "grow")
    out = cmd.run([b"x"], [], b"")
    assert out.exit_code is None
    assert not out.timed_out
    assert out.trap is not None and "unreachable" in out.trap


def test_exit_code(engine: WasmEngine) -> None:
    cmd = command(engine, EXIT_WAT, "exit")
    assert cmd.run([b"x"], [], b"").exit_code == 7


def test_not_a_command(engine: WasmEngine) -> None:
    module = compile_wat(engine, '(module (func (export "main")))')
    with pytest.raises(EngineError, match="no `_start` export"):
        WasiCommand(engine, module, "lib")


def test_invalid_module_is_a_clear_error(engine: WasmEngine) -> None:
    with pytest.raises(EngineError, match="cannot compile"):
        engine.load_module(b"\0asm\x01\0\0\0garbage", "sha256:00")


def _cache_files(root: Path) -> list[Path]:
    return sorted((root / "compiled").glob("*.cwasm"))


def test_compile_cache_written_and_reused(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    wasm = bytes(wasmtime.wat2wasm(COUNTER_WAT))
    e1 = WasmEngine(EngineSettings(cache_dir=cache))
    e1.load_module(wasm, sha256_digest(wasm))
    assert (e1.compiled, e1.cache_hits) == (1, 0)
    files = _cache_files(cache)
    assert len(files) == 1
    assert sha256_digest(wasm).removeprefix("sha256:") in files[0].name

    # A second engine (a new process, in effect) loads from the cache instead of compiling.
    e2 = WasmEngine(EngineSettings(cache_dir=cache))
    module = e2.load_module(wasm, sha256_digest(wasm))
    assert (e2.compiled, e2.cache_hits) == (0, 1)
    e2.start()
    assert WasiCommand(e2, module, "c").run([b"x"], [], b"").stdout == b"n=1\n"
    e2.close()


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage", "checksum"])
def test_corrupt_cache_entry_is_rebuilt(tmp_path: Path, damage: str) -> None:
    cache = tmp_path / "cache"
    wasm = bytes(wasmtime.wat2wasm(COUNTER_WAT))
    WasmEngine(EngineSettings(cache_dir=cache)).load_module(wasm, sha256_digest(wasm))
    (entry,) = _cache_files(cache)
    good = entry.read_bytes()
    if damage == "flip":
        data = bytearray(good)
        data[len(data) // 2] ^= 0xFF
        entry.write_bytes(bytes(data))
    elif damage == "truncate":
        entry.write_bytes(good[: len(good) // 3])
    elif damage == "garbage":
        entry.write_bytes(b"not a compiled module at all")
    else:
        entry.with_suffix(".sha256").write_text("0" * 64)

    e = WasmEngine(EngineSettings(cache_dir=cache))
    e.start()
    module = e.load_module(wasm, sha256_digest(wasm))
    assert (e.compiled, e.cache_hits) == (1, 0)
    assert WasiCommand(e, module, "c").run([b"x"], [], b"").stdout == b"n=1\n"
    e.close()
    assert entry.read_bytes() == good  # rewritten


def test_cache_key_depends_on_engine_config(tmp_path: Path) -> None:
    a = EngineSettings(cache_dir=tmp_path, pooling=True).fingerprint()
    b = EngineSettings(cache_dir=tmp_path, pooling=False).fingerprint()
    assert a != b


def test_deadline_ticks() -> None:
    assert Limits(request_timeout=1.0).deadline_ticks >= 100
    assert Limits(request_timeout=0).deadline_ticks > 1 << 40


GROW_2MIB_WAT = """
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (if (i32.eq (memory.grow (i32.const 32)) (i32.const -1)) (then unreachable))))
"""


def test_limits_are_per_app_on_one_engine(engine: WasmEngine) -> None:
    """Apps sharing one engine (a multi-app host) keep their own memory limit and deadline."""
    grow = compile_wat(engine, GROW_2MIB_WAT)
    tight = WasiCommand(engine, grow, "tight", limits=Limits(max_instance_memory=1 << 20))
    roomy = WasiCommand(engine, grow, "roomy", limits=Limits(max_instance_memory=8 << 20))
    assert tight.run([b"x"], [], b"").trap is not None  # 2 MiB more is over its 1 MiB
    assert roomy.run([b"x"], [], b"").exit_code == 0
    loop = compile_wat(engine, LOOP_WAT)
    took = {}
    for timeout in (0.2, 0.8):
        t0 = time.monotonic()
        out = WasiCommand(engine, loop, "loop", limits=Limits(request_timeout=timeout)).run(
            [b"x"], [], b""
        )
        took[timeout] = time.monotonic() - t0
        assert out.timed_out and took[timeout] >= timeout
    # Each its own: the short deadline ends before the long one would (with room for a
    # loaded machine), the long one is not cut to the short one.
    assert took[0.2] < 0.8 and took[0.8] < 0.8 + 2.0, took


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("65536", 65536),
        ("64Mi", 64 << 20),
        ("64MiB", 64 << 20),
        ("64MB", 64 << 20),
        ("1g", 1 << 30),
        ("10k", 10240),
        ("2Gi", 2 << 30),
    ],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "abc", "-1", "1.5G", "64 Ti"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(WasmletError, match="invalid size"):
        parse_size(text)
