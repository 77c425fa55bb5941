"""Azure Functions route templates (ASP.NET Core's syntax), matched as the Functions host
matches them: `items/{id:int}`, `files/{*rest}`, `users/{name?}`, `a/{b=default}`.

Literal segments match case-insensitively; parameters may carry constraints (`int`, `long`,
`bool`, `guid`, `alpha`, `double`, `float`, `decimal`, `datetime`, `minlength(n)`,
`maxlength(n)`, `length(n)` or `length(a,b)`, `min(n)`, `max(n)`, `range(a,b)`,
`regex(...)`); when several templates match a path, the most specific wins (a literal beats
a constrained parameter, which beats a plain one, which beats a catch-all), segment by
segment. Standard library only (the host's tests run it too).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import unquote

_PARAM = re.compile(r"\{(\*{0,2})([A-Za-z_][\w]*)((?::[^{}=?]+(?:\([^)]*\))?)*)(\?|=[^{}]*)?\}$")
_CONSTRAINT = re.compile(r":(\w+)(?:\(([^)]*)\))?")


class RouteError(ValueError):
    """A route template this module cannot match (named in the message)."""


def _parses(parse: Callable[[str], object]) -> Callable[[str], bool]:
    """A check that `parse` accepts the value (float, uuid.UUID, datetime.fromisoformat)."""

    def check(value: str) -> bool:
        try:
            parse(value)
        except ValueError:
            return False
        return True

    return check


_SIMPLE: dict[str, Callable[[str], bool]] = {
    "int": lambda v: bool(re.fullmatch(r"-?\d+", v)) and -(2**31) <= int(v) < 2**31,
    "long": lambda v: bool(re.fullmatch(r"-?\d+", v)) and -(2**63) <= int(v) < 2**63,
    "bool": lambda v: v.lower() in ("true", "false"),
    "guid": _parses(uuid.UUID),
    "alpha": lambda v: bool(re.fullmatch(r"[A-Za-z]+", v)),
    "double": _parses(float),
    "float": _parses(float),
    "decimal": _parses(float),
    "datetime": _parses(datetime.fromisoformat),
    "required": lambda v: v != "",
}


def _constraint(name: str, arg: str | None, template: str) -> Callable[[str], bool]:
    if arg is None and name in _SIMPLE:
        return _SIMPLE[name]
    args = [a.strip() for a in (arg or "").split(",")]
    try:
        if name == "regex" and arg is not None:
            pattern = re.compile(arg, re.IGNORECASE)
            return lambda v: pattern.search(v) is not None
        if name in ("minlength", "maxlength", "length", "min", "max", "range"):
            n = [int(a) for a in args]
            checks: dict[str, Callable[[str], bool]] = {
                "minlength": lambda v: len(v) >= n[0],
                "maxlength": lambda v: len(v) <= n[0],
                "length": lambda v: len(v) == n[0] if len(n) == 1 else n[0] <= len(v) <= n[1],
                "min": lambda v: _SIMPLE["long"](v) and int(v) >= n[0],
                "max": lambda v: _SIMPLE["long"](v) and int(v) <= n[0],
                "range": lambda v: _SIMPLE["long"](v) and n[0] <= int(v) <= n[-1],
            }
            return checks[name]
    except (ValueError, re.error) as error:
        raise RouteError(f"route {template!r}: constraint {name}({arg}): {error}") from None
    raise RouteError(f"route {template!r}: constraint {name!r} is not supported")


@dataclass(frozen=True)
class Segment:
    literal: str | None  # lower-case; None for a parameter
    name: str = ""
    checks: tuple[Callable[[str], bool], ...] = ()
    optional: bool = False
    default: str | None = None
    catch_all: bool = False

    @property
    def rank(self) -> int:
        """Lower is more specific (ASP.NET Core's route precedence)."""
        if self.literal is not None:
            return 0
        if self.catch_all:
            return 4
        return 1 if self.checks else (3 if self.optional else 2)


def parse(template: str) -> tuple[Segment, ...]:
    """A route template (without the route prefix) as its segments."""
    segments = []
    parts = [p for p in template.strip("/").split("/") if p != ""]
    for index, part in enumerate(parts):
        if "{" not in part and "}" not in part:
            segments.append(Segment(part.lower()))
            continue
        m = _PARAM.match(part)
        if m is None:
            raise RouteError(
                f"route {template!r}: segment {part!r} is not supported (a segment is a "
                "literal or one {parameter})"
            )
        stars, name, constraints, tail = m.groups()
        checks = tuple(
            _constraint(c.group(1), c.group(2), template)
            for c in _CONSTRAINT.finditer(constraints or "")
        )
        if stars and index != len(parts) - 1:
            raise RouteError(f"route {template!r}: the catch-all {part!r} must be last")
        segments.append(
            Segment(
                None,
                name,
                checks,
                optional=tail == "?",
                default=tail[1:] if tail and tail.startswith("=") else None,
                catch_all=bool(stars),
            )
        )
    return tuple(segments)


def match(segments: tuple[Segment, ...], path: str) -> dict[str, str] | None:
    """The route values when `path` (under the prefix, percent-encoded, no query) matches."""
    parts = [p for p in path.strip("/").split("/")] if path.strip("/") else []
    values: dict[str, str] = {}
    for index, segment in enumerate(segments):
        if segment.catch_all:
            rest = unquote("/".join(parts[index:]))
            if rest:
                values[segment.name] = rest
            elif segment.default is not None:
                values[segment.name] = segment.default
            return values if all(check(rest) for check in segment.checks) or not rest else None
        if index >= len(parts):
            if segment.literal is None and (segment.optional or segment.default is not None):
                if segment.default is not None:
                    values[segment.name] = segment.default
                continue
            return None
        part = unquote(parts[index])
        if segment.literal is not None:
            if part.lower() != segment.literal:
                return None
        elif part == "" or not all(check(part) for check in segment.checks):
            return None
        else:
            values[segment.name] = part
    return values if len(parts) <= len(segments) else None


def precedence(segments: tuple[Segment, ...]) -> tuple[int, ...]:
    """Sort key: the more specific template first."""
    return (*(s.rank for s in segments), -1)
