"""`wasi:sockets/udp` and `wasi:sockets/udp-create-socket`: not supported.

Spin allows `udp://` entries; wasmlet does not implement UDP. These interfaces are still
wasmlet's (not wasmtime's native ones) because they share the `network` resource type with
`tcp`, so a guest importing them links: `create-udp-socket` is `not-supported`, and the
methods of sockets that can never be created trap.
"""

from __future__ import annotations

from .._abi import Err, Own, Result
from .._calls import HostTrap
from .._iface import Interface
from .._state import table
from .types import ERROR_CODE, IP_ADDRESS_FAMILY

udp_iface = Interface("wasi:sockets/udp")
UDP_SOCKET = udp_iface.resource("udp-socket", lambda rep: table().pop(rep))
udp_iface.resource("incoming-datagram-stream", lambda rep: table().pop(rep))
udp_iface.resource("outgoing-datagram-stream", lambda rep: table().pop(rep))


def _no_udp(*_args: object) -> object:
    raise HostTrap("UDP sockets are not supported by wasmlet")


for _name in (
    "[method]udp-socket.start-bind",
    "[method]udp-socket.finish-bind",
    "[method]udp-socket.stream",
    "[method]udp-socket.local-address",
    "[method]udp-socket.remote-address",
    "[method]udp-socket.address-family",
    "[method]udp-socket.unicast-hop-limit",
    "[method]udp-socket.set-unicast-hop-limit",
    "[method]udp-socket.receive-buffer-size",
    "[method]udp-socket.set-receive-buffer-size",
    "[method]udp-socket.send-buffer-size",
    "[method]udp-socket.set-send-buffer-size",
    "[method]udp-socket.subscribe",
    "[method]udp-socket.ipv6-only",  # the 0.2.0-rc-2023-11-10 snapshot's
    "[method]udp-socket.set-ipv6-only",
    "[method]incoming-datagram-stream.receive",
    "[method]incoming-datagram-stream.subscribe",
    "[method]outgoing-datagram-stream.check-send",
    "[method]outgoing-datagram-stream.send",
    "[method]outgoing-datagram-stream.subscribe",
):
    udp_iface.func(_name)(_no_udp)  # unreachable: no udp-socket can be created

udp_create_iface = Interface("wasi:sockets/udp-create-socket")


@udp_create_iface.func(
    "create-udp-socket", (IP_ADDRESS_FAMILY,), Result(Own(UDP_SOCKET), ERROR_CODE)
)
def _create_udp_socket(family: str) -> object:
    return Err("not-supported")
