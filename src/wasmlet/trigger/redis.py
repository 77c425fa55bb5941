"""The Redis trigger: Spin's `[[trigger.redis]]`, a component run per pub/sub message.

As in Spin (`crates/trigger-redis`): triggers are grouped by server address (the trigger's
`address`, else `[application.trigger.redis] address`; both may use `{{ variables }}`, as may
`channel`), one pub/sub connection per address subscribes to every channel, and each message
runs every component subscribed to its channel, concurrently, each in a fresh instance, with
the payload as raw bytes. Messages of one connection are handled in order, one after
another. A failing handler is logged with the channel and dropped: plain pub/sub has no
acknowledgement and no redelivery.

Unlike Spin, which exits when a connection ends (and leaves the restart to whoever runs it),
a lost connection is re-opened with a growing delay (0.1 s to 5 s): `wasmlet up` may serve
HTTP in the same process, which one Redis restart should not take down. Messages published
while no connection is subscribed are lost, as with any pub/sub subscriber.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio
import redis.exceptions

from ..errors import ManifestError
from ..executors import RedisMessageExecutor, redis_executor
from ..gate import RunGate
from ..locked import LockedApp
from ..observe import spans
from ..runtime import AppRuntime
from . import handle_message

log = logging.getLogger("wasmlet.redis")

SCHEMES = ("redis", "rediss")
FIRST_RETRY = 0.1  # seconds before reconnecting, doubled on each failure ...
LAST_RETRY = 5.0  # ... up to this


@dataclass
class Subscription:
    """The channels of one server, and the components each one runs."""

    address: str
    channels: dict[str, list[tuple[str, RedisMessageExecutor]]] = field(default_factory=dict)


def plan(app: LockedApp, render: Callable[[str], str]) -> dict[str, dict[str, list[str]]]:
    """address -> channel -> component ids, with templates rendered. Raises ManifestError
    naming the key of a missing or invalid address or channel."""
    default = (app.metadata.get("triggers") or {}).get("redis", {}).get("address")
    out: dict[str, dict[str, list[str]]] = {}
    for i, trigger in enumerate(app.triggers_of("redis")):
        config = trigger.trigger_config
        where = f"trigger.redis[{i}]"
        address_key = f"{where}.address"
        template = config.get("address")
        if template is None:
            template, address_key = default, "application.trigger.redis.address"
        if not isinstance(template, str) or not template:
            raise ManifestError(
                "spin.toml",
                address_key,
                "missing: a Redis trigger needs the server's address (redis://host:port), "
                "here or in [application.trigger.redis]",
            )
        address = render(template)
        if urlsplit(address).scheme not in SCHEMES:
            raise ManifestError(
                "spin.toml", address_key, f"{address!r} is not a redis:// or rediss:// URL"
            )
        channel = config.get("channel")
        if not isinstance(channel, str) or not channel:
            raise ManifestError(
                "spin.toml", f"{where}.channel", "missing: the channel to subscribe to"
            )
        component = config.get("component")
        if not isinstance(component, str):
            raise ManifestError("spin.toml", f"{where}.component", "missing")
        out.setdefault(address, {}).setdefault(render(channel), []).append(component)
    return out


class RedisTrigger:
    """Runs an app's Redis triggers while `run` runs (on the server's event loop), on the
    app's guest pool under its run gate, as HTTP requests are."""

    def __init__(
        self,
        runtime: AppRuntime,
        pool: Executor,
        render: Callable[[str], str],
        gate: RunGate | None = None,
    ) -> None:
        self.pool = pool
        self.gate = gate
        self.subscriptions: list[Subscription] = []
        for address, channels in plan(runtime.app, render).items():
            sub = Subscription(address)
            for channel, components in channels.items():
                sub.channels[channel] = [
                    (c, redis_executor(runtime, f"redis:{channel}", c)) for c in components
                ]
            self.subscriptions.append(sub)
        self.client_name = f"wasmlet:{runtime.app.name}"  # as CLIENT LIST shows the connection
        self.observer = spans.messages(runtime.app.name, "redis")  # None: all off
        self._subscribed: set[str] = set()  # addresses with a live subscription

    @property
    def ready(self) -> bool:
        """Every address has a live subscription (a pod is ready only then)."""
        return len(self._subscribed) == len(self.subscriptions)

    def describe(self) -> list[str]:
        """What is subscribed, as Spin prints it."""
        lines = []
        for sub in self.subscriptions:
            lines.append(f"Active Channels on {_safe(sub.address)}:")
            for channel, components in sub.channels.items():
                names = ",".join(c for c, _ in components)
                lines.append(f"\t{_safe(sub.address)}/{channel}: [{names}]")
        return lines

    async def run(self) -> None:
        """Subscribe and handle messages until cancelled."""
        await asyncio.gather(*(self._follow(sub) for sub in self.subscriptions))

    async def _follow(self, sub: Subscription) -> None:
        delay = FIRST_RETRY
        while True:
            client = redis.asyncio.from_url(sub.address, client_name=self.client_name)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(*sub.channels)
                    self._subscribed.add(sub.address)
                    log.info("subscribed to %s on %s", ", ".join(sub.channels), _safe(sub.address))
                    delay = FIRST_RETRY
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            await self._handle(sub, message)
                raise ConnectionError("the subscription ended")
            except (redis.exceptions.RedisError, OSError, ConnectionError) as e:
                self._subscribed.discard(sub.address)
                log.warning(
                    "Redis %s: %s; reconnecting in %.1f s", _safe(sub.address), e or "lost", delay
                )
            finally:
                self._subscribed.discard(sub.address)
                await client.aclose()
            await asyncio.sleep(delay)
            delay = min(delay * 2, LAST_RETRY)

    async def _handle(self, sub: Subscription, message: dict[str, Any]) -> None:
        channel = _text(message["channel"])
        payload = message["data"]
        payload = payload if isinstance(payload, bytes) else str(payload).encode()
        components = sub.channels.get(channel, [])
        loop = asyncio.get_running_loop()
        call = self.observer.received(channel) if self.observer is not None else None
        try:
            await asyncio.gather(
                *(
                    loop.run_in_executor(
                        self.pool,
                        handle_message if call is None else call.on_thread(handle_message, cid),
                        self.gate,
                        executor.handle,
                        payload,
                        channel,
                    )
                    for cid, executor in components
                )
            )
        finally:
            if call is not None:
                call.end()


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _safe(address: str) -> str:
    """An address as logged: without its password."""
    parts = urlsplit(address)
    if parts.password is None:
        return address
    netloc = parts.netloc.rsplit("@", 1)[1]
    return parts._replace(netloc=f"{parts.username or ''}:***@{netloc}").geturl()


__all__ = ["RedisTrigger", "plan"]
