"""The types wasi:sockets' interfaces share: error codes, IP addresses and socket addresses,
and the conversions between their WIT values and Python's (`ipaddress`, sockaddr tuples,
errno)."""

from __future__ import annotations

import errno
import ipaddress
import socket
from typing import Any

from .._abi import U8, U16, U32, Enum, Record, Result, Tuple, Variant

ERROR_CODES = (
    "unknown",
    "access-denied",
    "not-supported",
    "invalid-argument",
    "out-of-memory",
    "timeout",
    "concurrency-conflict",
    "not-in-progress",
    "would-block",
    "invalid-state",
    "new-socket-limit",
    "address-not-bindable",
    "address-in-use",
    "remote-unreachable",
    "connection-refused",
    "connection-reset",
    "connection-aborted",
    "datagram-too-large",
    "name-unresolvable",
    "temporary-resolver-failure",
    "permanent-resolver-failure",
)
ERROR_CODE = Enum(*ERROR_CODES)
IP_ADDRESS_FAMILY = Enum("ipv4", "ipv6")
IPV4_ADDRESS = Tuple(U8, U8, U8, U8)
IPV6_ADDRESS = Tuple(*(U16,) * 8)
IP_ADDRESS = Variant(("ipv4", IPV4_ADDRESS), ("ipv6", IPV6_ADDRESS))
IP_SOCKET_ADDRESS = Variant(
    ("ipv4", Record(("port", U16), ("address", IPV4_ADDRESS))),
    (
        "ipv6",
        Record(("port", U16), ("flow-info", U32), ("address", IPV6_ADDRESS), ("scope-id", U32)),
    ),
)
UNIT = Result(None, ERROR_CODE)


class SocketError:
    """The cause of a socket stream's `error` (`network-error-code` reads it)."""

    def __init__(self, code: str) -> None:
        self.code = code


_ERRNO_CODES = {
    errno.ECONNREFUSED: "connection-refused",
    errno.ECONNRESET: "connection-reset",
    errno.EPIPE: "connection-reset",
    errno.ECONNABORTED: "connection-aborted",
    errno.EHOSTUNREACH: "remote-unreachable",
    errno.ENETUNREACH: "remote-unreachable",
    errno.EHOSTDOWN: "remote-unreachable",
    errno.ENETDOWN: "remote-unreachable",
    errno.ETIMEDOUT: "timeout",
    errno.EACCES: "access-denied",
    errno.EPERM: "access-denied",
    errno.EADDRINUSE: "address-in-use",
    errno.EADDRNOTAVAIL: "address-not-bindable",
    errno.EMFILE: "new-socket-limit",
    errno.ENFILE: "new-socket-limit",
    errno.ENOMEM: "out-of-memory",
    errno.ENOBUFS: "out-of-memory",
    errno.EINVAL: "invalid-argument",
    errno.EAFNOSUPPORT: "not-supported",
    errno.EPROTONOSUPPORT: "not-supported",
    errno.EOPNOTSUPP: "not-supported",
    errno.EAGAIN: "would-block",
    errno.EINPROGRESS: "would-block",
    errno.ENOTCONN: "invalid-state",
    errno.EISCONN: "invalid-state",
}


def error_code(e: OSError | int) -> str:
    """The `error-code` for an OS error (or its errno)."""
    number = e if isinstance(e, int) else e.errno
    return _ERRNO_CODES.get(number or 0, "unknown")


Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def from_wit(addr: Any) -> tuple[Address, int, tuple[Any, ...]]:
    """An `ip-socket-address` as (ip, port, Python sockaddr)."""
    tag, fields = addr
    port = fields["port"]
    if tag == "ipv4":
        ip: Address = ipaddress.IPv4Address(bytes(fields["address"]))
        return ip, port, (str(ip), port)
    ip = ipaddress.IPv6Address(b"".join(x.to_bytes(2, "big") for x in fields["address"]))
    return ip, port, (str(ip), port, fields["flow-info"], fields["scope-id"])


def ip_to_wit(ip: Address) -> tuple[str, tuple[int, ...]]:
    """An IP address as an `ip-address`."""
    if ip.version == 4:
        return "ipv4", tuple(ip.packed)
    packed = ip.packed
    return "ipv6", tuple(int.from_bytes(packed[i : i + 2], "big") for i in range(0, 16, 2))


def sockaddr_to_wit(family: int, sockaddr: tuple[Any, ...]) -> tuple[str, dict[str, Any]]:
    """A Python sockaddr of a socket of `family` as an `ip-socket-address`."""
    ip = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
    tag, octets = ip_to_wit(ip)
    if family == socket.AF_INET:
        return tag, {"port": sockaddr[1], "address": octets}
    if ip.version == 4:  # never the case with IPV6_V6ONLY
        return "ipv4", {"port": sockaddr[1], "address": octets}
    return tag, {
        "port": sockaddr[1],
        "flow-info": sockaddr[2],
        "address": octets,
        "scope-id": sockaddr[3],
    }
