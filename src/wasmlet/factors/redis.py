"""Outbound Redis: `fermyon:spin/redis@2.0.0`, with the redis PyPI client.

`open(address)` takes `redis://` or `rediss://` (TLS) URLs and checks them against the
component's `allowed_outbound_hosts` as Spin does (port 6379 by default): a denied, unparsable
or other address (e.g. `unix://`) is `invalid-address`; a connection failure is
`other(<message>)`. Each open is one TCP connection,
closed when the guest drops it or the instance ends. Every command failure is
`other(<message>)` (as in Spin, a server's WRONGTYPE reply is not `type-error`).

`execute` sends any command and returns its reply flattened as Spin does: nil, simple strings
(`status`), integers (`int64`) and bulk strings (`binary`); nested arrays are flattened in order.
The client (redis-py, with a RESP2 parser that keeps simple strings apart from bulk ones) is
`_redis_client.py`, imported when a guest first opens a connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..outbound import OutboundPolicy
from ..wasi import (
    LIST_U8,
    S64,
    STRING,
    U32,
    Borrow,
    Err,
    HostTrap,
    Interface,
    Key,
    List,
    Ok,
    Option,
    Own,
    Result,
    Variant,
    current,
    table,
)
from ._factor import ComponentContext, StatelessFactor
from ._outbound import Failure, address_allowed

if TYPE_CHECKING:
    from ._redis_client import Client


@dataclass(frozen=True)
class OutboundRedis:
    """The outbound Redis capability of one component."""

    policy: OutboundPolicy

    def open(self, address: str) -> Client:
        """A connected client; raises Failure with the WIT error."""
        scheme = urlsplit(address).scheme.lower()
        if scheme not in ("redis", "rediss") or not address_allowed(self.policy, address, "redis"):
            raise Failure("invalid-address")  # (`unix://` sockets name no host to allow)
        from ._redis_client import connect  # loads redis-py on first use

        return connect(address)


KEY: Key[OutboundRedis] = Key("outbound-redis")


def _client(rep: int) -> Client:
    from ._redis_client import Client

    return table().get(rep, Client)


def _guard(fn: Any) -> object:
    try:
        return Ok(fn())
    except Failure as e:
        return Err(("other", str(e.error)))
    except (UnicodeDecodeError, ValueError, HostTrap) as e:
        return Err(("other", str(e)))


def _unit(_reply: object) -> None:
    return None


def _open(address: str) -> object:
    try:
        return Ok(table().push(current().get(KEY).open(address)))
    except Failure as e:
        return Err(e.error)


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
    return _guard(lambda: _client(rep).flat(command, *args))


ERROR = Variant(
    ("invalid-address", None),
    ("too-many-connections", None),
    ("type-error", None),
    ("other", STRING),
)
PARAMETER = Variant(("int64", S64), ("binary", LIST_U8))
REDIS_RESULT = Variant(("nil", None), ("status", STRING), ("int64", S64), ("binary", LIST_U8))

spin_redis = Interface("fermyon:spin/redis@2.0.0", blocking=True, api="redis")
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


class OutboundRedisFactor(StatelessFactor[OutboundRedis]):
    key = KEY
    interfaces = (spin_redis,)

    def prepare(self, state: None, ctx: ComponentContext) -> OutboundRedis:
        return OutboundRedis(ctx.policy)


FACTOR = OutboundRedisFactor()
