"""`wasi:sockets/ip-name-lookup`: lookups of the names `allowed_outbound_hosts` names.

Spin refuses every `resolve-addresses` (`permanent-resolver-failure`, wasmtime's answer when
lookups are off; spinframework/spin#2181 tracks allowing them). wasmlet looks up a name that an
allowed `tcp://` (or `*://`) entry names (port aside), and refuses the others as Spin refuses
all; the addresses it returns may then be connected to on the ports that such an entry allows
for the name (as #2181 proposes; `policy.py`). IP literals resolve to themselves. Lookups run
with the system resolver on a small thread pool; `resolve-next-address` is `would-block` until
the lookup is done.
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import logging
import socket

from .._abi import STRING, Borrow, Err, Ok, Option, Own, Result
from .._iface import Interface
from .._state import table
from ..io import POLLABLE, FuturePollable, new_pollable
from .network import NETWORK, Network
from .policy import lookup_allowed, remember_resolved
from .types import ERROR_CODE, IP_ADDRESS, Address, ip_to_wit

log = logging.getLogger("wasmlet.sockets")

lookup_iface = Interface("wasi:sockets/ip-name-lookup")
RESOLVE_STREAM = lookup_iface.resource("resolve-address-stream", lambda rep: table().pop(rep))

_resolver = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="wasmlet-resolve")
_FORBIDDEN = set(" \t\n\r#%/:<>?@[\\]^|")


class ResolveStream:
    """A `resolve-address-stream`: the addresses of one lookup, handed out one at a time."""

    def __init__(self, name: str | None, result: concurrent.futures.Future[list[Address]]) -> None:
        self.name = name  # None for an IP literal
        self.result = result
        self.given: list[Address] | None = None


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


def _lookup(name: str) -> list[Address]:
    try:
        infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise _ResolveError(_GAI_CODES.get(e.errno, "permanent-resolver-failure")) from e
    except UnicodeError as e:
        raise _ResolveError("invalid-argument") from e
    out: list[Address] = []
    for family, _, _, _, sockaddr in infos:
        # typeshed says getaddrinfo returns only these two; a resolver might say otherwise.
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue  # type: ignore[unreachable]
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # never handed out as IPv4-mapped (the WIT says so)
        if ip not in out:
            out.append(ip)
    return out


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
            remember_resolved(stream.name, addresses)
    if not stream.given:
        return Ok(None)
    return Ok(ip_to_wit(stream.given.pop(0)))


@lookup_iface.func(
    "[method]resolve-address-stream.subscribe", (Borrow(RESOLVE_STREAM),), Own(POLLABLE)
)
def _resolve_subscribe(rep: int) -> int:
    stream = table().get(rep, ResolveStream)
    return new_pollable(FuturePollable(stream.result))  # type: ignore[arg-type]
