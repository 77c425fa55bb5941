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
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import errno
import ipaddress
import logging
import os
import select
import selectors
import socket
import threading
import weakref
from dataclasses import dataclass
from typing import Any

from ..outbound import OutboundPolicy
from ._abi import (
    BOOL,
    STRING,
    U8,
    U16,
    U32,
    U64,
    Borrow,
    Enum,
    Err,
    HostTrap,
    Ok,
    Option,
    Own,
    Record,
    Result,
    Tuple,
    Variant,
)
from ._iface import Interface
from ._state import InstanceState, current, table
from .io import (
    ERROR,
    INPUT_STREAM,
    OUTPUT_STREAM,
    POLLABLE,
    FuturePollable,
    InputStream,
    IoError,
    OutputStream,
    Pollable,
    StreamClosed,
    StreamFailed,
    new_pollable,
    wait_any,
)

log = logging.getLogger("wasmlet.sockets")

CAPABILITY = "outbound_sockets"


@dataclass(frozen=True)
class OutboundSockets:
    """The outbound-sockets capability of one component: its `allowed_outbound_hosts`."""

    policy: OutboundPolicy


# -- types ------------------------------------------------------------------------------------

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
    number = e if isinstance(e, int) else e.errno
    return _ERRNO_CODES.get(number or 0, "unknown")


Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _from_wit(addr: Any) -> tuple[Address, int, tuple[Any, ...]]:
    """An `ip-socket-address` as (ip, port, Python sockaddr)."""
    tag, fields = addr
    port = fields["port"]
    if tag == "ipv4":
        ip: Address = ipaddress.IPv4Address(bytes(fields["address"]))
        return ip, port, (str(ip), port)
    ip = ipaddress.IPv6Address(b"".join(x.to_bytes(2, "big") for x in fields["address"]))
    return ip, port, (str(ip), port, fields["flow-info"], fields["scope-id"])


def _ip_to_wit(ip: Address) -> tuple[str, tuple[int, ...]]:
    if ip.version == 4:
        return "ipv4", tuple(ip.packed)
    packed = ip.packed
    return "ipv6", tuple(int.from_bytes(packed[i : i + 2], "big") for i in range(0, 16, 2))


def _sockaddr_to_wit(family: int, sockaddr: tuple[Any, ...]) -> tuple[str, dict[str, Any]]:
    ip = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
    tag, octets = _ip_to_wit(ip)
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


# -- policy -----------------------------------------------------------------------------------

# Names each instance resolved, by address: connecting to such an address is allowed on the
# ports an entry allows for one of those names.
_resolved: weakref.WeakKeyDictionary[InstanceState, dict[Address, set[str]]] = (
    weakref.WeakKeyDictionary()
)


def _policy() -> OutboundPolicy:
    cap = current().capabilities.get(CAPABILITY)
    return cap.policy if isinstance(cap, OutboundSockets) else OutboundPolicy()


def connect_allowed(ip: Address, port: int) -> bool:
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


# -- waiting on sockets -----------------------------------------------------------------------


def _resolve(future: concurrent.futures.Future[object]) -> None:
    with contextlib.suppress(concurrent.futures.InvalidStateError):  # done by another thread
        future.set_result(None)


class _Reactor:
    """One daemon thread that completes a future when a socket becomes readable or writable,
    so that io.py's `wait_any` can wait on sockets, pollables from HTTP and clocks together."""

    def __init__(self) -> None:
        self._lock = threading.RLock()  # a socket may be collected (and forgotten) anywhere
        self._selector: selectors.BaseSelector | None = None
        self._waiters: dict[int, list[tuple[int, concurrent.futures.Future[object]]]] = {}
        self._wake_r = self._wake_w = -1

    def _start(self) -> selectors.BaseSelector:
        if self._selector is None:
            self._selector = selectors.DefaultSelector()
            self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            self._selector.register(self._wake_r, selectors.EVENT_READ)
            threading.Thread(target=self._run, name="wasmlet-sockets", daemon=True).start()
        return self._selector

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError):  # already awake
            os.write(self._wake_w, b"\0")

    def _update(self, selector: selectors.BaseSelector, fd: int) -> None:
        waiters = self._waiters.get(fd)
        mask = 0
        for events, _ in waiters or ():
            mask |= events
        registered = fd in selector.get_map()
        try:
            if not mask:
                self._waiters.pop(fd, None)
                if registered:
                    selector.unregister(fd)
            elif registered:
                selector.modify(fd, mask)
            else:
                selector.register(fd, mask)
        except (OSError, ValueError, KeyError):  # closed meanwhile: wake its waiters to see
            for _, future in self._waiters.pop(fd, []):
                _resolve(future)
            with contextlib.suppress(Exception):
                selector.unregister(fd)

    def wait(self, fd: int, events: int) -> concurrent.futures.Future[object]:
        future: concurrent.futures.Future[object] = concurrent.futures.Future()
        with self._lock:
            selector = self._start()
            self._waiters.setdefault(fd, []).append((events, future))
            self._update(selector, fd)
        self._wake()
        return future

    def forget(self, fd: int) -> None:
        """Before `fd` closes: drop its registration and wake whoever waits on it."""
        with self._lock:
            waiters = self._waiters.pop(fd, [])
            if self._selector is not None and fd in self._selector.get_map():
                self._selector.unregister(fd)
        for _, future in waiters:
            _resolve(future)
        if waiters:
            self._wake()

    def _run(self) -> None:
        while True:
            try:
                self._once()
            except Exception:  # keep serving the other sockets
                log.exception("sockets reactor")

    def _once(self) -> None:
        assert self._selector is not None
        ready = self._selector.select()
        done: list[concurrent.futures.Future[object]] = []
        with self._lock:
            for key, mask in ready:
                if key.fd == self._wake_r:
                    with contextlib.suppress(BlockingIOError):
                        while os.read(self._wake_r, 512):
                            pass
                    continue
                keep = []
                for events, future in self._waiters.get(key.fd, ()):
                    if events & mask:
                        done.append(future)
                    else:
                        keep.append((events, future))
                self._waiters[key.fd] = keep
                self._update(self._selector, key.fd)
        for future in done:
            _resolve(future)


