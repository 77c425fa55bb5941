"""Outbound networking: wasi:sockets (outbound TCP) under `allowed_outbound_hosts`."""

from __future__ import annotations

from ..wasi.sockets import INTERFACES as SOCKETS
from ..wasi.sockets import OUTBOUND_SOCKETS, OutboundSockets
from ._factor import ComponentContext, StatelessFactor


class OutboundNetworkingFactor(StatelessFactor[OutboundSockets]):
    key = OUTBOUND_SOCKETS
    interfaces = tuple(SOCKETS)

    def prepare(self, state: None, ctx: ComponentContext) -> OutboundSockets:
        return OutboundSockets(ctx.policy)


FACTOR = OutboundNetworkingFactor()
