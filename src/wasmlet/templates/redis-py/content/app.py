"""{{project-name}}: a Redis message handler written with the Spin Python SDK.

`handle_message` gets the payload of each message published to the app's channel, in a
fresh instance. Raising ends that message with an error (logged); the next one is handled
as usual. The SDK also reaches Spin's host APIs: `spin_sdk.key_value`, `spin_sdk.variables`,
`spin_sdk.redis` (outbound Redis), `spin_sdk.http.send`, …
"""

from spin_sdk.wit import exports


class InboundRedis(exports.InboundRedis):
    def handle_message(self, message: bytes) -> None:
        print(f"{{project-name}} got: {message.decode('utf-8', 'replace')}")
