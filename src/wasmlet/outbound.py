"""Outbound networking policy: Spin's `allowed_outbound_hosts`, decided once per component."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from .manifest import WELL_KNOWN_PORTS, AllowedHost, parse_allowed_host


@dataclass(frozen=True)
class OutboundPolicy:
    """Which outbound connections one component may make."""

    hosts: tuple[AllowedHost, ...] = ()

    @classmethod
    def parse(cls, entries: list[str]) -> OutboundPolicy:
        return cls(tuple(parse_allowed_host(e) for e in entries))

    def allows(self, scheme: str, host: str | None, port: int | None) -> bool:
        """`host` None means a relative request (Spin's `self`)."""
        scheme = scheme.lower()
        if port is None:
            port = WELL_KNOWN_PORTS.get(scheme)
        return any(_matches(h, scheme, host, port) for h in self.hosts)


def _matches(allowed: AllowedHost, scheme: str, host: str | None, port: int | None) -> bool:
    if allowed.scheme != "*" and allowed.scheme.lower() != scheme:
        return False
    if host is None:  # a relative request: the app itself
        return allowed.host in ("self", "self.alt")
    if not _host_matches(allowed, host.lower().strip("[]")):
        return False
    if allowed.ports is None:
        return True
    return port is not None and any(start <= port < end for start, end in allowed.ports)


def _host_matches(allowed: AllowedHost, host: str) -> bool:
    pattern = allowed.host.lower()
    if pattern == "*":
        return True
    if pattern == "self":
        return False
    if allowed.network is not None:
        try:
            return ipaddress.ip_address(host) in allowed.network
        except ValueError:
            return False
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return host == pattern
