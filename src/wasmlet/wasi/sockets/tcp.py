"""`wasi:sockets/tcp` and `wasi:sockets/tcp-create-socket`: outbound TCP connections.

`start-connect` checks the remote address against the component's `allowed_outbound_hosts`
(`policy.py`); `start-bind` is always `access-denied`, as in Spin, so nothing listens. A
`tcp-socket` and the streams `finish-connect` returns share one `Conn`, closed when the guest
has dropped all of them, and at the latest when the instance ends.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import select
import socket
import weakref
from collections.abc import Callable
from typing import Any

from .._abi import BOOL, U8, U32, U64, Borrow, Enum, Err, Ok, Own, Result, Tuple
from .._iface import Interface
from .._state import current, table
from ..io import INPUT_STREAM, OUTPUT_STREAM, POLLABLE, Pollable, StreamFailed, new_pollable
from .network import NETWORK, Network
from .policy import connect_allowed
from .reactor import SocketPollable, poll_now
from .streams import Conn, TcpInputStream, TcpOutputStream
from .types import (
    ERROR_CODE,
    IP_ADDRESS_FAMILY,
    IP_SOCKET_ADDRESS,
    UNIT,
    Address,
    error_code,
    from_wit,
    sockaddr_to_wit,
)

log = logging.getLogger("wasmlet.sockets")

tcp_iface = Interface("wasi:sockets/tcp")
TCP_SOCKET = tcp_iface.resource("tcp-socket", lambda rep: table().pop(rep))
SHUTDOWN_TYPE = Enum("receive", "send", "both")


class TcpSocket:
    """A `tcp-socket`: its address family, its state, and the socket it shares with its
    streams."""

    def __init__(self, family: str, sock: socket.socket) -> None:
        self.family = family
        self.conn = Conn(sock)
        current().at_end(_closer(self.conn))  # closed with the instance at the latest
        self.state = "unbound"  # → connecting → connected | closed
        self.connect_error: str | None = None
        self.backlog = 128


def _closer(conn: Conn) -> Callable[[], None]:
    """What closes `conn` when the instance ends, if it is still open. It holds `conn` weakly:
    a reference (such as the bound `conn.close`) would keep the socket open until then, when
    it should close as soon as the guest has dropped the socket and its streams."""
    ref = weakref.ref(conn)

    def close() -> None:
        live = ref()
        if live is not None:
            live.close()

    return close


def _socket(rep: int) -> TcpSocket:
    return table().get(rep, TcpSocket)


tcp_create_iface = Interface("wasi:sockets/tcp-create-socket")


@tcp_create_iface.func(
    "create-tcp-socket", (IP_ADDRESS_FAMILY,), Result(Own(TCP_SOCKET), ERROR_CODE)
)
def _create_tcp_socket(family: str) -> object:
    af = socket.AF_INET if family == "ipv4" else socket.AF_INET6
    try:
        sock = socket.socket(af, socket.SOCK_STREAM)
    except OSError as e:
        return Err(error_code(e))
    try:
        sock.setblocking(False)
        if af == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    except OSError as e:
        sock.close()
        return Err(error_code(e))
    return Ok(table().push(TcpSocket(family, sock)))


@tcp_iface.func(
    "[method]tcp-socket.start-bind", (Borrow(TCP_SOCKET), Borrow(NETWORK), IP_SOCKET_ADDRESS), UNIT
)
def _start_bind(rep: int, net: int, addr: object) -> object:
    s = _socket(rep)
    table().get(net, Network)
    if s.state != "unbound":
        return Err("invalid-state")
    return Err("access-denied")  # as Spin: guests may not bind (and so never listen)


@tcp_iface.func("[method]tcp-socket.finish-bind", (Borrow(TCP_SOCKET),), UNIT)
def _finish_bind(rep: int) -> object:
    _socket(rep)
    return Err("not-in-progress")


def _check_remote(s: TcpSocket, ip: Address, port: int) -> str | None:
    if (ip.version == 4) != (s.family == "ipv4"):
        return "invalid-argument"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return "invalid-argument"  # the socket is IPv6-only
    if ip.is_unspecified or ip.is_multicast or port == 0:
        return "invalid-argument"
    if ip == ipaddress.IPv4Address("255.255.255.255"):
        return "invalid-argument"
    return None


@tcp_iface.func(
    "[method]tcp-socket.start-connect",
    (Borrow(TCP_SOCKET), Borrow(NETWORK), IP_SOCKET_ADDRESS),
    UNIT,
)
def _start_connect(rep: int, net: int, addr: object) -> object:
    s = _socket(rep)
    table().get(net, Network)
    ip, port, sockaddr = from_wit(addr)
    if not connect_allowed(ip, port):
        shown = f"[{ip}]" if ip.version == 6 else str(ip)
        log.info("outbound connection to tcp://%s:%d denied by allowed_outbound_hosts", shown, port)
        return Err("access-denied")
    if s.state == "connecting":
        return Err("concurrency-conflict")
    if s.state != "unbound":
        return Err("invalid-state")
    problem = _check_remote(s, ip, port)
    if problem is not None:
        return Err(problem)
    result = s.conn.sock.connect_ex(sockaddr)
    s.state = "connecting"
    if result not in (0, errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK):
        s.connect_error = error_code(result)
    return Ok()


@tcp_iface.func(
    "[method]tcp-socket.finish-connect",
    (Borrow(TCP_SOCKET),),
    Result(Tuple(Own(INPUT_STREAM), Own(OUTPUT_STREAM)), ERROR_CODE),
)
def _finish_connect(rep: int) -> object:
    s = _socket(rep)
    if s.state != "connecting":
        return Err("not-in-progress")
    conn = s.conn
    error = s.connect_error
    if error is None:
        if not poll_now(conn.fd, select.POLLOUT):
            return Err("would-block")
        number = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if number:
            error = error_code(number)
    if error is not None:
        s.state = "closed"
        return Err(error)
    s.state = "connected"
    t = table()
    return Ok((t.push(TcpInputStream(conn)), t.push(TcpOutputStream(conn))))


@tcp_iface.func("[method]tcp-socket.start-listen", (Borrow(TCP_SOCKET),), UNIT)
def _start_listen(rep: int) -> object:
    _socket(rep)
    return Err("invalid-state")  # listening needs a bound socket, and binding is refused


@tcp_iface.func("[method]tcp-socket.finish-listen", (Borrow(TCP_SOCKET),), UNIT)
def _finish_listen(rep: int) -> object:
    _socket(rep)
    return Err("not-in-progress")


@tcp_iface.func(
    "[method]tcp-socket.accept",
    (Borrow(TCP_SOCKET),),
    Result(Tuple(Own(TCP_SOCKET), Own(INPUT_STREAM), Own(OUTPUT_STREAM)), ERROR_CODE),
)
def _accept(rep: int) -> object:
    _socket(rep)
    return Err("invalid-state")  # never listening


def _address(rep: int, peer: bool) -> object:
    s = _socket(rep)
    if s.state != "connected" or s.conn.fd < 0:
        return Err("invalid-state")
    af = socket.AF_INET if s.family == "ipv4" else socket.AF_INET6
    try:
        sockaddr = s.conn.sock.getpeername() if peer else s.conn.sock.getsockname()
    except OSError as e:
        return Err(error_code(e))
    return Ok(sockaddr_to_wit(af, sockaddr))


ADDRESS_RESULT = Result(IP_SOCKET_ADDRESS, ERROR_CODE)
tcp_iface.func("[method]tcp-socket.local-address", (Borrow(TCP_SOCKET),), ADDRESS_RESULT)(
    lambda rep: _address(rep, False)
)
tcp_iface.func("[method]tcp-socket.remote-address", (Borrow(TCP_SOCKET),), ADDRESS_RESULT)(
    lambda rep: _address(rep, True)
)


@tcp_iface.func("[method]tcp-socket.is-listening", (Borrow(TCP_SOCKET),), BOOL)
def _is_listening(rep: int) -> bool:
    _socket(rep)
    return False


@tcp_iface.func("[method]tcp-socket.address-family", (Borrow(TCP_SOCKET),), IP_ADDRESS_FAMILY)
def _address_family(rep: int) -> str:
    return _socket(rep).family


@tcp_iface.func("[method]tcp-socket.set-listen-backlog-size", (Borrow(TCP_SOCKET), U64), UNIT)
def _set_listen_backlog_size(rep: int, value: int) -> object:
    s = _socket(rep)
    if value == 0:
        return Err("invalid-argument")
    s.backlog = min(value, 1 << 31)
    return Ok()


def _option(
    name: str,
    ty: Any,
    level: int | None,
    opt: int | None,
    *,
    scale: int = 1,
    highest: int = (1 << 31) - 1,
) -> None:
    """A getter and a setter over a real socket option (`level` None: the hop limit, per
    address family; `opt` None: the platform has no such option, `not-supported`)."""

    def where(s: TcpSocket) -> tuple[int, int] | None:
        if level is None:
            if s.family == "ipv4":
                return socket.IPPROTO_IP, socket.IP_TTL
            return socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS
        return None if opt is None else (level, opt)

    def get(rep: int) -> object:
        s = _socket(rep)
        option = where(s)
        if option is None:
            return Err("not-supported")
        try:
            value = s.conn.sock.getsockopt(*option)
        except OSError as e:
            return Err(error_code(e))
        return Ok(bool(value) if ty is BOOL else value * scale)

    def set_(rep: int, value: Any) -> object:
        s = _socket(rep)
        option = where(s)
        if option is None:
            return Err("not-supported")
        if ty is BOOL:
            raw = int(bool(value))
        elif value == 0:
            return Err("invalid-argument")
        else:
            raw = min(-(-value // scale), highest)  # whole units, rounded up, then clamped
        try:
            s.conn.sock.setsockopt(*option, raw)
        except OSError as e:
            return Err(error_code(e))
        return Ok()

    tcp_iface.func(f"[method]tcp-socket.{name}", (Borrow(TCP_SOCKET),), Result(ty, ERROR_CODE))(get)
    tcp_iface.func(f"[method]tcp-socket.set-{name}", (Borrow(TCP_SOCKET), ty), UNIT)(set_)


_SECOND = 1_000_000_000
_option("keep-alive-enabled", BOOL, socket.SOL_SOCKET, socket.SO_KEEPALIVE)
_option(
    "keep-alive-idle-time",
    U64,
    socket.IPPROTO_TCP,
    getattr(socket, "TCP_KEEPIDLE", None),
    scale=_SECOND,
    highest=32767,
)
_option(
    "keep-alive-interval",
    U64,
    socket.IPPROTO_TCP,
    getattr(socket, "TCP_KEEPINTVL", None),
    scale=_SECOND,
    highest=32767,
)
_option(
    "keep-alive-count", U32, socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPCNT", None), highest=127
)
_option("hop-limit", U8, None, None, highest=255)
_option("receive-buffer-size", U64, socket.SOL_SOCKET, socket.SO_RCVBUF)
_option("send-buffer-size", U64, socket.SOL_SOCKET, socket.SO_SNDBUF)


# Only in the 0.2.0-rc-2023-11-10 snapshot: IPv6 sockets are always IPv6-only here.
@tcp_iface.func("[method]tcp-socket.ipv6-only", (Borrow(TCP_SOCKET),), Result(BOOL, ERROR_CODE))
def _ipv6_only(rep: int) -> object:
    return Ok(True) if _socket(rep).family == "ipv6" else Err("not-supported")


@tcp_iface.func("[method]tcp-socket.set-ipv6-only", (Borrow(TCP_SOCKET), BOOL), UNIT)
def _set_ipv6_only(rep: int, value: bool) -> object:
    return Ok() if _socket(rep).family == "ipv6" and value else Err("not-supported")


@tcp_iface.func("[method]tcp-socket.subscribe", (Borrow(TCP_SOCKET),), Own(POLLABLE))
def _tcp_subscribe(rep: int) -> int:
    s = _socket(rep)
    if s.state == "connecting" and s.connect_error is None and s.conn.fd >= 0:
        return new_pollable(SocketPollable(s.conn, select.POLLOUT))
    return new_pollable(Pollable())


@tcp_iface.func("[method]tcp-socket.shutdown", (Borrow(TCP_SOCKET), SHUTDOWN_TYPE), UNIT)
def _shutdown(rep: int, how: str) -> object:
    s = _socket(rep)
    conn = s.conn
    if s.state != "connected" or conn.fd < 0:
        return Err("invalid-state")
    if how in ("send", "both") and not conn.write_shut and conn.write_error is None:
        with contextlib.suppress(StreamFailed):
            conn.drain(block=True)  # what the guest wrote goes before the FIN
    flag = {"receive": socket.SHUT_RD, "send": socket.SHUT_WR, "both": socket.SHUT_RDWR}[how]
    try:
        conn.sock.shutdown(flag)
    except OSError as e:
        if e.errno != errno.ENOTCONN:
            return Err(error_code(e))
    conn.read_shut |= how in ("receive", "both")
    conn.write_shut |= how in ("send", "both")
    return Ok()
