"""The MQTT-triggered test component: the MQTT trigger plugin's world `spin-mqtt`
(wit/mqtt.wit, package `spin:mqtt-trigger`, a world-level `handle-message` export), built
with componentize-py.

Each message is printed to stdout as `got <payload> on <topic>` (guest stdout reaches
wasmlet's log). The payload `fail` returns the interface's `error`; `trap` raises an
exception, which traps the component.
"""

from __future__ import annotations

import wit_world
from wit_world.imports import spin_mqtt_types
from wit_world.types import Err


class WitWorld(wit_world.WitWorld):
    def handle_message(self, message: bytes, metadata: spin_mqtt_types.Metadata) -> None:
        if message == b"fail":
            raise Err(spin_mqtt_types.Error_Other("asked to fail"))
        if message == b"trap":
            raise RuntimeError("asked to trap")
        print(f"got {message.decode()} on {metadata.topic}", flush=True)
