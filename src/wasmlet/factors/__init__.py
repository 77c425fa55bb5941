"""Host capabilities ("factors", after Spin): each one is a module with its WIT interfaces
(`INTERFACES`), and the app-level state built here once per app from the locked app and the
runtime config. Per instance, a component gets a small dict of capability objects that its
host functions read; policy (labels, allowed hosts) is decided here, not per call.

A factor module is imported only when a component imports one of its interfaces
(`AppFactors.enable`), so an app that uses no database does not pay for loading the
PostgreSQL, MySQL, Redis and MQTT client libraries.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

from ..errors import RuntimeConfigError
from ..locked import LockedApp
from ..outbound import OutboundPolicy
from ..runtime_config import RuntimeConfig, variable_providers
from ..variables import VariableResolver
from ..wasi._iface import Interface
from ..wasi.http import OutboundHttp
from ..wasi.sockets import OutboundSockets
from . import key_value, sqlite, variables

# Which factor module serves an imported interface (by name prefix).
PROVIDERS: dict[str, str] = {
    "fermyon:spin/key-value@": "key_value",
    "wasi:keyvalue/": "key_value",
    "fermyon:spin/variables@": "variables",
    "spin:variables/": "variables",
    "wasi:config/": "variables",
    "fermyon:spin/sqlite@": "sqlite",
    "spin:sqlite/": "sqlite",
    "fermyon:spin/redis@": "redis",
    "fermyon:spin/postgres@": "rdbms",
    "spin:postgres/": "rdbms",
    "fermyon:spin/mysql@": "rdbms",
    "fermyon:spin/rdbms-types@": "rdbms",
    "fermyon:spin/mqtt@": "mqtt",
}


def factor_module(name: str) -> ModuleType:
    return importlib.import_module(f"{__name__}.{name}")


def modules_for(imports: Iterable[str]) -> set[str]:
    """The factor modules serving any of these imported interface names."""
    return {mod for name in imports for prefix, mod in PROVIDERS.items() if name.startswith(prefix)}


def interfaces_of(modules: Iterable[str]) -> list[Interface]:
    return [iface for mod in sorted(set(modules)) for iface in factor_module(mod).INTERFACES]


def make_resolver(
    app: LockedApp,
    config: RuntimeConfig,
    home: Path,
    overrides: dict[str, str] | None = None,
    environ: dict[str, str] | None = None,
) -> VariableResolver:
    env = dict(os.environ) if environ is None else environ
    return VariableResolver(
        app,
        overrides=overrides or {},
        providers=variable_providers(config, env, config.base_dir or home),
        environ=env,
        dotenv_path=home / ".env",
    )


class AppFactors:
    """The app-level state of every capability, and each component's share of it."""

    def __init__(
        self,
        app: LockedApp,
        state_dir: Path,
        config: RuntimeConfig | None = None,
        resolver: VariableResolver | None = None,
    ) -> None:
        self.app = app
        self.config = config or RuntimeConfig()
        self.resolver = resolver or VariableResolver(app, environ={})
        self.self_origin: str | None = None
        self._stores: dict[str, key_value.Store] | None = None
        self._databases: dict[str, sqlite.Database] | None = None
        self._state_dir = state_dir
        self._instances: dict[str, dict[str, Any]] = {}
        self._enabled: set[str] = set()
        self._check_labels()

    def enable(self, imports: Iterable[str]) -> list[Interface]:
        """Load the factors a component imports; return their interfaces for its linker.
        Call before the component's first instance."""
        modules = modules_for(imports)
        self._enabled |= modules
        return interfaces_of(modules)

    def _check_labels(self) -> None:
        defined = {key_value.DEFAULT, *self.config.key_value_store}
        for c in self.app.components:
            for label in c.metadata.get("key_value_stores", []):
                if label not in defined:
                    raise RuntimeConfigError(
                        f"component {c.id!r} uses key-value store {label!r}, which is not "
                        "defined: add [key_value_store." + label + "] to the runtime config"
                    )
        databases = {sqlite.DEFAULT, *self.config.sqlite_database}
        for c in self.app.components:
            for label in c.metadata.get("databases", []):
                if label not in databases:
                    raise RuntimeConfigError(
                        f"component {c.id!r} uses SQLite database {label!r}, which is not "
                        "defined: add [sqlite_database." + label + "] to the runtime config"
                    )
        _ = self.databases  # the runtime config's databases are checked at startup too

    @property
    def stores(self) -> dict[str, key_value.Store]:
        if self._stores is None:
            base = self.config.base_dir or self._state_dir
            self._stores = key_value.open_stores(self.config.key_value_store, self._state_dir, base)
        return self._stores

    @property
    def databases(self) -> dict[str, sqlite.Database]:
        if self._databases is None:
            base = self.config.base_dir or self._state_dir
            self._databases = sqlite.open_databases(
                self.config.sqlite_database, self._state_dir, base
            )
        return self._databases

    def instance(self, component_id: str) -> dict[str, Any]:
        """Capability objects for an instance of `component_id` (built once, shared)."""
        if component_id not in self._instances:
            c = self.app.component(component_id)
            hosts = [self.resolver.render(h) for h in c.metadata.get("allowed_outbound_hosts", [])]
            labels = frozenset(c.metadata.get("key_value_stores", []))
            databases = frozenset(c.metadata.get("databases", []))
            policy = OutboundPolicy.parse(hosts)
            caps: dict[str, Any] = {
                "outbound_http": OutboundHttp(policy, self.self_origin),
                "outbound_sockets": OutboundSockets(policy),
                "key_value": key_value.KeyValue(self.stores, labels),
                "variables": variables.Variables(self.resolver, component_id),
                "sqlite": sqlite.Sqlite(self.databases, databases),
            }
            if "redis" in self._enabled:
                caps["outbound_redis"] = factor_module("redis").OutboundRedis(policy)
            if "rdbms" in self._enabled:
                rdbms = factor_module("rdbms")
                caps["outbound_pg"] = rdbms.OutboundPg(policy)
                caps["outbound_mysql"] = rdbms.OutboundMysql(policy)
            if "mqtt" in self._enabled:
                caps["outbound_mqtt"] = factor_module("mqtt").OutboundMqtt(policy)
            self._instances[component_id] = caps
        return self._instances[component_id]
