"""Tests of `wasmlet.variables`: names, providers, resolution, component variables."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wasmlet.errors import VariableError
from wasmlet.locked import LockedApp, LockedComponent, LockedComponentSource, LockedVariable
from wasmlet.variables import (
    EnvProvider,
    InvalidVariableName,
    StaticProvider,
    UndefinedVariable,
    VariableProviderError,
    VariableResolver,
    is_valid_variable_name,
    read_dotenv,
    variable_name_error,
)


def make_app(
    variables: dict[str, str | None], config: dict[str, dict[str, str]] | None = None
) -> LockedApp:
    """An app with these variables (None = required) and components with these variables."""
    return LockedApp(
        variables={name: LockedVariable(default=default) for name, default in variables.items()},
        components=[
            LockedComponent(id=cid, source=LockedComponentSource(source="file:///x"), config=cfg)
            for cid, cfg in (config or {}).items()
        ],
    )


APP = make_app(
    {"api_host": "example.com", "token": None, "region": "eu"},
    {
        "web": {"url": "https://{{ api_host }}/{{region}}", "auth": "Bearer {{ token }}", "n": "1"},
        "other": {},
    },
)


# -- names -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "abc", "a1b2c3", "a_1", "a_1_b_3", "api_key"])
def test_valid_names(name: str) -> None:
    assert is_valid_variable_name(name)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "empty"),
        ("aX", "invalid character 'X'"),
        ("1bc", "start with a lowercase"),
        ("_x", "start with a lowercase"),
        ("x.y", "invalid character '.'"),
        ("x_", "end with"),
        ("a__b", "consecutive underscores"),
        ("x-y", "invalid character '-'"),
        ("é", "invalid character"),
    ],
)
def test_invalid_names(name: str, reason: str) -> None:
    assert not is_valid_variable_name(name)
    error = variable_name_error(name)
    assert error is not None and reason in error


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="abz09_-A. ", max_size=8))
def test_name_rule_matches_spin(name: str) -> None:
    assert is_valid_variable_name(name) == bool(re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", name))


# -- providers and resolution --------------------------------------------------------------------


def test_defaults_and_missing_required() -> None:
    resolver = VariableResolver(APP, environ={})
    assert resolver.value("api_host") == "example.com"
    assert resolver.value("token") is None
    with pytest.raises(VariableError) as info:
        resolver.resolve_app()
    assert "token" in str(info.value) and "SPIN_VARIABLE_TOKEN" in str(info.value)


def test_missing_required_lists_every_one() -> None:
    app = make_app({"b_var": None, "a_var": None, "ok": "x"})
    with pytest.raises(VariableError, match="b_var, a_var"):
        VariableResolver(app, environ={}).resolve_app()


def test_provider_order(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("SPIN_VARIABLE_TOKEN=from-dotenv\nSPIN_VARIABLE_REGION=dotenv-region\n")
    environ = {"SPIN_VARIABLE_TOKEN": "from-env", "SPIN_VARIABLE_API_HOST": "env.example"}

    def resolver(**kwargs: object) -> dict[str, str]:
        return VariableResolver(APP, environ=environ, dotenv_path=dotenv, **kwargs).resolve_app()  # type: ignore[arg-type]

    assert resolver() == {"api_host": "env.example", "token": "from-env", "region": "dotenv-region"}
    assert resolver(providers=[StaticProvider({"token": "configured"})])["token"] == "configured"
    both = resolver(overrides={"token": "cli"}, providers=[StaticProvider({"token": "configured"})])
    assert both["token"] == "cli"


def test_env_provider_falls_back_to_dotenv_only_when_unset(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("SPIN_VARIABLE_TOKEN=dotenv\n")
    assert EnvProvider({"SPIN_VARIABLE_TOKEN": ""}, dotenv_path=dotenv).get("token") == ""
    assert EnvProvider({}, dotenv_path=dotenv).get("token") == "dotenv"
    assert EnvProvider({}, dotenv_path=tmp_path / "missing.env").get("token") is None
    assert EnvProvider({}).get("token") is None


def test_env_provider_prefix() -> None:
    assert EnvProvider({"MY_API_KEY": "k"}, prefix="MY").get("api_key") == "k"
    assert EnvProvider({"API_KEY": "k"}, prefix="").get("api_key") == "k"
    assert EnvProvider({}).env_key("api_key") == "SPIN_VARIABLE_API_KEY"


def test_read_dotenv(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text(
        "# comment\n"
        "\n"
        "A=1\n"
        "export B = two words \n"
        "C='single # not a comment'\n"
        'D="line\\nbreak \\"quoted\\""\n'
        "E=value # comment\n"
        "not a pair\n"
        "F=\n"
    )
    assert read_dotenv(path) == {
        "A": "1",
        "B": "two words",
        "C": "single # not a comment",
        "D": 'line\nbreak "quoted"',
        "E": "value",
        "F": "",
    }


def test_values_are_looked_up_once() -> None:
    calls: list[str] = []

    class Counting:
        def get(self, name: str) -> str | None:
            calls.append(name)
            return "v"

    resolver = VariableResolver(APP, providers=[Counting()], environ={})
    resolver.resolve_app()
    resolver.component_config("web")
    resolver.get("web", "auth")
    assert sorted(calls) == ["api_host", "region", "token"]


# -- component variables -------------------------------------------------------------------------


def test_component_config() -> None:
    resolver = VariableResolver(APP, overrides={"token": "t0k"}, environ={})
    assert resolver.component_config("web") == {
        "url": "https://example.com/eu",
        "auth": "Bearer t0k",
        "n": "1",
    }
    assert resolver.component_config("other") == {}
    assert resolver.component_config("unknown") == {}


def test_get() -> None:
    resolver = VariableResolver(APP, overrides={"token": "t"}, environ={})
    assert resolver.get("web", "url") == "https://example.com/eu"

    with pytest.raises(InvalidVariableName) as invalid:
        resolver.get("web", "URL")
    assert "'URL'" in invalid.value.detail
    assert str(invalid.value).startswith("invalid variable name: ")

    with pytest.raises(UndefinedVariable) as undefined:
        resolver.get("web", "missing")
    assert undefined.value.detail == "no variable for 'web'.'missing'"

    with pytest.raises(UndefinedVariable):
        resolver.get("other", "url")
    with pytest.raises(UndefinedVariable):  # app variables are not component variables
        resolver.get("web", "api_host")


def test_get_required_without_value_is_provider_error() -> None:
    resolver = VariableResolver(APP, environ={})
    with pytest.raises(VariableProviderError, match="token"):
        resolver.get("web", "auth")
    assert resolver.get("web", "n") == "1"


def test_render() -> None:
    resolver = VariableResolver(APP, environ={})
    assert resolver.render("https://{{ api_host }}:443") == "https://example.com:443"
    with pytest.raises(VariableError, match="unknown application variable 'nope'"):
        resolver.render("{{ nope }}")


@pytest.mark.parametrize(
    ("app", "fragment"),
    [
        (make_app({}, {"c": {"k": "{{ nope }}"}}), "unknown application variable 'nope'"),
        (make_app({"a": "1"}, {"c": {"k": "{{ a"}}), "unmatched"),
        (make_app({}, {"c": {"Bad": "x"}}), "invalid name"),
        (make_app({"Bad": "x"}), "application variable 'Bad'"),
    ],
)
def test_invalid_locked_app(app: LockedApp, fragment: str) -> None:
    with pytest.raises(VariableError, match=re.escape(fragment)):
        VariableResolver(app, environ={})
