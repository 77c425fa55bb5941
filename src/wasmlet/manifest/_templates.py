"""Variable templates: strings with `{{ expr }}` expressions, as in Spin's `spin-expressions`.

A template is literal text with expressions in double braces. An expression is the name of an
application variable; whitespace around it is trimmed. `{{` without a closing `}}` is an error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

_OPEN = "{{"
_CLOSE = "}}"


class TemplateError(ValueError):
    """A template string is malformed (an unmatched `{{`)."""


@dataclass(frozen=True)
class Literal:
    text: str


@dataclass(frozen=True)
class Expr:
    name: str


Part = Literal | Expr


@dataclass(frozen=True)
class Template:
    """A parsed template: literal and expression parts, in order."""

    source: str
    parts: tuple[Part, ...]

    @property
    def is_literal(self) -> bool:
        return all(isinstance(p, Literal) for p in self.parts)

    @property
    def variables(self) -> list[str]:
        """The variable names the template refers to, in order, without duplicates."""
        names = (p.name for p in self.parts if isinstance(p, Expr))
        return list(dict.fromkeys(names))

    def render(self, lookup: Callable[[str], str]) -> str:
        """Substitute every expression with `lookup(name)`."""
        return "".join(p.text if isinstance(p, Literal) else lookup(p.name) for p in self.parts)


def parse_template(text: str) -> Template:
    """Split `text` into literal and expression parts; raise `TemplateError` if malformed."""
    parts: list[Part] = []
    rest = text
    while rest:
        if rest.startswith(_OPEN):
            expr, sep, rest = rest[len(_OPEN) :].partition(_CLOSE)
            if not sep:
                raise TemplateError(f"unmatched '{_OPEN}' in template {quote(text)}")
            parts.append(Expr(expr.strip()))
        else:
            idx = rest.find(_OPEN)
            end = len(rest) if idx < 0 else idx
            parts.append(Literal(rest[:end]))
            rest = rest[end:]
    return Template(text, tuple(parts))


def unknown_variables(template: Template, known: Iterable[str]) -> list[str]:
    """The variables `template` refers to that are not in `known`."""
    known_set = set(known)
    return [name for name in template.variables if name not in known_set]


_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def quote(value: str) -> str:
    """Quote a string the way error messages show values: `"like this"`, with control
    characters escaped (an error stays one line, and a NUL shows)."""
    escaped = "".join(
        _ESCAPES.get(ch)
        or (f"\\u{ord(ch):04x}" if ch < " " or ch in "\x7f\x85\u2028\u2029" else ch)
        for ch in value
    )
    return f'"{escaped}"'
