"""wasi:sockets 0.2 in Python: outbound TCP under the component's `allowed_outbound_hosts`.

wasmtime's native sockets cannot hand out wasmlet's wasi:io streams and pollables, so the whole
package is wasmlet's: `network`, `instance-network`, `tcp-create-socket`, `tcp`,
`ip-name-lookup`, and `udp`/`udp-create-socket` as clear refusals (every interface that shares
the `network` resource type must come from the same place, or guests importing it would not
link).

What Spin does, and so wasmlet:
- `start-connect` checks `tcp://<ip>:<port>` against `allowed_outbound_hosts` (entries with
  scheme `tcp` or `*`; CIDR networks, port ranges, `{{ variable }}` templates); denied →
  `access-denied`.
- `start-bind` is always `access-denied` (Spin refuses every bind), so nothing can listen.
- UDP is not supported here: `create-udp-socket` → `not-supported`.

Name lookups: Spin refuses every `resolve-addresses` (`permanent-resolver-failure`, wasmtime's
answer when lookups are off; spinframework/spin#2181 tracks allowing them). wasmlet allows the
lookup of a name that an allowed `tcp://` (or `*://`) entry names (port aside), with the same
refusal for the others; the addresses it returns may then be connected to on the ports that
such an entry allows for the name (as #2181 proposes). IP literals resolve to themselves.

Connections are real non-blocking sockets. Waiting (`subscribe`, blocking stream calls) goes
through io.py's `wait_any`, bounded by the request deadline; one reactor thread turns socket
readiness into futures for it. Sockets close when the guest drops the socket and its streams,
or when the instance ends (its resource table goes).

The modules, one concern each:
- `types`: error codes, address types, WIT ↔ Python conversions, errno mapping;
- `policy`: the `OutboundSockets` capability and the connect and lookup checks;
- `reactor`: the thread that turns socket readiness into futures, and socket pollables;
- `streams`: a connection's input and output streams and the socket they share;
- `network` (`network`, `instance-network`), `tcp` (`tcp`, `tcp-create-socket`), `lookup`
  (`ip-name-lookup`), `udp` (`udp`, `udp-create-socket`): the interfaces.
"""

from __future__ import annotations

from .._iface import Interface
from .lookup import lookup_iface
from .network import instance_network_iface, network_iface
from .policy import OUTBOUND_SOCKETS, OutboundSockets
from .tcp import tcp_create_iface, tcp_iface
from .udp import udp_create_iface, udp_iface

INTERFACES: list[Interface] = [
    network_iface,
    instance_network_iface,
    tcp_iface,
    tcp_create_iface,
    lookup_iface,
    udp_iface,
    udp_create_iface,
]

__all__ = ["INTERFACES", "OUTBOUND_SOCKETS", "OutboundSockets"]