_reactor = _Reactor()


def _poll_now(fd: int, events: int) -> bool:
    """Whether `fd` is ready for `events` (select.POLLIN / POLLOUT) right now."""
    p = select.poll()
    p.register(fd, events)
    return bool(p.poll(0))


class _Conn:
    """A socket shared by a `tcp-socket` and its streams; closed when the last one goes."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.pending = bytearray()  # written by the guest, not yet taken by the kernel
        self.read_shut = False
        self.write_shut = False
        self.write_error: IoError | None = None

    def close(self) -> None:
        if self.fd >= 0:
            _reactor.forget(self.fd)
            self.fd = -1
            self.sock.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter shutdown
            self.close()

    def drain(self, block: bool) -> None:
        """Send what is pending; with `block`, wait (bounded by the deadline) until it is."""
        while self.pending:
            try:
                sent = self.sock.send(self.pending)
            except (BlockingIOError, InterruptedError):
                if not block:
                    return
                wait_any([SocketPollable(self, select.POLLOUT)])
                continue
            except OSError as e:
                self.pending.clear()
                self.write_error = IoError(f"TCP send failed: {e}", SocketError(error_code(e)))
                raise StreamFailed(self.write_error) from e
            del self.pending[:sent]


class SocketPollable(Pollable):
    def __init__(self, conn: _Conn, events: int) -> None:
        self.conn = conn
        self.events = events
        self._future: concurrent.futures.Future[object] | None = None

    def ready(self) -> bool:
        return self.conn.fd < 0 or _poll_now(self.conn.fd, self.events)

    def future(self) -> concurrent.futures.Future[object] | None:
        if self.conn.fd < 0:
            return None
        if self._future is None or self._future.done():
            kind = selectors.EVENT_READ if self.events & select.POLLIN else selectors.EVENT_WRITE
            self._future = _reactor.wait(self.conn.fd, kind)
        return self._future


# -- streams ----------------------------------------------------------------------------------

READ_CHUNK = 64 * 1024


class TcpInputStream(InputStream):
    def __init__(self, conn: _Conn) -> None:
        self.conn = conn
        self.eof = False

    def read(self, n: int) -> bytes:
        conn = self.conn
        if self.eof or conn.read_shut or conn.fd < 0:
            raise StreamClosed
        if n == 0:
            return b""
        try:
            data = conn.sock.recv(min(n, READ_CHUNK))
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError as e:
            self.eof = True
            raise StreamFailed(
                IoError(f"TCP receive failed: {e}", SocketError(error_code(e)))
            ) from e
        if not data:
            self.eof = True
            raise StreamClosed
        return data

    def blocking_read(self, n: int) -> bytes:
        while True:
            data = self.read(n)
            if data or n == 0:
                return data
            wait_any([self.pollable()])

    def pollable(self) -> Pollable:
        return SocketPollable(self.conn, select.POLLIN)


class TcpOutputStream(OutputStream):
    """Writes go to the kernel at once; what it does not take yet waits in `conn.pending`.

    `check-write` waits for the pending bytes to go before granting more (wasmlet's
    `output-stream.subscribe` is always ready, so a guest could not wait for it)."""

    budget = 64 * 1024

    def __init__(self, conn: _Conn) -> None:
        self.conn = conn

    def _usable(self) -> _Conn:
        conn = self.conn
        if conn.write_error is not None:
            raise StreamClosed  # the failure was reported once
        if conn.write_shut or conn.fd < 0:
            raise StreamClosed
        return conn

    def check_write(self) -> int:
        conn = self._usable()
        conn.drain(block=True)
        return self.budget

    def write(self, data: bytes) -> None:
        conn = self._usable()
        conn.pending += data
        conn.drain(block=False)

    def flush(self) -> None:
        self._usable().drain(block=True)

    def close(self) -> None:
        conn = self.conn
        if conn.pending and conn.fd >= 0 and conn.write_error is None:
            with contextlib.suppress(StreamFailed, HostTrap):
                conn.drain(block=True)

    def pollable(self) -> Pollable:
        return SocketPollable(self.conn, select.POLLOUT)


# -- wasi:sockets/network, instance-network ---------------------------------------------------

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


# -- wasi:sockets/tcp, tcp-create-socket ------------------------------------------------------

tcp_iface = Interface("wasi:sockets/tcp")
TCP_SOCKET = tcp_iface.resource("tcp-socket", lambda rep: table().pop(rep))
SHUTDOWN_TYPE = Enum("receive", "send", "both")


class TcpSocket:
    def __init__(self, family: str, sock: socket.socket) -> None:
        self.family = family
        self.conn = _Conn(sock)
        current().at_end(self.conn.close)  # closed with the instance at the latest
        self.state = "unbound"  # → connecting → connected | closed
        self.connect_error: str | None = None
        self.backlog = 128


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
    ip, port, sockaddr = _from_wit(addr)
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
        if not _poll_now(conn.fd, select.POLLOUT):
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
    return Ok(_sockaddr_to_wit(af, sockaddr))


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


# -- wasi:sockets/ip-name-lookup --------------------------------------------------------------

lookup_iface = Interface("wasi:sockets/ip-name-lookup")
RESOLVE_STREAM = lookup_iface.resource("resolve-address-stream", lambda rep: table().pop(rep))

_resolver = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="wasmlet-resolve")
_FORBIDDEN = set(" \t\n\r#%/:<>?@[\\]^|")


class ResolveStream:
    def __init__(self, name: str | None, result: concurrent.futures.Future[list[Address]]) -> None:
        self.name = name  # None for an IP literal
        self.result = result
        self.given: list[Address] | None = None


def _lookup(name: str) -> list[Address]:
    try:
        infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise _ResolveError(_GAI_CODES.get(e.errno, "permanent-resolver-failure")) from e
    except UnicodeError as e:
        raise _ResolveError("invalid-argument") from e
    out: list[Address] = []
    for family, _, _, _, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # never handed out as IPv4-mapped (the WIT says so)
        if ip not in out:
            out.append(ip)
    return out


class _ResolveError(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


_GAI_CODES = {
    socket.EAI_NONAME: "name-unresolvable",
    getattr(socket, "EAI_NODATA", socket.EAI_NONAME): "name-unresolvable",
    socket.EAI_AGAIN: "temporary-resolver-failure",
    socket.EAI_FAIL: "permanent-resolver-failure",
}


@lookup_iface.func(
    "resolve-addresses", (Borrow(NETWORK), STRING), Result(Own(RESOLVE_STREAM), ERROR_CODE)
)
def _resolve_addresses(net: int, name: str) -> object:
    table().get(net, Network)
    text = name.strip()
    literal = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    done: concurrent.futures.Future[list[Address]] = concurrent.futures.Future()
    try:
        done.set_result([ipaddress.ip_address(literal)])
        return Ok(table().push(ResolveStream(None, done)))
    except ValueError:
        pass
    if not text or _FORBIDDEN & set(text):
        return Err("invalid-argument")
    try:
        ascii_name = text.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return Err("invalid-argument")
    if not lookup_allowed(ascii_name):
        log.info(
            "name lookup of %s denied: no tcp:// entry of allowed_outbound_hosts names it",
            ascii_name,
        )
        return Err("permanent-resolver-failure")  # what Spin answers for every lookup
    return Ok(table().push(ResolveStream(ascii_name, _resolver.submit(_lookup, ascii_name))))


@lookup_iface.func(
    "[method]resolve-address-stream.resolve-next-address",
    (Borrow(RESOLVE_STREAM),),
    Result(Option(IP_ADDRESS), ERROR_CODE),
)
def _resolve_next_address(rep: int) -> object:
    stream = table().get(rep, ResolveStream)
    if stream.given is None:
        if not stream.result.done():
            return Err("would-block")
        try:
            addresses = stream.result.result()
        except _ResolveError as e:
            return Err(e.code)
        except Exception:
            log.debug("name lookup of %r failed", stream.name, exc_info=True)
            return Err("permanent-resolver-failure")
        stream.given = list(addresses)
        if stream.name is not None:
            known = _resolved.setdefault(current(), {})
            for ip in addresses:
                known.setdefault(ip, set()).add(stream.name)
    if not stream.given:
        return Ok(None)
    return Ok(_ip_to_wit(stream.given.pop(0)))


@lookup_iface.func(
    "[method]resolve-address-stream.subscribe", (Borrow(RESOLVE_STREAM),), Own(POLLABLE)
)
def _resolve_subscribe(rep: int) -> int:
    stream = table().get(rep, ResolveStream)
    return new_pollable(FuturePollable(stream.result))  # type: ignore[arg-type]


# -- wasi:sockets/udp, udp-create-socket: not supported ---------------------------------------

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


INTERFACES = [
    network_iface,
    instance_network_iface,
    tcp_iface,
    tcp_create_iface,
    lookup_iface,
    udp_iface,
    udp_create_iface,
]
