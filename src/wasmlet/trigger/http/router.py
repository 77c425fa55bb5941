"""Spin's HTTP routing: route syntax, precedence and matching.

Routes are `/literal/segments`, `:name` (one segment) and a trailing `/...` wildcard.
Precedence follows Spin (routefinder): segment by segment, a literal beats `:param` beats the
wildcard; when all shared segments tie, the route with more segments wins. So an exact route
beats a wildcard and the longest wildcard prefix wins. Routing uses the raw path only.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from ...executors.types import RouteMatch

log = logging.getLogger("wasmlet.router")

T = TypeVar("T")

_LITERAL, _PARAM, _EXACT, _WILDCARD = 3, 2, 1, 0


def based_route(route: str) -> str:
    """Spin's "based route": a leading `/` added and one trailing `/` stripped, after the
    app's base (always `/`, which sanitises to ""): so `/` becomes "" and `/a/` `/a`."""
    route = route if route.startswith("/") else "/" + route
    return route.removesuffix("/")


def normalize_route(route: str) -> str:
    """Add a leading `/`, strip one trailing `/` (Spin's normalisation)."""
    if not route.startswith("/"):
        route = "/" + route
    if len(route) > 1 and route.endswith("/"):
        route = route[:-1]
    return route


@dataclass(frozen=True)
class RoutePattern:
    """A parsed route: literal and `:param` segments, maybe a trailing wildcard."""

    raw: str  # as written in the manifest
    segments: tuple[str, ...]
    wildcard: bool

    @classmethod
    def parse(cls, raw: str) -> RoutePattern:
        norm = normalize_route(raw)
        parts = norm.split("/")[1:] if norm != "/" else []
        wildcard = bool(parts) and parts[-1] in ("...", "*")
        if wildcard:
            parts = parts[:-1]
        return cls(raw, tuple(parts), wildcard)

    @functools.cached_property
    def based(self) -> str:
        return based_route(self.raw)

    @functools.cached_property
    def prefix(self) -> str:
        """The normalised route without its wildcard (as `Available Routes` prints it)."""
        return "/" + "/".join(self.segments) if self.segments else ("" if self.wildcard else "/")

    @property
    def precedence(self) -> tuple[int, ...]:
        """Sort key, higher is better: segment kinds left to right (literal > param), then
        1 for an exact route or 0 for a wildcard. Tuple order then gives Spin's rules."""
        kinds = [_PARAM if s.startswith(":") else _LITERAL for s in self.segments]
        return (*kinds, _WILDCARD if self.wildcard else _EXACT)

    def match(self, path: str) -> RouteMatch | None:
        parts = path.split("/")[1:]
        if parts and parts[-1] == "" and not (self.wildcard and len(parts) > len(self.segments)):
            parts = parts[:-1]  # "/foo/" is "/foo"; for "/foo/..." it is path info "/"
        n = len(self.segments)
        if len(parts) < n or (not self.wildcard and len(parts) != n):
            return None
        params: list[tuple[str, str]] = []
        for pattern, actual in zip(self.segments, parts, strict=False):
            if pattern.startswith(":"):
                if actual == "":
                    return None
                params.append((pattern[1:], actual))
            elif pattern != actual:
                return None
        prefix = "".join("/" + p for p in parts[:n])
        path_info = path[len(prefix) :] if self.wildcard else ""
        return RouteMatch(self.raw, self.based, tuple(params), path_info)


@dataclass
class Router(Generic[T]):
    """Maps request paths to handlers of type T by Spin's precedence."""

    _routes: list[tuple[RoutePattern, T]] = field(default_factory=list)

    def add(self, route: str, handler: T) -> None:
        pattern = RoutePattern.parse(route)
        for i, (existing, _) in enumerate(self._routes):
            if existing.precedence == pattern.precedence and existing.segments == pattern.segments:
                log.warning("duplicate route %r: the later one wins", route)
                self._routes[i] = (pattern, handler)
                return
        self._routes.append((pattern, handler))
        self._routes.sort(key=lambda item: item[0].precedence, reverse=True)

    def routes(self) -> list[tuple[RoutePattern, T]]:
        return list(self._routes)

    def match(self, path: str) -> tuple[RouteMatch, T] | None:
        for pattern, handler in self._routes:
            m = pattern.match(path)
            if m is not None:
                return m, handler
        return None
