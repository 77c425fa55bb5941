"""Which connections and name lookups a component may make: its `allowed_outbound_hosts`.

A connection to `<ip>:<port>` is allowed when an entry allows `tcp://<ip>:<port>`, or when the
instance resolved `ip` from a name and an entry allows `tcp://<name>:<port>`. A name may be
looked up when an entry with scheme `tcp` (or `*`) names it, whatever its ports.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Iterable
from dataclasses import dataclass

from ...outbound import OutboundPolicy
from .._state import InstanceState, Key, current
from .types import Address


@dataclass(frozen=True)
class OutboundSockets:
    """The outbound-sockets capability of one component: its `allowed_outbound_hosts`."""

    policy: OutboundPolicy


OUTBOUND_SOCKETS: Key[OutboundSockets] = Key("outbound-networking")

# Names each instance resolved, by address: connecting to such an address is allowed on the
# ports an entry allows for one of those names. Weak keys: it goes with the instance's state.
_resolved: weakref.WeakKeyDictionary[InstanceState, dict[Address, set[str]]] = (
    weakref.WeakKeyDictionary()
)


def _policy() -> OutboundPolicy:
    cap = current().find(OUTBOUND_SOCKETS)
    return cap.policy if cap is not None else OutboundPolicy()


def connect_allowed(ip: Address, port: int) -> bool:
    """Whether the calling instance may connect to `ip`:`port`."""
    policy = _policy()
    if policy.allows("tcp", str(ip), port):
        return True
    names = _resolved.get(current(), {}).get(ip, ())
    return any(policy.allows("tcp", name, port) for name in names)


def lookup_allowed(name: str) -> bool:
    """Whether an entry with scheme `tcp` or `*` names `name` (any port)."""
    return any(
        h.scheme in ("*", "tcp")
        and OutboundPolicy((dataclasses.replace(h, ports=None),)).allows("tcp", name, None)
        for h in _policy().hosts
    )


def remember_resolved(name: str, addresses: Iterable[Address]) -> None:
    """The calling instance resolved `name` to `addresses` (see `connect_allowed`)."""
    known = _resolved.setdefault(current(), {})
    for ip in addresses:
        known.setdefault(ip, set()).add(name)
