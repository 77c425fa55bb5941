"""Outbound Redis: `fermyon:spin/redis@2.0.0`, with the redis PyPI client.

`open(address)` takes `redis://` or `rediss://` (TLS) URLs and checks them against the
component's `allowed_outbound_hosts` as Spin does (port 6379 by default): a denied, unparsable
or other address (e.g. `unix://`) is `invalid-address`; a connection failure is
`other(<message>)`. Each open is one TCP connection,
closed when the guest drops it or the instance ends. Every command failure is
`other(<message>)` (as in Spin, a server's WRONGTYPE reply is not `type-error`).

`execute` sends any command and returns its reply flattened as Spin does: nil, simple strings
(`status`), integers (`int64`) and bulk strings (`binary`); nested arrays are flattened in order.
redis-py's own reply parser cannot tell a simple string from a bulk one, so replies are read
with a small RESP2 parser that keeps that distinction.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import redis
from redis._parsers import _RESP2Parser
from redis.connection import parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse, RedisError, ResponseError
from redis.utils import SENTINEL

from ..outbound import OutboundPolicy
from ..wasi._abi import (
    LIST_U8,
    S64,
    STRING,
    U32,
    Borrow,
    Err,
    HostTrap,
    List,
    Ok,
    Option,
    Own,
    Result,
    Variant,
)
from ..wasi._iface import Interface
from ..wasi._state import current, table
from ._outbound import address_allowed

CONNECT_TIMEOUT = 10.0
COMMAND_TIMEOUT = 60.0


class Status(str):
    """A simple-string reply (`+OK`), as opposed to a bulk string."""


class _TypedParser(_RESP2Parser):
    """RESP2 replies as Python values, simple strings as `Status`, nothing decoded."""

    def _read_response(self, disable_decoding: bool = False, timeout: Any = SENTINEL) -> Any:
        raw = self._buffer.readline(timeout=timeout)
        if not raw:
            raise RedisConnectionError("Connection closed by server.")
        kind, rest = raw[:1], raw[1:]
        if kind == b"+":
            return Status(rest.decode("utf-8", "replace"))
        if kind == b"-":
            text = rest.decode("utf-8", "replace")
            error = self.parse_error(text)
            if isinstance(error, RedisConnectionError):
                raise error
            return ResponseError(text)
        if kind == b":":
            return int(rest)
        if kind == b"$":
            return None if rest == b"-1" else self._buffer.read(int(rest), timeout=timeout)
        if kind == b"*":
            if rest == b"-1":
                return None
            return [self._read_response(timeout=timeout) for _ in range(int(rest))]
        raise InvalidResponse(f"Protocol Error: {raw!r}")


class _Client:
    """A guest's open connection."""

    def __init__(self, conn: redis.Connection) -> None:
        self.conn = conn
        weakref.finalize(self, conn.disconnect)

    def call(self, *args: str | bytes | int) -> Any:
        self.conn.send_command(*args)
        return self.conn.read_response()


@dataclass(frozen=True)
class OutboundRedis:
    """The outbound Redis capability of one component."""

    policy: OutboundPolicy

    def open(self, address: str) -> _Client | object:
        """A connected client, or the WIT error to return."""
        scheme = urlsplit(address).scheme.lower()
        if scheme not in ("redis", "rediss") or not address_allowed(self.policy, address, "redis"):
            return "invalid-address"  # (`unix://` sockets name no host to allow)
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
            return "invalid-address"
        try:
            conn.connect()
        except RedisError as e:
            return ("other", str(e))
        return _Client(conn)


def _redis() -> OutboundRedis:
    return current().capability("outbound_redis")  # type: ignore[no-any-return]


def _client(rep: int) -> _Client:
    return table().get(rep, _Client)


def _guard(fn: Any) -> object:
    try:
        return Ok(fn())
    except (RedisError, UnicodeDecodeError, ValueError, HostTrap) as e:
        return Err(("other", str(e)))


def _unit(_reply: object) -> None:
    return None


