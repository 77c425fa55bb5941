"""`wasi:sockets/network` and `wasi:sockets/instance-network`.

The `network` resource type is declared here, once; `tcp` and `ip-name-lookup` borrow it.
"""

from __future__ import annotations

from .._abi import Borrow, Option, Own
from .._iface import Interface
from .._state import table
from ..io import ERROR, IoError
from .types import ERROR_CODE, SocketError

network_iface = Interface("wasi:sockets/network")
NETWORK = network_iface.resource("network", lambda rep: table().pop(rep))


class Network:
    """The instance's network handle (policy is the component's, not the handle's)."""


@network_iface.func("network-error-code", (Borrow(ERROR),), Option(ERROR_CODE))
def _network_error_code(rep: int) -> str | None:
    cause = table().get(rep, IoError).cause
    return cause.code if isinstance(cause, SocketError) else None


instance_network_iface = Interface("wasi:sockets/instance-network")


@instance_network_iface.func("instance-network", (), Own(NETWORK))
def _instance_network() -> int:
    return table().push(Network())
