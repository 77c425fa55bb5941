"""Application variables: where their values come from and how components see them.

As in Spin (`spin-expressions`, the variables factor): an application variable's value comes
from the first provider that has one — explicit overrides (`--variable k=v`), then configured
providers (runtime config), then the environment (`SPIN_VARIABLE_<NAME>`, falling back to a
`.env` file) — else its manifest default. A component sees only its own `variables`, templates
over application variables evaluated with those values.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from .errors import VariableError
from .locked import LockedApp
from .manifest import Template, TemplateError, parse_template, unknown_variables

ENV_PREFIX = "SPIN_VARIABLE"


# -- names ---------------------------------------------------------------------------------------


def variable_name_error(name: str) -> str | None:
    """Why `name` is not a valid variable name (None if it is).

    Spin's rule: lowercase ASCII letters, digits and `_`; a letter first; a letter or digit
    last; no `__`.
    """
    if not name:
        return "must not be empty"
    bad = next(
        (c for c in name if not (c.isascii() and (c.islower() or c.isdigit() or c == "_"))), None
    )
    if bad is not None:
        return (
            f"invalid character {bad!r}; variable names may contain only lowercase letters, "
            "digits and underscores"
        )
    if not name[0].islower():
        return "must start with a lowercase ASCII letter"
    if not name[-1].isalnum():
        return "must end with a lowercase ASCII letter or digit"
    if "__" in name:
        return "must not contain multiple consecutive underscores"
    return None


def is_valid_variable_name(name: str) -> bool:
    return variable_name_error(name) is None


# -- errors (the `fermyon:spin/variables` error cases) ---------------------------------------------


class InvalidVariableName(VariableError):
    """`invalid-name`: the name asked for is not a valid variable name."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(f"invalid variable name: {detail}")


class UndefinedVariable(VariableError):
    """`undefined`: the component has no variable of that name."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(f"undefined variable: {detail}")


class VariableProviderError(VariableError):
    """`provider`: no value could be found (or a provider failed)."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(f"provider error: {detail}")


# -- providers -----------------------------------------------------------------------------------


class VariableProvider(Protocol):
    """A source of application variable values."""

    def get(self, name: str) -> str | None:
        """The value of application variable `name`, or None if this provider has none."""
        ...


