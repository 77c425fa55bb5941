"""wasi:io 0.2 (error, poll, streams) implemented in Python.

Streams and pollables are plain Python objects in the instance's resource table; other host
pieces (HTTP bodies, stdio, clocks) create them. Blocking waits are bounded by the request's
deadline, so a guest cannot park a worker thread past `--request-timeout`.
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from collections.abc import Callable
from typing import Protocol

from ..gate import released
from ._abi import BOOL, LIST_U8, STRING, U32, U64, Borrow, Err, List, Ok, Own, Result
from ._abi import Variant as V
from ._calls import HostTrap
from ._iface import Interface
from ._state import current, table

log = logging.getLogger("wasmlet.guest")

# -- Python-side objects ---------------------------------------------------------------------


class IoError:
    def __init__(self, message: str, cause: object = None) -> None:
        self.message = message
        self.cause = cause  # e.g. an HTTP error-code for wasi:http's http-error-code


class StreamClosed(Exception):
    pass


class StreamFailed(Exception):
    def __init__(self, error: IoError) -> None:
        super().__init__(error.message)
        self.error = error


class Pollable:
    """Something a guest can wait for."""

    def ready(self) -> bool:
        return True

    def deadline(self) -> float | None:
        """Monotonic time at which it becomes ready by itself, if known."""
        return None

    def future(self) -> concurrent.futures.Future[object] | None:
        return None


class DeadlinePollable(Pollable):
    def __init__(self, at: float) -> None:
        self.at = at

    def ready(self) -> bool:
        return time.monotonic() >= self.at

    def deadline(self) -> float | None:
        return self.at


class FuturePollable(Pollable):
    def __init__(self, fut: concurrent.futures.Future[object]) -> None:
        self.fut = fut

    def ready(self) -> bool:
        return self.fut.done()

    def future(self) -> concurrent.futures.Future[object] | None:
        return self.fut


class InputStream:
    """A byte source. `read` returns at most n bytes, b"" when nothing is ready yet."""

    def read(self, n: int) -> bytes:
        raise StreamClosed

    def blocking_read(self, n: int) -> bytes:
        return self.read(n)

    def pollable(self) -> Pollable:
        return Pollable()


class BytesInputStream(InputStream):
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def read(self, n: int) -> bytes:
        if self.pos >= len(self.data):
            raise StreamClosed
        chunk = self.data[self.pos : self.pos + n]
        self.pos += len(chunk)
        return chunk


class IterInputStream(InputStream):
    """Bytes from a (blocking) iterator, e.g. an HTTP response body."""

    def __init__(self, chunks: Callable[[], bytes | None]) -> None:
        self._next = chunks
        self._buf = b""
        self._done = False

    def read(self, n: int) -> bytes:
        if not self._buf and not self._done:
            about_to_block()
            try:
                with released():  # the next chunk may take a while to arrive
                    chunk = self._next()
            except StreamFailed:
                raise
            except Exception as e:
                raise StreamFailed(IoError(str(e), e)) from e
            if chunk is None:
                self._done = True
            else:
                self._buf = chunk
        if not self._buf:
            raise StreamClosed
        out, self._buf = self._buf[:n], self._buf[n:]
        return out


class OutputStream:
    """A byte sink."""

    budget = 1 << 20

    def check_write(self) -> int:
        return self.budget

    def write(self, data: bytes) -> None:
        raise StreamClosed

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class BufferOutputStream(OutputStream):
    def __init__(self, limit: int | None = None) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.limit = limit
        self.closed = False

    def write(self, data: bytes) -> None:
        if self.closed:
            raise StreamClosed
        self.size += len(data)
        if self.limit is not None and self.size > self.limit:
            raise StreamFailed(IoError("body size limit exceeded"))
        self.chunks.append(data)

    def close(self) -> None:
        self.closed = True

    def getvalue(self) -> bytes:
        return b"".join(self.chunks)


class Sink(Protocol):
    """Where a streamed body goes (the HTTP trigger's response channel)."""

    def write(self, data: bytes) -> None: ...


class StreamingOutputStream(BufferOutputStream):
    """Buffers until `attach(sink)`, then forwards every write to the sink as it comes."""

    def __init__(self, limit: int | None = None) -> None:
        super().__init__(limit)
        self.sink: Sink | None = None
        self.sent = 0  # bytes forwarded to the sink

    def attach(self, sink: Sink) -> None:
        self.sink = sink
        pending, self.chunks = self.chunks, []
        for chunk in pending:
            self._forward(chunk)

    def write(self, data: bytes) -> None:
        super().write(data)
        if self.sink is not None:
            self.chunks.pop()
            self._forward(data)

    def _forward(self, data: bytes) -> None:
        assert self.sink is not None
        try:
            self.sink.write(data)
        except Exception as e:  # the client went away
            raise StreamFailed(IoError(f"cannot send the response body: {e or 'closed'}")) from e
        self.sent += len(data)


class LogOutputStream(OutputStream):
    """Guest stdout/stderr: complete lines go to the log with the component id."""

    def __init__(self, component_id: str, name: str) -> None:
        self.prefix = f"[{component_id}] " if name == "stdout" else f"[{component_id} {name}] "
        self.component_id, self.name = component_id, name
        self.pending = b""

    def write(self, data: bytes) -> None:
        self.pending += data
        *lines, self.pending = self.pending.split(b"\n")
        for line in lines:
            self._log(line)
        if len(self.pending) > 8192:
            self.close()

    def close(self) -> None:  # flush() keeps a partial line: print() writes "\n" separately
        if self.pending:
            self._log(self.pending)
            self.pending = b""

    def _log(self, line: bytes) -> None:
        text = line.decode("utf-8", "replace")
        # `guest`: what a JSON log line reports (logs.JsonFormatter)
        log.info("%s%s", self.prefix, text, extra={"guest": (self.component_id, self.name, text)})


# -- waiting ---------------------------------------------------------------------------------


def about_to_block() -> None:
    """Let the instance's response go out before the guest waits (see ResponseChannel)."""
    hook = current().before_block
    if hook is not None:
        hook()


def wait_any(pollables: list[Pollable]) -> list[int]:
    """Block until at least one is ready; return the indices of the ready ones."""
    ready = [i for i, p in enumerate(pollables) if p.ready()]
    if ready:
        return ready
    about_to_block()
    with released():  # another guest may run while this one waits
        return _wait(pollables, current().deadline)


def _wait(pollables: list[Pollable], limit: float | None) -> list[int]:
    while True:
        ready = [i for i, p in enumerate(pollables) if p.ready()]
        if ready:
            return ready
        now = time.monotonic()
        if limit is not None and now >= limit:
            raise HostTrap("request deadline exceeded while blocked in poll")
        wake = min((d for p in pollables if (d := p.deadline()) is not None), default=None)
        if limit is not None:
            wake = limit if wake is None else min(wake, limit)
        timeout = None if wake is None else max(0.0, wake - now)
        futures = [f for p in pollables if (f := p.future()) is not None]
        if futures:
            concurrent.futures.wait(futures, timeout, concurrent.futures.FIRST_COMPLETED)
        elif timeout is not None:
            time.sleep(timeout)
        else:
            raise HostTrap("poll would block forever: nothing can become ready")


# -- the interfaces --------------------------------------------------------------------------

error_iface = Interface("wasi:io/error")
ERROR = error_iface.resource("error", lambda rep: table().pop(rep))


@error_iface.func("[method]error.to-debug-string", (Borrow(ERROR),), STRING)
def _error_to_debug_string(rep: int) -> str:
    return table().get(rep, IoError).message


poll_iface = Interface("wasi:io/poll")
POLLABLE = poll_iface.resource("pollable", lambda rep: table().pop(rep))


@poll_iface.func("[method]pollable.ready", (Borrow(POLLABLE),), BOOL)
def _pollable_ready(rep: int) -> bool:
    return table().get(rep, Pollable).ready()


@poll_iface.func("[method]pollable.block", (Borrow(POLLABLE),))
def _pollable_block(rep: int) -> None:
    wait_any([table().get(rep, Pollable)])


@poll_iface.func("poll", (List(Borrow(POLLABLE)),), List(U32))
def _poll(reps: list[int]) -> list[int]:
    if not reps:
        raise HostTrap("poll: empty list")
    t = table()
    return wait_any([t.get(r, Pollable) for r in reps])


def new_pollable(p: Pollable) -> int:
    return table().push(p)


streams_iface = Interface("wasi:io/streams")
INPUT_STREAM = streams_iface.resource("input-stream", lambda rep: table().pop(rep))
OUTPUT_STREAM = streams_iface.resource("output-stream", lambda rep: _drop_output(rep))

STREAM_ERROR = V(("last-operation-failed", Own(ERROR)), ("closed", None))
READ_RESULT = Result(LIST_U8, STREAM_ERROR)
U64_RESULT = Result(U64, STREAM_ERROR)
UNIT_RESULT = Result(None, STREAM_ERROR)


def _drop_output(rep: int) -> None:
    stream = table().pop(rep)
    if isinstance(stream, OutputStream):
        stream.close()


def _stream_error(e: Exception) -> Err[object]:
    if isinstance(e, StreamFailed):
        return Err(("last-operation-failed", table().push(e.error)))
    return Err("closed")


def _read(rep: int, n: int, blocking: bool) -> Ok[bytes] | Err[object]:
    stream = table().get(rep, InputStream)
    try:
        data = stream.blocking_read(n) if blocking else stream.read(n)
    except (StreamClosed, StreamFailed) as e:
        return _stream_error(e)
    return Ok(data)


@streams_iface.func("[method]input-stream.read", (Borrow(INPUT_STREAM), U64), READ_RESULT)
def _input_read(rep: int, n: int) -> object:
    return _read(rep, n, False)


@streams_iface.func("[method]input-stream.blocking-read", (Borrow(INPUT_STREAM), U64), READ_RESULT)
def _input_blocking_read(rep: int, n: int) -> object:
    return _read(rep, n, True)


def _skip(rep: int, n: int) -> object:
    r = _read(rep, n, True)
    return Ok(len(r.value)) if isinstance(r, Ok) else r


streams_iface.func("[method]input-stream.skip", (Borrow(INPUT_STREAM), U64), U64_RESULT)(_skip)
streams_iface.func("[method]input-stream.blocking-skip", (Borrow(INPUT_STREAM), U64), U64_RESULT)(
    _skip
)


@streams_iface.func("[method]input-stream.subscribe", (Borrow(INPUT_STREAM),), Own(POLLABLE))
def _input_subscribe(rep: int) -> int:
    return new_pollable(table().get(rep, InputStream).pollable())


def _out(rep: int) -> OutputStream:
    return table().get(rep, OutputStream)


def _guard(fn: Callable[[], object]) -> object:
    try:
        value = fn()
    except (StreamClosed, StreamFailed) as e:
        return _stream_error(e)
    return Ok(value)


_UNIT_OK: Ok[None] = Ok()


# The calls every response body makes, without `_guard`'s closure.
@streams_iface.func("[method]output-stream.check-write", (Borrow(OUTPUT_STREAM),), U64_RESULT)
def _check_write(rep: int) -> object:
    stream = _out(rep)
    try:
        return Ok(stream.check_write())
    except (StreamClosed, StreamFailed) as e:
        return _stream_error(e)


@streams_iface.func("[method]output-stream.write", (Borrow(OUTPUT_STREAM), LIST_U8), UNIT_RESULT)
def _write(rep: int, data: bytes) -> object:
    stream = _out(rep)
    try:
        stream.write(data)
    except (StreamClosed, StreamFailed) as e:
        return _stream_error(e)
    return _UNIT_OK


@streams_iface.func(
    "[method]output-stream.blocking-write-and-flush", (Borrow(OUTPUT_STREAM), LIST_U8), UNIT_RESULT
)
def _blocking_write_and_flush(rep: int, data: bytes) -> object:
    stream = _out(rep)
    if len(data) > 4096:
        raise HostTrap("blocking-write-and-flush: more than 4096 bytes")
    try:
        stream.write(data)
        stream.flush()
    except (StreamClosed, StreamFailed) as e:
        return _stream_error(e)
    return _UNIT_OK


@streams_iface.func("[method]output-stream.flush", (Borrow(OUTPUT_STREAM),), UNIT_RESULT)
def _flush(rep: int) -> object:
    stream = _out(rep)
    try:
        stream.flush()
    except (StreamClosed, StreamFailed) as e:
        return _stream_error(e)
    return _UNIT_OK


streams_iface.func("[method]output-stream.blocking-flush", (Borrow(OUTPUT_STREAM),), UNIT_RESULT)(
    _flush
)


@streams_iface.func("[method]output-stream.subscribe", (Borrow(OUTPUT_STREAM),), Own(POLLABLE))
def _output_subscribe(rep: int) -> int:
    _out(rep)
    return new_pollable(Pollable())


@streams_iface.func("[method]output-stream.write-zeroes", (Borrow(OUTPUT_STREAM), U64), UNIT_RESULT)
def _write_zeroes(rep: int, n: int) -> object:
    return _guard(lambda: _out(rep).write(bytes(n)))


streams_iface.func(
    "[method]output-stream.blocking-write-zeroes-and-flush",
    (Borrow(OUTPUT_STREAM), U64),
    UNIT_RESULT,
)(_write_zeroes)


@streams_iface.func(
    "[method]output-stream.splice", (Borrow(OUTPUT_STREAM), Borrow(INPUT_STREAM), U64), U64_RESULT
)
def _splice(out_rep: int, in_rep: int, n: int) -> object:
    src = table().get(in_rep, InputStream)
    dst = _out(out_rep)

    def move() -> int:
        data = src.blocking_read(min(n, dst.check_write()))
        dst.write(data)
        return len(data)

    return _guard(move)


streams_iface.func(
    "[method]output-stream.blocking-splice",
    (Borrow(OUTPUT_STREAM), Borrow(INPUT_STREAM), U64),
    U64_RESULT,
)(_splice)


INTERFACES = [error_iface, poll_iface, streams_iface]
