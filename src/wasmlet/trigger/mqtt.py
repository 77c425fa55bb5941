"""The MQTT trigger, in the format of Spin's MQTT trigger plugin (spin-trigger-mqtt v0.7,
the version containerd-shim-spin runs).

```toml
[application.trigger.mqtt]
address = "mqtt://localhost:1883"    # {{ variables }} allowed
username = "admin"                   # "" and "": anonymous; {{ variables }} allowed
password = "{{ password }}"
keep_alive_interval = "30"           # seconds, a string

[[trigger.mqtt]]
component = "c"
topic = "messages-in"                # {{ variables }} allowed; wildcards go to the broker as is
qos = "1"                            # "0" | "1" | "2"
```

As in the plugin: one client connection per `[[trigger.mqtt]]`, which subscribes to its
topic at its QoS; each message runs the component in a fresh instance with the payload and
the message's concrete topic; a failing handler is logged and the message dropped. The client
(paho-mqtt, the plugin's library too) acknowledges QoS 1 and 2 messages when they arrive, so a
failing handler causes no redelivery. Messages of one trigger are handled in order. The client
reconnects by itself when the broker goes away (1 s to 5 s apart) and subscribes again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from ..errors import ManifestError
from ..executors import MqttMessageExecutor, mqtt_executor
from ..gate import RunGate
from ..locked import LockedApp
from ..observe import spans
from ..runtime import AppRuntime
from . import handle_message

log = logging.getLogger("wasmlet.mqtt")

SCHEMES = {"mqtt": 1883, "mqtts": 8883}
SETTINGS = ("address", "username", "password", "keep_alive_interval")


@dataclass
class Subscription:
    """One `[[trigger.mqtt]]`: what its client connects to and subscribes."""

    index: int
    component: str
    address: str
    username: str
    password: str
    keep_alive: int
    topic: str
    qos: int
    executor: MqttMessageExecutor | None = None
    connected: bool = False
    queue: asyncio.Queue[tuple[str, bytes]] = field(default_factory=asyncio.Queue)


def plan(app: LockedApp, render: Callable[[str], str]) -> list[Subscription]:
    """The app's MQTT triggers with their settings checked and templates rendered. Raises
    ManifestError naming the key of a missing or invalid setting."""
    settings = (app.metadata.get("triggers") or {}).get("mqtt") or {}
    triggers = app.triggers_of("mqtt")
    if not triggers:
        return []
    for key in SETTINGS:
        if not isinstance(settings.get(key), str):
            raise ManifestError(
                "spin.toml",
                f"application.trigger.mqtt.{key}",
                "missing: an MQTT trigger needs address, username, password and "
                "keep_alive_interval (strings) in [application.trigger.mqtt]",
            )
    address = render(settings["address"])
    parts = urlsplit(address)
    if parts.scheme not in SCHEMES or not parts.hostname:
        raise ManifestError(
            "spin.toml",
            "application.trigger.mqtt.address",
            f"{address!r} is not an mqtt:// or mqtts:// URL",
        )
    keep_alive = _whole(
        settings["keep_alive_interval"], "application.trigger.mqtt.keep_alive_interval"
    )
    out = []
    for i, trigger in enumerate(triggers):
        config = trigger.trigger_config
        where = f"trigger.mqtt[{i}]"
        topic = config.get("topic")
        if not isinstance(topic, str) or not topic:
            raise ManifestError("spin.toml", f"{where}.topic", "missing: the topic to subscribe to")
        qos = config.get("qos")
        if qos not in ("0", "1", "2"):
            raise ManifestError("spin.toml", f"{where}.qos", f'{qos!r} is not "0", "1" or "2"')
        component = config.get("component")
        if not isinstance(component, str):
            raise ManifestError("spin.toml", f"{where}.component", "missing")
        out.append(
            Subscription(
                index=i,
                component=component,
                address=address,
                username=render(settings["username"]),
                password=render(settings["password"]),
                keep_alive=keep_alive,
                topic=render(topic),
                qos=int(qos),
            )
        )
    return out


def _whole(text: str, key: str) -> int:
    if not text.strip().isdigit():
        raise ManifestError("spin.toml", key, f"{text!r} is not a whole number of seconds")
    return int(text)


class MqttTrigger:
    """Runs an app's MQTT triggers while `run` runs, on the app's guest pool under its run
    gate, as HTTP requests are."""

    def __init__(
        self,
        runtime: AppRuntime,
        pool: Executor,
        render: Callable[[str], str],
        gate: RunGate | None = None,
    ) -> None:
        self.pool = pool
        self.gate = gate
        self.subscriptions = plan(runtime.app, render)
        for sub in self.subscriptions:
            sub.executor = mqtt_executor(runtime, f"mqtt[{sub.index}]", sub.component)
        self.observer = spans.messages(runtime.app.name, "mqtt")  # None: all off

    @property
    def ready(self) -> bool:
        return all(sub.connected for sub in self.subscriptions)

    def describe(self) -> list[str]:
        lines = []
        for sub in self.subscriptions:
            lines.append(
                f"MQTT {sub.address} topic {sub.topic!r} (QoS {sub.qos}): [{sub.component}]"
            )
        return lines

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        clients = []
        try:
            for sub in self.subscriptions:
                sub.queue = asyncio.Queue()
                clients.append(self._connect(sub, loop))
            await asyncio.gather(*(self._consume(sub) for sub in self.subscriptions))
        finally:
            for client in clients:
                client.disconnect()
                client.loop_stop()

    def _connect(self, sub: Subscription, loop: asyncio.AbstractEventLoop) -> mqtt.Client:
        client = mqtt.Client(CallbackAPIVersion.VERSION2)
        if sub.username or sub.password:
            client.username_pw_set(sub.username, sub.password)
        parts = urlsplit(sub.address)
        if parts.scheme == "mqtts":
            client.tls_set()
        client.reconnect_delay_set(min_delay=1, max_delay=5)

        def on_connect(c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            if reason.is_failure:
                log.warning("MQTT %s: connection refused: %s", sub.address, reason)
                return
            c.subscribe(sub.topic, sub.qos)

        def on_subscribe(_c: mqtt.Client, _u: Any, _m: Any, reasons: Any, _p: Any) -> None:
            failed = [r for r in reasons if r.is_failure]
            if failed:
                log.error("MQTT %s: subscribing to %s refused: %s", sub.address, sub.topic, failed)
                return
            sub.connected = True  # messages now reach us (not before the broker's SUBACK)
            log.info("subscribed to %s on %s", sub.topic, sub.address)

        def on_disconnect(_c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            if sub.connected:
                log.warning("MQTT %s: disconnected (%s); reconnecting", sub.address, reason)
            sub.connected = False

        def on_message(_c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
            item = (message.topic, bytes(message.payload))
            loop.call_soon_threadsafe(sub.queue.put_nowait, item)

        client.on_connect = on_connect
        client.on_subscribe = on_subscribe
        client.on_disconnect = on_disconnect
        client.on_message = on_message
        port = parts.port or SCHEMES[parts.scheme]
        client.connect_async(parts.hostname or "", port, sub.keep_alive)
        client.loop_start()  # paho's network thread: connects, reconnects, acknowledges
        return client

    async def _consume(self, sub: Subscription) -> None:
        loop = asyncio.get_running_loop()
        while True:
            topic, payload = await sub.queue.get()
            assert sub.executor is not None
            handle = sub.executor.handle
            if self.observer is None:
                await loop.run_in_executor(
                    self.pool, handle_message, self.gate, handle, payload, topic
                )
                continue
            call = self.observer.received(topic)
            try:
                run = call.on_thread(handle_message, sub.component)
                await loop.run_in_executor(self.pool, run, self.gate, handle, payload, topic)
            finally:
                call.end()


__all__ = ["MqttTrigger", "plan"]
