"""The runtime-config.toml the operator generates from `spec.runtimeConfig`.

Option values that come from a ConfigMap or Secret (`valueFrom`) are looked up by the caller
(the operator reads them) and passed in as `resolved`; everything here is pure.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import tomli_w

from .models import RuntimeConfig, RuntimeConfigOption, RuntimeConfigStore

RUNTIME_CONFIG_KEY = "runtime-config.toml"
VARIABLE_PREFIX = "SPIN_VARIABLE"


@dataclass(frozen=True)
class ValueRef:
    """A key of a ConfigMap or Secret that an option's value is read from."""

    kind: Literal["ConfigMap", "Secret"]
    name: str
    key: str
    optional: bool = False

    def __str__(self) -> str:
        return f"{self.kind} {self.name!r} key {self.key!r}"


class RuntimeConfigError(ValueError):
    """The runtime config cannot be generated (a referenced value is missing, …)."""


def _option_ref(option: RuntimeConfigOption) -> ValueRef | None:
    source = option.value_from
    if source is None:
        return None
    for kind, selector in (
        ("ConfigMap", source.config_map_key_ref),
        ("Secret", source.secret_key_ref),
    ):
        if selector is not None:
            return ValueRef(
                kind=kind,  # type: ignore[arg-type]
                name=str(selector.get("name", "")),
                key=str(selector.get("key", "")),
                optional=bool(selector.get("optional", False)),
            )
    return None


def _all_options(config: RuntimeConfig) -> Iterable[RuntimeConfigOption]:
    for store in (config.key_value_stores or []) + (config.sqlite_databases or []):
        yield from store.options or []
    if config.llm_compute is not None:
        yield from config.llm_compute.options or []


def references(config: RuntimeConfig | None) -> list[ValueRef]:
    """The ConfigMap/Secret keys the runtime config needs (none with `loadFromSecret`)."""
    if config is None or config.load_from_secret:
        return []
    refs = {ref for o in _all_options(config) if (ref := _option_ref(o)) is not None}
    return sorted(refs, key=lambda r: (r.kind, r.name, r.key))


def _options(
    table: dict[str, str],
    options: list[RuntimeConfigOption] | None,
    resolved: Mapping[ValueRef, str],
    where: str,
) -> dict[str, str]:
    """`table` plus the options' values (a missing optional reference leaves its option out)."""
    for option in options or []:
        ref = _option_ref(option)
        if ref is None:
            value = option.value
            if value is None:
                raise RuntimeConfigError(f"{where}: option {option.name!r} has no value")
        elif ref in resolved:
            value = resolved[ref]
        elif ref.optional:
            continue
        else:
            raise RuntimeConfigError(f"{where}: option {option.name!r}: {ref} not found")
        if option.name in table:  # a TOML key can be set only once
            raise RuntimeConfigError(f"{where}: option {option.name!r} is set twice")
        table[option.name] = value
    return table


def _stores(
    table: str, stores: list[RuntimeConfigStore] | None, resolved: Mapping[ValueRef, str]
) -> dict[str, dict[str, str]]:
    tables: dict[str, dict[str, str]] = {}
    for store in stores or []:
        where = f"{table}.{store.name}"
        if store.name in tables:  # admission refuses this; without webhooks it can get here
            raise RuntimeConfigError(f"{where}: defined twice")
        tables[store.name] = _options({"type": store.type}, store.options, resolved, where)
    return tables


def render(config: RuntimeConfig | None, resolved: Mapping[ValueRef, str] | None = None) -> str:
    """The TOML: the env variables provider (SPIN_VARIABLE_*), stores, databases, LLM."""
    resolved = resolved or {}
    doc: dict[str, Any] = {"config_provider": [{"type": "env", "prefix": VARIABLE_PREFIX}]}
    if config is not None:
        for table, stores in (
            ("key_value_store", config.key_value_stores),
            ("sqlite_database", config.sqlite_databases),
        ):
            if stores:
                doc[table] = _stores(table, stores, resolved)
        if config.llm_compute is not None:
            llm = config.llm_compute
            doc["llm_compute"] = _options({"type": llm.type}, llm.options, resolved, "llm_compute")
    return tomli_w.dumps(doc)


def secret_name(app: str, content: str) -> str:
    """`<app>-<adler32 hex>`: the name changes with the content, so pods roll on change."""
    return f"{app}-{zlib.adler32(content.encode()):x}"
