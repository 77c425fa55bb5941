"""Outbound MQTT: `fermyon:spin/mqtt@2.0.0` (publish), with paho-mqtt (MQTT 3.1.1).

`open(address, username, password, keep-alive)` checks the address against the component's
`allowed_outbound_hosts` as Spin does (scheme `mqtt` by default, port 1883): denied is
`connection-failed("address <address> is not permitted")`. The address is read like Spin's
client (rumqttc) reads it: `mqtt://host[:port]?client_id=<id>` (`mqtts://` for TLS, port 8883;
`clean_session=false` is honoured, other parameters are ignored); no `client_id` or another
scheme is `invalid-address`. As in Spin, `open` does not touch the network: the connection is
made by the first `publish`, and a failure there (refused, CONNACK error, timeout) is
`connection-failed`.

`publish` returns once the broker has the message at the requested QoS: sent (at-most-once),
PUBACK (at-least-once) or PUBCOMP (exactly-once). The connection is closed when the guest drops
it or the instance ends.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import paho.mqtt.client as paho

from ..outbound import OutboundPolicy
from ..wasi._abi import LIST_U8, STRING, U64, Borrow, Enum, Err, Ok, Own, Result, Variant
from ..wasi._iface import Interface
from ..wasi._state import current, table
from ._outbound import address_allowed

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


class _Publisher:
    """A guest's open connection: a paho client, connected on first publish."""

    def __init__(self, broker: Broker, username: str, password: str, keep_alive: int) -> None:
        self.broker = broker
        self.keep_alive = min(keep_alive, MAX_KEEP_ALIVE)
        self.waiter = _ConnectWaiter()
        self.client = paho.Client(
            paho.CallbackAPIVersion.VERSION2,
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


@dataclass(frozen=True)
class OutboundMqtt:
    """The outbound MQTT capability of one component."""

    policy: OutboundPolicy

    def open(self, address: str, username: str, password: str, keep_alive: int) -> object:
        """A publisher, or the WIT error to return."""
        if not address_allowed(self.policy, address, "mqtt"):
            return ("connection-failed", f"address {address} is not permitted")
        broker = parse_broker(address)
        if broker is None:
            return "invalid-address"
        return _Publisher(broker, username, password, keep_alive)


def _mqtt() -> OutboundMqtt:
    return current().capability("outbound_mqtt")  # type: ignore[no-any-return]


def _open(address: str, username: str, password: str, keep_alive: int) -> object:
    opened = _mqtt().open(address, username, password, keep_alive)
    if isinstance(opened, _Publisher):
        return Ok(table().push(opened))
    return Err(opened)


def _publish(rep: int, topic: str, payload: bytes, qos: str) -> object:
    error = table().get(rep, _Publisher).publish(topic, payload, qos)
    return Ok() if error is None else Err(error)


ERROR = Variant(
    ("invalid-address", None),
    ("too-many-connections", None),
    ("connection-failed", STRING),
    ("other", STRING),
)
QOS = Enum(*QOS_LEVELS)

spin_mqtt = Interface("fermyon:spin/mqtt@2.0.0", blocking=True)
CONNECTION = spin_mqtt.resource("connection", lambda rep: table().pop(rep))
spin_mqtt.func(
    "[static]connection.open", (STRING, STRING, STRING, U64), Result(Own(CONNECTION), ERROR)
)(_open)
spin_mqtt.func(
    "[method]connection.publish", (Borrow(CONNECTION), STRING, LIST_U8, QOS), Result(None, ERROR)
)(_publish)

INTERFACES = [spin_mqtt]
