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

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..outbound import OutboundPolicy
from ..wasi import (
    LIST_U8,
    STRING,
    U64,
    Borrow,
    Enum,
    Err,
    Interface,
    Key,
    Ok,
    Own,
    Result,
    Variant,
    current,
    table,
)
from ._factor import ComponentContext, StatelessFactor
from ._outbound import address_allowed

if TYPE_CHECKING:
    from ._mqtt_client import Publisher


@dataclass(frozen=True)
class OutboundMqtt:
    """The outbound MQTT capability of one component."""

    policy: OutboundPolicy

    def open(
        self, address: str, username: str, password: str, keep_alive: int
    ) -> Publisher | str | tuple[str, str]:
        """A publisher, or the WIT error to return."""
        if not address_allowed(self.policy, address, "mqtt"):
            return ("connection-failed", f"address {address} is not permitted")
        from ._mqtt_client import Publisher, parse_broker  # loads paho on first use

        broker = parse_broker(address)
        if broker is None:
            return "invalid-address"
        return Publisher(broker, username, password, keep_alive)


KEY: Key[OutboundMqtt] = Key("outbound-mqtt")


def _open(address: str, username: str, password: str, keep_alive: int) -> object:
    opened = current().get(KEY).open(address, username, password, keep_alive)
    if isinstance(opened, (str, tuple)):
        return Err(opened)
    return Ok(table().push(opened))


def _publish(rep: int, topic: str, payload: bytes, qos: str) -> object:
    from ._mqtt_client import Publisher

    error = table().get(rep, Publisher).publish(topic, payload, qos)
    return Ok() if error is None else Err(error)


ERROR = Variant(
    ("invalid-address", None),
    ("too-many-connections", None),
    ("connection-failed", STRING),
    ("other", STRING),
)
QOS = Enum("at-most-once", "at-least-once", "exactly-once")

spin_mqtt = Interface("fermyon:spin/mqtt@2.0.0", blocking=True, api="mqtt")
CONNECTION = spin_mqtt.resource("connection", lambda rep: table().pop(rep))
spin_mqtt.func(
    "[static]connection.open", (STRING, STRING, STRING, U64), Result(Own(CONNECTION), ERROR)
)(_open)
spin_mqtt.func(
    "[method]connection.publish", (Borrow(CONNECTION), STRING, LIST_U8, QOS), Result(None, ERROR)
)(_publish)


class OutboundMqttFactor(StatelessFactor[OutboundMqtt]):
    key = KEY
    interfaces = (spin_mqtt,)

    def prepare(self, state: None, ctx: ComponentContext) -> OutboundMqtt:
        return OutboundMqtt(ctx.policy)


FACTOR = OutboundMqttFactor()