def _flatten(reply: Any, out: list[object]) -> list[object]:
    """A reply as Spin's `list<redis-result>`."""
    if isinstance(reply, list):
        for item in reply:
            _flatten(item, out)
    elif isinstance(reply, ResponseError):
        raise reply
    elif reply is None:
        out.append("nil")
    elif isinstance(reply, Status):
        out.append(("status", str(reply)))
    elif isinstance(reply, int):
        out.append(("int64", reply))
    else:
        out.append(("binary", bytes(reply)))
    return out


def _open(address: str) -> object:
    opened = _redis().open(address)
    if isinstance(opened, _Client):
        return Ok(table().push(opened))
    return Err(opened)


def _publish(rep: int, channel: str, payload: bytes) -> object:
    return _guard(lambda: _unit(_client(rep).call("PUBLISH", channel, payload)))


def _get(rep: int, key: str) -> object:
    return _guard(lambda: _client(rep).call("GET", key))


def _set(rep: int, key: str, value: bytes) -> object:
    return _guard(lambda: _unit(_client(rep).call("SET", key, value)))


def _incr(rep: int, key: str) -> object:
    return _guard(lambda: int(_client(rep).call("INCRBY", key, 1)))


def _del(rep: int, keys: list[str]) -> object:
    return _guard(lambda: int(_client(rep).call("DEL", *keys)))


def _sadd(rep: int, key: str, values: list[str]) -> object:
    return _guard(lambda: int(_client(rep).call("SADD", key, *values)))


def _smembers(rep: int, key: str) -> object:
    return _guard(lambda: [bytes(m).decode() for m in _client(rep).call("SMEMBERS", key)])


def _srem(rep: int, key: str, values: list[str]) -> object:
    return _guard(lambda: int(_client(rep).call("SREM", key, *values)))


def _execute(rep: int, command: str, arguments: list[tuple[str, Any]]) -> object:
    args = [payload for _tag, payload in arguments]  # int64 → int, binary → bytes
    return _guard(lambda: _flatten(_client(rep).call(command, *args), []))


ERROR = Variant(
    ("invalid-address", None),
    ("too-many-connections", None),
    ("type-error", None),
    ("other", STRING),
)
PARAMETER = Variant(("int64", S64), ("binary", LIST_U8))
REDIS_RESULT = Variant(("nil", None), ("status", STRING), ("int64", S64), ("binary", LIST_U8))

spin_redis = Interface("fermyon:spin/redis@2.0.0", blocking=True)
CONNECTION = spin_redis.resource("connection", lambda rep: table().pop(rep))
_CONN = Borrow(CONNECTION)
spin_redis.func("[static]connection.open", (STRING,), Result(Own(CONNECTION), ERROR))(_open)
spin_redis.func("[method]connection.publish", (_CONN, STRING, LIST_U8), Result(None, ERROR))(
    _publish
)
spin_redis.func("[method]connection.get", (_CONN, STRING), Result(Option(LIST_U8), ERROR))(_get)
spin_redis.func("[method]connection.set", (_CONN, STRING, LIST_U8), Result(None, ERROR))(_set)
spin_redis.func("[method]connection.incr", (_CONN, STRING), Result(S64, ERROR))(_incr)
spin_redis.func("[method]connection.del", (_CONN, List(STRING)), Result(U32, ERROR))(_del)
spin_redis.func("[method]connection.sadd", (_CONN, STRING, List(STRING)), Result(U32, ERROR))(_sadd)
spin_redis.func("[method]connection.smembers", (_CONN, STRING), Result(List(STRING), ERROR))(
    _smembers
)
spin_redis.func("[method]connection.srem", (_CONN, STRING, List(STRING)), Result(U32, ERROR))(_srem)
spin_redis.func(
    "[method]connection.execute",
    (_CONN, STRING, List(PARAMETER)),
    Result(List(REDIS_RESULT), ERROR),
)(_execute)

INTERFACES = [spin_redis]
