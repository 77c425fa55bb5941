"""The MQTT client behind the outbound MQTT factor, paho-mqtt (imported when a guest first
opens a connection, so that apps without MQTT do not load paho)."""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

CONNECT_TIMEOUT = 10.0
PUBLISH_TIMEOUT = 30.0
MAX_KEEP_ALIVE = 65535  # MQTT's keep-alive is a 16-bit number of seconds
SCHEMES = {"mqtt": (False, 1883), "tcp": (False, 1883), "mqtts": (True, 8883), "ssl": (True, 8883)}
QOS_LEVELS = {"at-most-once": 0, "at-least-once": 1, "exactly-once": 2}


@dataclass(frozen=True)
class Broker:
    """Where and how to connect, from the guest's address."""

    host: str
    port: int
    tls: bool
    client_id: str
    clean_session: bool = True


def parse_broker(address: str) -> Broker | None:
    """The broker named by `address`, or None when Spin would say `invalid-address`."""
    try:
        parts = urlsplit(address)
        port = parts.port
    except ValueError:
        return None
    scheme = SCHEMES.get(parts.scheme.lower())
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    if scheme is None or not parts.hostname or not query.get("client_id"):
        return None
    tls, default_port = scheme
    clean = query.get("clean_session", "true").lower() != "false"
    return Broker(parts.hostname, port or default_port, tls, query["client_id"], clean)


class _ConnectWaiter:
    """The outcome of the broker's CONNACK, set on paho's network thread."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.failure: str | None = None

    def on_connect(self, _client: Any, _data: Any, _flags: Any, reason: Any, _props: Any) -> None:
        self.failure = str(reason) if reason.is_failure else None
        self.done.set()


def _shutdown(client: paho.Client) -> None:
    client.disconnect()
    client.loop_stop()


class Publisher:
    """A guest's open connection: a paho client, connected on first publish."""

    def __init__(self, broker: Broker, username: str, password: str, keep_alive: int) -> None:
        self.broker = broker
        self.keep_alive = min(keep_alive, MAX_KEEP_ALIVE)
        self.waiter = _ConnectWaiter()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=broker.client_id,
            clean_session=broker.clean_session,
        )
        if username or password:
            self.client.username_pw_set(username, password or None)
        if broker.tls:
            self.client.tls_set()
        self.client.on_connect = self.waiter.on_connect
        self.connected = False
        weakref.finalize(self, _shutdown, self.client)

    def _connect(self) -> object | None:
        """Connect unless connected; the WIT error on failure."""
        if self.connected:
            return None
        self.waiter.done.clear()
        try:
            self.client.connect(self.broker.host, self.broker.port, self.keep_alive)
        except (OSError, ValueError) as e:
            return ("connection-failed", str(e))
        self.client.loop_start()
        failure = self.waiter.failure if self.waiter.done.wait(CONNECT_TIMEOUT) else "timed out"
        if failure is not None:
            _shutdown(self.client)
            return ("connection-failed", f"connecting to the broker: {failure}")
        self.connected = True
        return None

    def publish(self, topic: str, payload: bytes, qos: str) -> object | None:
        """Publish and wait for the broker; the WIT error on failure."""
        error = self._connect()
        if error is not None:
            return error
        try:
            info = self.client.publish(topic, payload, QOS_LEVELS[qos])
            info.wait_for_publish(PUBLISH_TIMEOUT)
        except (RuntimeError, ValueError) as e:
            return ("other", str(e))
        if not info.is_published():
            self.connected = False
            _shutdown(self.client)
            return ("connection-failed", "the broker did not acknowledge the message in time")
        return None
