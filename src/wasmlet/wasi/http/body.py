"""Bodies: incoming and outgoing bodies, future trailers, and the streaming hand-over of a
response to the trigger.

An incoming body (a request's, or an outbound request's response) is a wasi:io input stream
plus, once the stream has been read to its end, its trailers. An outgoing body is a
streaming output stream: it buffers what the guest writes until the response is handed to
the trigger (`start_response`), or the guest's outbound request to its transport
(`BodyPipe`), then forwards each write as it is made.
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from .._state import table
from ..io import BytesInputStream, InputStream, IterInputStream, StreamClosed, StreamingOutputStream

# Header or trailer fields as wasi:http carries them: names as given, values as bytes.
Entries = list[tuple[str, bytes]]


def decode_fields(entries: Entries) -> list[tuple[str, str]]:
    """Fields as the trigger sends them (HTTP/1.1 field values are latin-1)."""
    return [(k, v.decode("latin-1")) for k, v in entries]


class ResponseStream(Protocol):
    """Where a response goes as soon as the guest sets it (the HTTP trigger's channel)."""

    def start(self, status: int, headers: list[tuple[str, str]]) -> None: ...
    def write(self, data: bytes) -> None: ...
    def end(self, trailers: list[tuple[str, str]] | None = None) -> None: ...


# -- incoming --------------------------------------------------------------------------------


@dataclass
class IncomingBody:
    stream: InputStream
    taken: bool = False  # `stream` was handed to the guest (it may be taken once)
    trailers: Callable[[], Entries] | None = None  # complete once `stream` has ended


def request_body_stream(first: bytes, rest: Callable[[], bytes | None] | None) -> InputStream:
    """A request body's stream: what has arrived, then (if more is coming) the rest as the
    client sends it, read when the guest asks for it."""
    if rest is None:
        return BytesInputStream(first)
    pending = [first] if first else []

    def next_chunk() -> bytes | None:
        return pending.pop() if pending else rest()

    return IterInputStream(next_chunk)


@dataclass
class FutureTrailers:
    """The trailers of an incoming body: known once the rest of the body has been read
    (and discarded, if the guest did not read it)."""

    stream: InputStream  # the body's
    source: Callable[[], Entries] | None
    taken: bool = False

    def resolve(self) -> Entries | None:
        """Read the body to its end, then the trailers (None: there were none). Raises
        `StreamFailed` when the body cannot be read to its end."""
        while True:
            try:
                self.stream.blocking_read(65536)
            except StreamClosed:
                break
        fields = self.source() if self.source is not None else []
        return fields or None  # an empty trailer section is no trailers


# -- outgoing --------------------------------------------------------------------------------


class BodySink(Protocol):
    """Where an outgoing body goes once it streams: a response's channel, or a `BodyPipe`."""

    def write(self, data: bytes) -> None: ...
    def end(self, trailers: list[tuple[str, str]] | None = None) -> None: ...


class BodyAborted(Exception):
    """The guest dropped an outgoing body it had not finished."""


class BodyPipe:
    """An outbound request's body, read by its transport (on the sender's thread) while the
    guest is still writing it: the Spin SDKs call `outgoing-handler.handle` first and write
    the body after (Python's spin-sdk concurrently with waiting for the response), as
    wasmtime-wasi-http allows. Iterating yields the chunks as they are written and ends at
    `finish`; a body dropped unfinished, or no write for `timeout` seconds, raises, so the
    transport fails the request (an error-code for the guest) and frees its thread."""

    _END = object()

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._chunks: queue.SimpleQueue[object] = queue.SimpleQueue()

    def write(self, data: bytes) -> None:
        if data:
            self._chunks.put(bytes(data))

    def end(self, trailers: list[tuple[str, str]] | None = None) -> None:
        self._chunks.put(self._END)  # (outbound trailers are not sent: see docs)

    def abort(self) -> None:
        self._chunks.put(BodyAborted("the guest dropped the request body before finishing it"))

    def __iter__(self) -> Iterator[bytes]:
        while True:
            try:
                item = self._chunks.get(timeout=self.timeout)
            except queue.Empty:
                raise TimeoutError(f"no request body written for {self.timeout:g} s") from None
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, bytes)
            yield item


@dataclass
class OutgoingBody:
    stream: StreamingOutputStream = field(default_factory=StreamingOutputStream)
    write_taken: bool = False
    finished: bool = False
    trailers: Entries | None = None
    response_stream: BodySink | None = None  # set once the response (or request) streams

    def stream_to(self, sink: BodySink) -> None:
        """From now on, writes (and those so far) go to `sink`, and `finish` ends it."""
        self.response_stream = sink
        self.stream.attach(sink)
        if self.finished:
            sink.end(self.decoded_trailers())

    def finish(self, trailers: Entries | None) -> None:
        """`outgoing-body.finish`: the body is complete; if its response has started, the
        client gets the end of the body (and the trailers) now."""
        self.trailers = trailers
        self.finished = True
        self.stream.close()
        if self.response_stream is not None:
            self.response_stream.end(self.decoded_trailers())

    def decoded_trailers(self) -> list[tuple[str, str]] | None:
        return decode_fields(self.trailers) if self.trailers else None


def drop_outgoing_body(rep: int) -> None:
    """The guest dropped an `outgoing-body`: without `finish`, the body is incomplete."""
    body = table().pop(rep)
    if isinstance(body, OutgoingBody) and not body.finished:
        body.stream.close()
        if isinstance(body.response_stream, BodyPipe):
            body.response_stream.abort()


def start_response(
    stream: ResponseStream, status: int, headers: Entries, body: OutgoingBody | None
) -> None:
    """Hand a response the guest has just set to the trigger: the head goes at once, the
    body's writes so far and from now on follow, and its end if the guest finished it
    before setting the response."""
    stream.start(status, decode_fields(headers))
    if body is not None:
        body.stream_to(stream)
