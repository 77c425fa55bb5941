"""Variables: `fermyon:spin/variables@2.0.0`, `spin:variables/variables@3.0.0` and
`wasi:config/store@0.2.0-draft-2024-09-27`, over the app's `VariableResolver`."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import VariableError
from ..variables import (
    InvalidVariableName,
    UndefinedVariable,
    VariableProviderError,
    VariableResolver,
)
from ..wasi import STRING, Err, Interface, Key, List, Ok, Option, Result, Tuple, Variant, current
from ._factor import AppContext, ComponentContext, Factor


@dataclass(frozen=True)
class Variables:
    """The variables capability of one component."""

    resolver: VariableResolver
    component_id: str

    def get(self, name: str) -> str:
        return self.resolver.get(self.component_id, name)


KEY: Key[Variables] = Key("variables")


def _vars() -> Variables:
    return current().get(KEY)


ERROR = Variant(
    ("invalid-name", STRING), ("undefined", STRING), ("provider", STRING), ("other", STRING)
)


def _get(name: str) -> object:
    try:
        return Ok(_vars().get(name))
    except InvalidVariableName as e:
        return Err(("invalid-name", e.detail))
    except UndefinedVariable as e:
        return Err(("undefined", e.detail))
    except VariableProviderError as e:
        return Err(("provider", e.detail))
    except VariableError as e:
        return Err(("other", str(e)))


spin_v2 = Interface("fermyon:spin/variables@2.0.0")
spin_v2.func("get", (STRING,), Result(STRING, ERROR))(_get)
spin_v3 = Interface("spin:variables/variables@3.0.0")
spin_v3.func("get", (STRING,), Result(STRING, ERROR))(_get)

config_store = Interface("wasi:config/store@0.2.0-draft-2024-09-27")
CONFIG_ERROR = Variant(("upstream", STRING), ("io", STRING))


@config_store.func("get", (STRING,), Result(Option(STRING), CONFIG_ERROR))
def _config_get(key: str) -> object:
    try:
        return Ok(_vars().get(key))
    except (InvalidVariableName, UndefinedVariable):
        return Ok(None)
    except VariableError as e:
        return Err(("upstream", str(e)))


@config_store.func("get-all", (), Result(List(Tuple(STRING, STRING)), CONFIG_ERROR))
def _config_get_all() -> object:
    v = _vars()
    try:
        return Ok(sorted(v.resolver.component_config(v.component_id).items()))
    except VariableError as e:
        return Err(("upstream", str(e)))


class VariablesFactor(Factor[VariableResolver, Variables]):
    key = KEY
    interfaces = (spin_v2, spin_v3, config_store)

    def configure_app(self, ctx: AppContext) -> VariableResolver:
        return ctx.variables

    def prepare(self, state: VariableResolver, ctx: ComponentContext) -> Variables:
        return Variables(state, ctx.id)


FACTOR = VariablesFactor()
