"""The Redis-triggered test component: spin-sdk 3.4.1's `InboundRedis` (world `spin-redis`,
exports `fermyon:spin/inbound-redis`), built with componentize-py.

On each message it publishes `got <message>` to the channel in its `reply_channel` variable
through the Redis server in its `redis_address` variable (outbound Redis, so every host API
is there as under HTTP). The message `fail` returns the interface's `error`; `trap` raises an
exception, which traps the component.
"""

from __future__ import annotations

from spin_sdk import redis, variables
from spin_sdk.wit import exports
from spin_sdk.wit.imports.redis_types import Error
from spin_sdk.wit.types import Err


class InboundRedis(exports.InboundRedis):
    def handle_message(self, message: bytes) -> None:
        if message == b"fail":
            raise Err(Error.ERROR)
        if message == b"trap":
            raise RuntimeError("asked to trap")
        with redis.open(variables.get("redis_address")) as connection:
            connection.publish(variables.get("reply_channel"), b"got " + message)
