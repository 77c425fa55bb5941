"""What the outbound database and messaging factors share: address checks and `Failure`.

Spin checks a guest-supplied address against the component's `allowed_outbound_hosts` as a
URL: the address's own scheme, host and port (the scheme's well-known port when it has none).
An address that does not parse as a URL with a host is retried with `<scheme>://` in front.
"""

from __future__ import annotations

from typing import NamedTuple
from urllib.parse import urlsplit

from ..outbound import OutboundPolicy


class Failure(Exception):
    """A host call failed with `error`, a WIT error value of its interface's error type (or
    a message the host function turns into one)."""

    def __init__(self, error: object) -> None:
        super().__init__(error)
        self.error = error


class Endpoint(NamedTuple):
    scheme: str
    host: str
    port: int | None


def parse_endpoint(address: str) -> Endpoint | None:
    """`scheme://host[:port]…` as an `Endpoint`, or None when there is no scheme or host."""
    try:
        parts = urlsplit(address)
        port = parts.port
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname:
        return None
    return Endpoint(parts.scheme.lower(), parts.hostname, port)


def address_allowed(policy: OutboundPolicy, address: str, scheme: str) -> bool:
    """Whether `policy` lets a component connect to `address` (default scheme `scheme`)."""
    endpoint = parse_endpoint(address) or parse_endpoint(f"{scheme}://{address}")
    if endpoint is None:
        return False
    return policy.allows(endpoint.scheme, endpoint.host, endpoint.port)
