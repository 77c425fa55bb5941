"""The checks of single manifest values (Spin's `schema/v2.rs` validators): id syntax,
variable names, labels, versions, digests, templates, file patterns, and the syntax of
`allowed_outbound_hosts` (parsed into `AllowedHost`) and the deprecated `allowed_http_hosts`.
Each raises a pydantic error whose message the loader shows as is; the annotated types at
the end of each section are what the models in `_schema.py` use."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, NoReturn
from urllib.parse import urlsplit

from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

from ._templates import TemplateError, parse_template, quote

# Pydantic error type of every error raised by the checks below; `_load` shows its message as is.
ERROR_TYPE = "wasmlet"
# Error type for a value that fits none of the shapes a field accepts.
SHAPE_ERROR_TYPE = "wasmlet_shape"


def fail(message: str) -> NoReturn:
    """Reject the value being validated with `message` (shown to the user verbatim)."""
    raise PydanticCustomError(ERROR_TYPE, message)


# -- identifiers ------------------------------------------------------------------------------


def id_error(value: str, delim: str, lower: bool) -> str | None:
    """Why `value` is not a Spin id of words separated by `delim` (None when it is).

    Spin's rules (`spin-serde` `Id`): non-empty words of ASCII letters and digits, each starting
    with a letter (later words may start with a digit), each all-lowercase or all-uppercase
    (all-lowercase when `lower`); `:` may appear inside words.
    """
    if not value:
        return "must not be empty"
    wrong = {"-": "_", "_": "-"}.get(delim)
    if wrong and wrong in value:
        return f"words must be separated with {delim!r}, not {wrong!r}"
    for i, word in enumerate(value.split(delim)):
        if not word:
            return f"{delim!r}-separated words must not be empty"
        first = word[0]
        if not (_is_ascii_alpha(first) or (i > 0 and _is_ascii_digit(first))):
            return f"{delim!r}-separated words must start with an ASCII letter; got {first!r}"
        upper = first.isupper()
        for ch in word[1:]:
            if _is_ascii_digit(ch) or ch == ":":
                continue
            if not _is_ascii_alpha(ch):
                return f"words may only contain letters, digits and ':'; got {ch!r}"
            if ch.isupper() != upper:
                return f"words must be all lowercase or all uppercase; got {word!r}"
        if lower and upper:
            return "must be all lowercase"
    return None


def _is_ascii_alpha(ch: str) -> bool:
    return ch.isascii() and ch.isalpha()


def _is_ascii_digit(ch: str) -> bool:
    return ch.isascii() and ch.isdigit()


def is_kebab_id(value: str) -> bool:
    return id_error(value, "-", lower=False) is None


def _check_kebab(what: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        reason = id_error(value, "-", lower=False)
        if reason:
            fail(f"invalid {what} {quote(value)}: {reason} (ids are kebab-case, like my-component)")
        return value

    return check


def _check_variable_name(value: str) -> str:
    reason = id_error(value, "_", lower=True)
    if reason:
        fail(f"invalid variable name {quote(value)}: {reason} (names are lower_snake_case)")
    return value


def _check_label(value: str) -> str:
    if id_error(value, "-", lower=False) and id_error(value, "_", lower=False):
        fail(f"invalid label {quote(value)}: expected kebab-case or snake_case")
    return value


ComponentId = Annotated[str, AfterValidator(_check_kebab("component id"))]
VariableName = Annotated[str, AfterValidator(_check_variable_name)]
Label = Annotated[str, AfterValidator(_check_label)]

_SEMVER = re.compile(
    r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?"
)
_SHA256 = re.compile(r"sha256:[0-9a-f]{64}")


def _check_semver(value: str) -> str:
    if not _SEMVER.fullmatch(value):
        fail(f'invalid version {quote(value)}: expected a semantic version like "1.2.3"')
    return value


def _check_package(value: str) -> str:
    namespace, sep, name = value.partition(":")
    if not sep or id_error(namespace, "-", lower=True) or id_error(name, "-", lower=True):
        fail(f'invalid package name {quote(value)}: expected "namespace:name"')
    return value


def _check_digest(value: str) -> str:
    if not _SHA256.fullmatch(value):
        fail(f'invalid digest {quote(value)}: expected "sha256:" and 64 lowercase hex digits')
    return value


def _check_dependency_name(value: str) -> str:
    """A plain kebab id, or `ns:pkg[/interface][@version]` (`spin-serde` `DependencyName`)."""
    if ":" not in value and "/" not in value:
        return _check_kebab("dependency name")(value)
    name, at, version = value.partition("@")
    package, slash, interface = name.partition("/")
    bad = (
        (at and not _SEMVER.fullmatch(version))
        or (slash and id_error(interface, "-", lower=False))
        or not _is_package(package)
    )
    if bad:
        fail(
            f"invalid dependency name {quote(value)}: expected a kebab-case name or "
            '"namespace:package[/interface][@version]"'
        )
    return value


def _is_package(value: str) -> bool:
    namespace, sep, name = value.partition(":")
    return bool(sep) and not id_error(namespace, "-", True) and not id_error(name, "-", True)


SemVer = Annotated[str, AfterValidator(_check_semver)]
PackageName = Annotated[str, AfterValidator(_check_package)]
Digest = Annotated[str, AfterValidator(_check_digest)]
DependencyName = Annotated[str, AfterValidator(_check_dependency_name)]


# -- templates and file patterns ----------------------------------------------------------------


def _check_template(value: str) -> str:
    try:
        parse_template(value)
    except TemplateError as e:
        fail(str(e))
    return value


def _check_file_pattern(value: str) -> str:
    for suffix, what in (
        ("..", "a parent directory path (..)"),
        (".", "a current directory path (.)"),
    ):
        if value == suffix or value.endswith("/" + suffix):
            fail(
                f"file pattern {quote(value)} can't end in {what}; to include a directory use "
                '{ source = "dir", destination = "/dir" } or a glob ending in **/*'
            )
    return value


TemplateStr = Annotated[str, AfterValidator(_check_template)]
FilePattern = Annotated[str, AfterValidator(_check_file_pattern)]


# -- allowed outbound hosts ---------------------------------------------------------------------

WELL_KNOWN_PORTS = {
    "http": 80,
    "https": 443,
    "redis": 6379,
    "postgres": 5432,
    "mysql": 3306,
    "mqtt": 1883,
}
ALLOW_ALL = "insecure:allow-all"


@dataclass(frozen=True)
class AllowedHost:
    """One parsed `allowed_outbound_hosts` entry.

    `scheme` is a scheme or `*`; `host` is `*`, `*.domain` (any subdomain), `self`, a CIDR
    network or a literal host; `ports` is `None` for any port, else a list of half-open
    `(start, end)` ranges (a single port `p` is `(p, p + 1)`).
    """

    scheme: str
    host: str
    ports: tuple[tuple[int, int], ...] | None
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None


def parse_allowed_host(text: str) -> AllowedHost:
    """Parse `scheme://host[:port]`; raise `ValueError` saying what is wrong."""
    url = text.strip()
    if url == ALLOW_ALL:
        raise ValueError(
            f'{quote(ALLOW_ALL)} is not allowed; use "*://*:*" if you really want to allow '
            "all outbound traffic"
        )
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(
            f"{quote(text)} does not contain a scheme: hosts must look like "
            '<scheme>://<host>[:<port>], e.g. "https://example.com" or "*://*:*"'
        )
    if rest.startswith("["):  # an IPv6 address: [::1]:port
        host, bracket, after = rest[1:].partition("]")
        if not bracket or (after and after[0] not in ":/"):
            raise ValueError(f"{quote(text)}: an IPv6 host must look like [::1] or [::1]:port")
        port_text = after.removeprefix(":")
    else:
        host, _, port_text = rest.rpartition(":") if ":" in rest else (rest, "", "")
    port_text, slash, path = port_text.partition("/")
    if slash and path:
        raise ValueError(f"{quote(text)} has a path; only scheme, host and port are allowed")
    _check_scheme(scheme, text)
    return AllowedHost(
        scheme=scheme,
        host=_parse_host(host.strip(), text),
        ports=_parse_ports(port_text, scheme, text),
        network=_parse_network(host.strip()),
    )


def _check_scheme(scheme: str, text: str) -> None:
    if scheme == "*":
        return
    if scheme.startswith("{"):
        raise ValueError(f"{quote(text)}: scheme lists are not supported")
    if not scheme or not scheme.isalpha():
        raise ValueError(f"{quote(text)}: scheme {quote(scheme)} must be letters or '*'")


def _parse_network(host: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(host, strict=False)
    except ValueError:
        return None


def _parse_host(host: str, text: str) -> str:
    if host in ("*", "self", "self.alt"):
        return "self" if host == "self.alt" else host
    if host.startswith("{"):
        raise ValueError(f"{quote(text)}: host lists are not supported")
    if _parse_network(host) is not None:
        return host
    if "/" in host.rstrip("/"):
        raise ValueError(f"{quote(text)}: hosts must not contain paths")
    host = host.rstrip("/")
    if not host:
        raise ValueError(f"{quote(text)} has no host")
    domain = host[2:] if host.startswith("*.") else host
    if "*" in domain:
        raise ValueError(f"{quote(text)}: '*' is allowed only as the whole host or as '*.domain'")
    return host


def _parse_ports(port: str, scheme: str, text: str) -> tuple[tuple[int, int], ...] | None:
    if not port:
        default = WELL_KNOWN_PORTS.get(scheme)
        if default is None:
            raise ValueError(
                f"{quote(text)} has no port and scheme {quote(scheme)} has no default port"
            )
        return ((default, default + 1),)
    if port == "*":
        return None
    if port.startswith("{"):
        raise ValueError(f"{quote(text)}: port lists are not supported")
    start, dots, end = port.partition("..")
    if dots:
        return ((_port_number(start, text), _port_number(end, text)),)
    number = _port_number(port, text)
    return ((number, number + 1),)


def _port_number(value: str, text: str) -> int:
    if not value.isascii() or not value.isdigit() or int(value) > 65535:
        raise ValueError(f"{quote(text)}: port {quote(value)} is not a number from 0 to 65535")
    return int(value)


def _check_outbound_host(value: str) -> str:
    try:
        if parse_template(value).is_literal:
            parse_allowed_host(value)
        # else: the syntax is checked once the variables have values
    except TemplateError as e:
        fail(str(e))
    except ValueError as e:
        fail(f"invalid allowed outbound host: {e}")
    return value


OutboundHost = Annotated[str, AfterValidator(_check_outbound_host)]


# -- deprecated allowed_http_hosts ------------------------------------------------------------


@dataclass(frozen=True)
class _HttpHost:
    domain: str
    port: int | None


def _parse_http_host(text: str) -> _HttpHost:
    """Parse an `allowed_http_hosts` entry: `host[:port]` or `http(s)://host[:port][/]`."""
    schemed = "//" in text
    try:
        url = urlsplit(text if schemed else f"http://{text}")
        port = url.port
    except ValueError:
        raise ValueError(f"{quote(text)} isn't a valid host or host:port string") from None
    if schemed and url.scheme not in ("http", "https"):
        raise ValueError(f"{quote(text)} isn't a valid HTTP host URL")
    if not url.hostname:
        raise ValueError(f"{quote(text)} doesn't contain a host name")
    if url.path not in ("", "/") or url.query or url.fragment:
        raise ValueError(f"{quote(text)} contains a path, should be host and optional port only")
    host = url.netloc.rsplit("@", 1)[-1]
    domain = host.rsplit(":", 1)[0] if port is not None else host
    return _HttpHost(domain, port)


def _check_http_host(value: str) -> str:
    if value != ALLOW_ALL:
        try:
            _parse_http_host(value)
        except ValueError as e:
            fail(f"invalid allowed HTTP host: {e}")
    return value


HttpHost = Annotated[str, AfterValidator(_check_http_host)]


def convert_allowed_http_hosts(hosts: list[str], allow_database_access: bool) -> list[str]:
    """Spin's conversion of the deprecated `allowed_http_hosts` to `allowed_outbound_hosts`.

    With `allow_database_access` (version 1 manifests without `allowed_outbound_hosts`) the
    old default of any Redis, MySQL and PostgreSQL host comes first.
    """
    out = ["redis://*:*", "mysql://*:*", "postgres://*:*"] if allow_database_access else []
    if ALLOW_ALL in hosts:
        return [*out, "http://*:*", "https://*:*", "http://self"]
    for text in hosts:
        parsed = _parse_http_host(text)
        if parsed.domain == "self":
            out.append("http://self")
            continue
        port = f":{parsed.port}" if parsed.port is not None else ""
        out += [f"http://{parsed.domain}{port}", f"https://{parsed.domain}{port}"]
    return out
