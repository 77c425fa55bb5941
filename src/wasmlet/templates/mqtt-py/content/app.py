"""{{project-name}}: an MQTT message handler for Spin's MQTT trigger.

`handle_message` gets each message published to the app's topic (wildcards `+` and `#`
allowed) with its concrete topic, in a fresh instance. Raising `Err(Error_Other("..."))` ends
that message with an error (logged); any other exception traps the instance (also logged);
the next message is handled as usual. The interface is the trigger plugin's own
(`wit/mqtt.wit`): the Spin Python SDK has no MQTT trigger.
"""

import wit_world
from wit_world.imports import spin_mqtt_types


class WitWorld(wit_world.WitWorld):
    def handle_message(self, message: bytes, metadata: spin_mqtt_types.Metadata) -> None:
        print(f"{{project-name}} got {message.decode('utf-8', 'replace')} on {metadata.topic}")