class StaticProvider:
    """Fixed values, e.g. from `--variable k=v` or a runtime config `static` provider."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)

    def get(self, name: str) -> str | None:
        return self._values.get(name)


class EnvProvider:
    """`<PREFIX>_<NAME>` from an environment, falling back to a `.env` file."""

    def __init__(
        self,
        environ: Mapping[str, str] | None = None,
        *,
        prefix: str = ENV_PREFIX,
        dotenv_path: Path | None = None,
    ) -> None:
        self._environ = os.environ if environ is None else environ
        self._prefix = prefix
        self._dotenv_path = dotenv_path
        self._dotenv: dict[str, str] | None = None

    def env_key(self, name: str) -> str:
        upper = name.upper()
        return f"{self._prefix}_{upper}" if self._prefix else upper

    def get(self, name: str) -> str | None:
        key = self.env_key(name)
        if key in self._environ:
            return self._environ[key]
        return self._dotenv_values().get(key)

    def _dotenv_values(self) -> dict[str, str]:
        if self._dotenv is None:
            self._dotenv = read_dotenv(self._dotenv_path) if self._dotenv_path else {}
        return self._dotenv


MAX_DOTENV = 1 << 20  # bytes: a .env holds a few lines


def read_dotenv(path: Path) -> dict[str, str]:
    """`KEY=value` lines of a `.env` file (a missing file has none)."""
    try:
        if not path.exists():
            return {}
        if not path.is_file():  # a FIFO would block startup, /dev/zero fill the memory
            raise VariableProviderError(f"cannot read {path}: not a regular file")
        with path.open("rb") as f:
            data = f.read(MAX_DOTENV + 1)
        if len(data) > MAX_DOTENV:
            raise VariableProviderError(f"cannot read {path}: larger than {MAX_DOTENV} bytes")
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise VariableProviderError(f"cannot read {path}: {e}") from None
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, value = line.partition("=")
        if sep and key.strip() and not line.startswith("#"):
            values[key.strip()] = _dotenv_value(value.strip())
    return values


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}


def _dotenv_value(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1]
    if len(value) >= 2 and value[0] == value[-1] == '"':
        out: list[str] = []
        chars = iter(value[1:-1])
        for ch in chars:
            if ch == "\\":
                escaped = next(chars, "")
                ch = _ESCAPES.get(escaped, "\\" + escaped)
            out.append(ch)
        return "".join(out)
    comment = value.find(" #")
    return (value if comment < 0 else value[:comment]).rstrip()


# -- the resolver ----------------------------------------------------------------------------------


class VariableResolver:
    """Resolves a locked app's variables; values are looked up once and then kept."""

    def __init__(
        self,
        app: LockedApp,
        *,
        overrides: Mapping[str, str] | None = None,
        providers: Sequence[VariableProvider] = (),
        environ: Mapping[str, str] | None = None,
        dotenv_path: Path | None = None,
    ) -> None:
        self._variables = dict(app.variables)
        for name in self._variables:
            if reason := variable_name_error(name):
                raise VariableError(f"application variable {name!r}: {reason}")
        self._providers: list[VariableProvider] = [
            StaticProvider(overrides or {}),
            *providers,
            EnvProvider(environ, dotenv_path=dotenv_path),
        ]
        self._templates = {c.id: self._parse_config(c.id, c.config) for c in app.components}
        self._cache: dict[str, str | None] = {}

    def _parse_config(self, component_id: str, config: Mapping[str, str]) -> dict[str, Template]:
        templates: dict[str, Template] = {}
        for key, text in config.items():
            where = f"component {component_id!r} variable {key!r}"
            if reason := variable_name_error(key):
                raise VariableError(f"{where}: invalid name: {reason}")
            templates[key] = self._parse(text, where)
        return templates

    def _parse(self, text: str, where: str) -> Template:
        try:
            template = parse_template(text)
        except TemplateError as e:
            raise VariableError(f"{where}: {e}") from None
        unknown = unknown_variables(template, self._variables)
        if unknown:
            raise VariableError(f"{where}: unknown application variable {unknown[0]!r}")
        return template

    # -- application variables ------------------------------------------------------------------

    def value(self, name: str) -> str | None:
        """The value of application variable `name`, or None if required and unset."""
        if name not in self._cache:
            self._cache[name] = self._lookup(name)
        return self._cache[name]

    def _lookup(self, name: str) -> str | None:
        for provider in self._providers:
            found = provider.get(name)
            if found is not None:
                return found
        variable = self._variables.get(name)
        return variable.default if variable else None

    def resolve_app(self) -> dict[str, str]:
        """Every application variable's value; `VariableError` naming all missing ones."""
        values = {name: self.value(name) for name in self._variables}
        missing = [name for name, v in values.items() if v is None]
        if missing:
            names = ", ".join(missing)
            hint = ", ".join(f"{ENV_PREFIX}_{name.upper()}" for name in missing)
            raise VariableError(
                f"missing required application variable(s): {names} "
                f"(set them with --variable NAME=VALUE or the environment: {hint})"
            )
        return {name: v for name, v in values.items() if v is not None}

    def _required(self, name: str) -> str:
        found = self.value(name)
        if found is None:
            raise VariableProviderError(f"no provider resolved required variable {name!r}")
        return found

    # -- component variables ----------------------------------------------------------------------

    def component_config(self, component_id: str) -> dict[str, str]:
        """All of a component's variables, evaluated."""
        templates = self._templates.get(component_id, {})
        return {key: t.render(self._required) for key, t in templates.items()}

    def get(self, component_id: str, name: str) -> str:
        """One component variable, with the errors `fermyon:spin/variables.get` reports."""
        if reason := variable_name_error(name):
            raise InvalidVariableName(f"{name!r}: {reason}")
        template = self._templates.get(component_id, {}).get(name)
        if template is None:
            raise UndefinedVariable(f"no variable for {component_id!r}.{name!r}")
        return template.render(self._required)

    def render(self, text: str) -> str:
        """Evaluate a template over application variables (e.g. an allowed outbound host)."""
        return self._parse(text, "template").render(self._required)
