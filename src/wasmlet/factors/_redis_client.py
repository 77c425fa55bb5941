"""The Redis client behind the outbound Redis factor (imported when a guest first opens a
connection, so that apps without Redis do not load redis-py).

redis-py's own reply parser cannot tell a simple string from a bulk one, so replies are read
with a small RESP2 parser that keeps that distinction.
"""

from __future__ import annotations

import weakref
from typing import Any

import redis
from redis._parsers import _RESP2Parser
from redis.connection import parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse, RedisError, ResponseError
from redis.utils import SENTINEL

from ._outbound import Failure

CONNECT_TIMEOUT = 10.0
COMMAND_TIMEOUT = 60.0


class Status(str):
    """A simple-string reply (`+OK`), as opposed to a bulk string."""


class _TypedParser(_RESP2Parser):
    """RESP2 replies as Python values, simple strings as `Status`, nothing decoded."""

    def _read_response(self, disable_decoding: bool = False, timeout: Any = SENTINEL) -> Any:
        buffer = self._buffer
        if buffer is None:
            raise RedisConnectionError("Connection closed.")
        raw = buffer.readline(timeout=timeout)
        if not raw:
            raise RedisConnectionError("Connection closed by server.")
        kind, rest = raw[:1], raw[1:]
        if kind == b"+":
            return Status(rest.decode("utf-8", "replace"))
        if kind == b"-":
            text = rest.decode("utf-8", "replace")
            error = _RESP2Parser.parse_error(text)  # on the class: the call is then redis-py's
            if isinstance(error, RedisConnectionError):
                raise error
            return ResponseError(text)
        if kind == b":":
            return int(rest)
        if kind == b"$":
            return None if rest == b"-1" else buffer.read(int(rest), timeout=timeout)
        if kind == b"*":
            if rest == b"-1":
                return None
            return [self._read_response(timeout=timeout) for _ in range(int(rest))]
        raise InvalidResponse(f"Protocol Error: {raw!r}")


class Client:
    """A guest's open connection."""

    def __init__(self, conn: redis.Connection) -> None:
        self.conn = conn
        weakref.finalize(self, conn.disconnect)

    def call(self, *args: str | bytes | int) -> Any:
        """Send a command, return its reply; raises Failure with the error's text."""
        try:
            self.conn.send_command(*args)
            reply = self.conn.read_response()
        except RedisError as e:
            raise Failure(str(e)) from None
        if isinstance(reply, ResponseError):
            raise Failure(str(reply))
        return reply

    def flat(self, *args: str | bytes | int) -> list[object]:
        """A command's reply as Spin's `list<redis-result>` (nested arrays flattened)."""
        return _flatten(self.call(*args), [])


def connect(address: str) -> Client:
    """A connected client; raises Failure with the WIT error ("invalid-address" or
    ("other", message))."""
    try:
        options = parse_url(address)
        connection_class = options.pop("connection_class", redis.Connection)
        options.update(  # RESP2 always: the parser speaks only that
            protocol=2,
            parser_class=_TypedParser,
            socket_connect_timeout=CONNECT_TIMEOUT,
            socket_timeout=COMMAND_TIMEOUT,
        )
        conn = connection_class(**options)
    except (ValueError, TypeError):
        raise Failure("invalid-address") from None
    try:
        conn.connect()
    except RedisError as e:
        raise Failure(("other", str(e))) from None
    return Client(conn)


def _flatten(reply: Any, out: list[object]) -> list[object]:
    if isinstance(reply, list):
        for item in reply:
            _flatten(item, out)
    elif isinstance(reply, ResponseError):
        raise Failure(str(reply))
    elif reply is None:
        out.append("nil")
    elif isinstance(reply, Status):
        out.append(("status", str(reply)))
    elif isinstance(reply, int):
        out.append(("int64", reply))
    else:
        out.append(("binary", bytes(reply)))
    return out
