"""ttrpc, containerd's RPC protocol for shims: framing, a concurrent server and a client.

A frame is a 10-byte big-endian header (payload length, stream id, type, flags) and a
protobuf payload: `ttrpc.Request` from the client (odd stream ids), `ttrpc.Response` back.
containerd multiplexes every call on one connection and some calls block (`Wait`), so the
server runs each request as its own asyncio task and serialises only the writes.

An `Observer` sees each connection and each call begin and end: the task shim tells the
node's template about them, so that if the task's process dies, a successor can take its
connections over and answer the calls it left pending (`Server.adopt`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol, TypeVar

from google.protobuf.message import DecodeError, Message

from .proto import rpc_status_pb2, ttrpc_pb2

log = logging.getLogger("wasmlet.shim.ttrpc")

HEADER = struct.Struct(">IIBB")
TYPE_REQUEST = 1
TYPE_RESPONSE = 2
MAX_MESSAGE = 4 << 20

M = TypeVar("M", bound=Message)


class Code(IntEnum):
    """gRPC status codes (ttrpc uses the same)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14


class TtrpcError(Exception):
    def __init__(self, code: Code | int, message: str) -> None:
        super().__init__(message)
        self.code = Code(code)
        self.message = message

    def __str__(self) -> str:
        return f"{self.code.name.lower()}: {self.message}"


def frame(stream_id: int, message_type: int, payload: bytes, flags: int = 0) -> bytes:
    if len(payload) > MAX_MESSAGE:
        raise TtrpcError(Code.RESOURCE_EXHAUSTED, f"message of {len(payload)} bytes is too large")
    return HEADER.pack(len(payload), stream_id, message_type, flags) + payload


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, int, bytes]:
    """(stream id, type, payload); a too-large payload is skipped and given as b"" with
    a negative stream id so the caller can answer RESOURCE_EXHAUSTED."""
    length, stream_id, message_type, _flags = HEADER.unpack(await reader.readexactly(HEADER.size))
    if length > MAX_MESSAGE:
        remaining = length
        while remaining:
            remaining -= len(await reader.read(min(remaining, 1 << 16)) or b"x")
        return -stream_id, message_type, b""
    return stream_id, message_type, await reader.readexactly(length)


Handler = Callable[[Message], Awaitable[Message]]


class Observer(Protocol):
    """Told about the server's connections and calls (the template's records)."""

    def connected(self, conn: int, sock: socket.socket) -> None: ...

    def closed(self, conn: int) -> None: ...

    def begin(self, conn: int, stream: int, method: str, envelope: bytes) -> None: ...

    def end(self, conn: int, stream: int, ok: bool) -> None: ...


@dataclass(frozen=True)
class Method:
    request_type: type[Message]
    handler: Handler


