"""A small blocking gRPC client over HTTP/2 on a unix socket, for containerd's API.

The shim reads images and content and writes precompiled artifacts through containerd's
gRPC services (containers, images, content, leases). Each call uses its own connection (the
socket is local, so a connection costs ~0.1 ms): unary, server-streaming and
bidirectional-in-lockstep calls (what content writes need). HTTP/2 comes from `h2`
(pure Python, sans-IO); the messages are the protobuf classes in `proto/`.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from typing import TypeVar
from urllib.parse import unquote

import h2.config
import h2.connection
import h2.events
import h2.settings
from google.protobuf.message import Message

M = TypeVar("M", bound=Message)
_PREFIX = struct.Struct(">BI")
_WINDOW = 16 << 20


class GrpcError(Exception):
    def __init__(self, code: int, message: str, method: str = "") -> None:
        super().__init__(f"{method}: {message} (grpc status {code})" if method else message)
        self.code = code
        self.message = message


NOT_FOUND = 5
ALREADY_EXISTS = 6
UNAVAILABLE = 14


class Call:
    """One gRPC call: send messages, receive messages, then the status."""

    def __init__(
        self, path: str, method: str, metadata: dict[str, str], timeout: float = 30.0
    ) -> None:
        self.method = method
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except OSError as e:
            self.sock.close()
            raise GrpcError(UNAVAILABLE, f"cannot connect to {path}: {e}", method) from None
        config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self.conn = h2.connection.H2Connection(config=config)
        self.conn.initiate_connection()
        self.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: _WINDOW})
        self.conn.increment_flow_control_window(_WINDOW)
        self.stream = self.conn.get_next_available_stream_id()
        headers = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", method),
            (":authority", "localhost"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            *metadata.items(),
        ]
        self.conn.send_headers(self.stream, headers)
        self._flush()
        self._buffer = bytearray()
        self._ended = False
        self._status: tuple[int, str] | None = None

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Call:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def _pump(self) -> None:
        """Read from the socket and process the events it brings."""
        data = self.sock.recv(1 << 16)
        if not data:
            self._ended = True
            self._status = self._status or (UNAVAILABLE, "connection closed")
            return
        for event in self.conn.receive_data(data):
            if isinstance(event, h2.events.DataReceived):
                self._buffer += event.data
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived):
                self._headers(event.headers)
            elif isinstance(event, h2.events.StreamEnded):
                self._ended = True
            elif isinstance(event, h2.events.StreamReset):
                self._ended = True
                self._status = (event.error_code or 2, "stream reset by server")
            elif isinstance(event, h2.events.ConnectionTerminated):
                self._ended = True
                self._status = self._status or (UNAVAILABLE, "connection terminated")
        self._flush()

    def _headers(self, headers: list[tuple[str, str]]) -> None:
        values = dict(headers)
        if "grpc-status" in values:
            self._status = (int(values["grpc-status"]), unquote(values.get("grpc-message", "")))
        elif values.get(":status", "200") != "200":
            self._status = (2, f"HTTP status {values[':status']}")

    def send(self, message: Message, end: bool = False) -> None:
        payload = message.SerializeToString()
        data = memoryview(_PREFIX.pack(0, len(payload)) + payload)
        while data:
            window = self.conn.local_flow_control_window(self.stream)
            if window <= 0:
                self._pump()
                if self._ended:
                    self._raise()
                continue
            size = min(window, self.conn.max_outbound_frame_size, len(data))
            self.conn.send_data(self.stream, bytes(data[:size]))
            data = data[size:]
            self._flush()
        if end:
            self.end()

    def end(self) -> None:
        self.conn.end_stream(self.stream)
        self._flush()

    def receive(self, response_type: type[M]) -> M | None:
        """The next message, or None when the call finished (raising on an error status)."""
        while True:
            if len(self._buffer) >= _PREFIX.size:
                compressed, length = _PREFIX.unpack_from(self._buffer)
                if len(self._buffer) >= _PREFIX.size + length:
                    if compressed:
                        raise GrpcError(12, "compressed responses are not supported", self.method)
                    payload = bytes(self._buffer[_PREFIX.size : _PREFIX.size + length])
                    del self._buffer[: _PREFIX.size + length]
                    return response_type.FromString(payload)
            if self._ended:
                self._raise()
                return None
            self._pump()

    def _raise(self) -> None:
        code, message = self._status or (0, "")
        if code != 0:
            raise GrpcError(code, message, self.method)


class Channel:
    """containerd's gRPC socket plus the metadata every call carries (the namespace)."""

    def __init__(self, path: str, namespace: str, timeout: float = 30.0) -> None:
        self.path = path
        self.namespace = namespace
        self.timeout = timeout

    def call(self, method: str, lease: str | None = None) -> Call:
        metadata = {"containerd-namespace": self.namespace}
        if lease:
            metadata["containerd-lease"] = lease
        return Call(self.path, method, metadata, self.timeout)

    def unary(
        self, method: str, request: Message, response_type: type[M], lease: str | None = None
    ) -> M:
        with self.call(method, lease) as call:
            call.send(request, end=True)
            response = call.receive(response_type)
            if response is None:
                raise GrpcError(2, "no response message", method)
            while call.receive(response_type) is not None:
                pass
            return response

    def stream(self, method: str, request: Message, response_type: type[M]) -> Iterator[M]:
        with self.call(method) as call:
            call.send(request, end=True)
            while (response := call.receive(response_type)) is not None:
                yield response
