"""The `spin-*` request headers, computed exactly as Spin's HTTP trigger sets them."""

from __future__ import annotations

from .types import HttpRequest, RouteMatch


def full_url(request: HttpRequest) -> str:
    return f"{request.scheme}://{request.host or 'localhost'}{request.path_and_query}"


def client_addr(request: HttpRequest) -> str:
    host, port = request.client
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def param_header_suffix(name: str) -> str:
    """`:user_id` → `user-id` (uppercased then lowercased, `_` → `-`)."""
    return name.upper().lower().replace("_", "-")


def spin_headers(request: HttpRequest, match: RouteMatch) -> list[tuple[str, str]]:
    headers = [
        ("spin-full-url", full_url(request)),
        ("spin-path-info", match.path_info),
        ("spin-matched-route", match.based_route),
        ("spin-base-path", "/"),
        ("spin-raw-component-route", match.route),
        ("spin-component-route", match.component_route),
        ("spin-client-addr", client_addr(request)),
    ]
    headers += [(f"spin-path-match-{param_header_suffix(k)}", v) for k, v in match.params]
    return headers


def forwarded_headers(request: HttpRequest) -> list[tuple[str, str]]:
    """The client's headers as a guest sees them: no `Connection`, no internal `Host`."""
    out = []
    for k, v in request.headers:
        if k == "connection" or (k == "host" and v.split(":")[0].endswith(".spin.internal")):
            continue
        out.append((k, v))
    return out