class Server:
    """Serves registered services; unknown services and methods answer UNIMPLEMENTED."""

    def __init__(self, observer: Observer | None = None) -> None:
        self.services: dict[str, dict[str, Method]] = {}
        self.observer = observer
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._ids = itertools.count(1)

    def register(self, service: str, methods: dict[str, Method]) -> None:
        self.services.setdefault(service, {}).update(methods)

    async def start(self, sock: socket.socket) -> None:
        self._server = await asyncio.start_unix_server(self._connection, sock=sock)

    async def adopt(self, sock: socket.socket, conn: int, pending: list[tuple[int, bytes]]) -> None:
        """Serve an already accepted connection (of a process that died), first answering
        the calls it left pending: (stream id, ttrpc.Request bytes)."""
        reader, writer = await asyncio.open_unix_connection(sock=sock)
        task = asyncio.create_task(self._serve(reader, writer, conn, pending))
        self._connections.add(task)
        task.add_done_callback(self._connections.discard)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()

    @property
    def connections(self) -> int:
        return len(self._connections)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        current = asyncio.current_task()
        assert current is not None
        self._connections.add(current)
        try:
            await self._serve(reader, writer, next(self._ids), [])
        finally:
            self._connections.discard(current)

    async def _serve(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        conn: int,
        pending: list[tuple[int, bytes]],
    ) -> None:
        lock = asyncio.Lock()
        calls: set[asyncio.Task[None]] = set()
        observer = self.observer
        if observer is not None:
            observer.connected(conn, writer.get_extra_info("socket"))
        for stream_id, payload in pending:
            call = asyncio.create_task(self._call(writer, lock, stream_id, payload, conn))
            calls.add(call)
            call.add_done_callback(calls.discard)
        try:
            while True:
                stream_id, message_type, payload = await read_frame(reader)
                if message_type != TYPE_REQUEST:
                    continue
                if stream_id < 0:
                    error = TtrpcError(Code.RESOURCE_EXHAUSTED, "request too large")
                    await self._reply(writer, lock, -stream_id, _error_response(error))
                    continue
                call = asyncio.create_task(self._call(writer, lock, stream_id, payload, conn))
                calls.add(call)
                call.add_done_callback(calls.discard)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            for call in calls:
                call.cancel()
            writer.close()
            if observer is not None:
                observer.closed(conn)

    async def _call(
        self,
        writer: asyncio.StreamWriter,
        lock: asyncio.Lock,
        stream_id: int,
        payload: bytes,
        conn: int = 0,
    ) -> None:
        response = ttrpc_pb2.Response()
        began = False
        try:
            request = ttrpc_pb2.Request.FromString(payload)
            if self.observer is not None:
                self.observer.begin(conn, stream_id, request.method, payload)
                began = True
            method = self.services.get(request.service, {}).get(request.method)
            if method is None:
                raise TtrpcError(
                    Code.UNIMPLEMENTED, f"{request.service}/{request.method} is not implemented"
                )
            log.debug("call %s/%s", request.service, request.method)
            try:
                message = method.request_type.FromString(request.payload)
            except DecodeError as e:
                raise TtrpcError(Code.INVALID_ARGUMENT, f"cannot decode request: {e}") from None
            result = method.handler(message)
            if request.timeout_nano > 0:
                result = asyncio.wait_for(result, request.timeout_nano / 1e9)
            response.payload = (await result).SerializeToString()
        except TtrpcError as e:
            response = _error_response(e)
        except TimeoutError:
            response = _error_response(TtrpcError(Code.DEADLINE_EXCEEDED, "deadline exceeded"))
        except DecodeError as e:
            response = _error_response(TtrpcError(Code.INVALID_ARGUMENT, str(e)))
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.exception("handler failed")
            response = _error_response(TtrpcError(Code.INTERNAL, f"{type(e).__name__}: {e}"))
        await self._reply(writer, lock, stream_id, response)
        if began and self.observer is not None:
            self.observer.end(conn, stream_id, response.status.code == Code.OK)

    @staticmethod
    async def _reply(
        writer: asyncio.StreamWriter, lock: asyncio.Lock, stream_id: int, response: Message
    ) -> None:
        data = frame(stream_id, TYPE_RESPONSE, response.SerializeToString())
        async with lock:
            with contextlib.suppress(ConnectionError):
                writer.write(data)
                await writer.drain()


def _error_response(error: TtrpcError) -> ttrpc_pb2.Response:
    return ttrpc_pb2.Response(
        status=rpc_status_pb2.Status(code=int(error.code), message=error.message)
    )


class Client:
    """A ttrpc client on one unix socket connection; calls may run concurrently."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._ids = itertools.count(1, 2)
        self._pending: dict[int, asyncio.Future[ttrpc_pb2.Response]] = {}
        self._receiver: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    @property
    def connected(self) -> bool:
        return self._receiver is not None and not self._receiver.done()

    async def connect(self) -> None:
        self._reader, self._writer = await asyncio.open_unix_connection(self.path)
        self._receiver = asyncio.create_task(self._receive(self._reader))

    async def close(self) -> None:
        if self._receiver is not None:
            self._receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._receiver
        if self._writer is not None:
            self._writer.close()
        self._receiver = self._writer = self._reader = None

    async def _receive(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                stream_id, message_type, payload = await read_frame(reader)
                future = self._pending.pop(abs(stream_id), None)
                if future is None or future.done() or message_type != TYPE_RESPONSE:
                    continue
                try:
                    future.set_result(ttrpc_pb2.Response.FromString(payload))
                except DecodeError as e:
                    future.set_exception(TtrpcError(Code.INTERNAL, f"bad response: {e}"))
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(
                        TtrpcError(Code.UNAVAILABLE, f"connection to {self.path} closed")
                    )
            self._pending.clear()

    async def call(
        self,
        service: str,
        method: str,
        request: Message,
        response_type: type[M],
        timeout: float | None = None,
    ) -> M:
        if not self.connected:
            await self.connect()
        assert self._writer is not None
        stream_id = next(self._ids)
        future: asyncio.Future[ttrpc_pb2.Response] = asyncio.get_running_loop().create_future()
        self._pending[stream_id] = future
        envelope = ttrpc_pb2.Request(
            service=service,
            method=method,
            payload=request.SerializeToString(),
            timeout_nano=int(timeout * 1e9) if timeout else 0,
        )
        async with self._lock:
            self._writer.write(frame(stream_id, TYPE_REQUEST, envelope.SerializeToString()))
            await self._writer.drain()
        try:
            response = await asyncio.wait_for(future, timeout)
        finally:
            self._pending.pop(stream_id, None)
        if response.status.code != Code.OK:
            raise TtrpcError(response.status.code, response.status.message)
        return response_type.FromString(response.payload)
