"""Host capabilities ("factors", after Spin's): one module each, registered below.

A factor declares the WIT interfaces it serves, checks the runtime config against the app and
builds its app state once per app, and prepares each component's share once per component
(see `_factor.py`). `AppFactors` configures every registered factor for an app; a component's
linker gets only the interfaces it imports, and its instances only those capabilities.

Adding a capability: a new module defining a `Factor` (its interfaces, key, configure_app,
prepare) and one line in `FACTORS`: the module itself, or a `LazyFactor` naming it and the
interfaces it serves, for a stateless factor that few apps use (imported when a component
imports one of them; a test checks the names against the module).
"""

from __future__ import annotations

from typing import Any

from . import files, key_value, outbound_http, sqlite, variables
from ._factor import (
    AppContext,
    AppFactors,
    ComponentContext,
    ComponentFactors,
    Factor,
    LazyFactor,
)

_SOCKETS = ("instance-network", "ip-name-lookup", "network", "tcp", "tcp-create-socket", "udp",
            "udp-create-socket")  # fmt: skip

FACTORS: tuple[Factor[Any, Any], ...] = (
    variables.FACTOR,
    key_value.FACTOR,
    sqlite.FACTOR,
    files.FACTOR,
    outbound_http.FACTOR,
    LazyFactor("wasmlet.factors.outbound_networking", [f"wasi:sockets/{n}" for n in _SOCKETS]),
    LazyFactor("wasmlet.factors.redis", ["fermyon:spin/redis"]),
    LazyFactor(
        "wasmlet.factors.postgres",
        ["fermyon:spin/postgres", "fermyon:spin/rdbms-types", "spin:postgres/postgres"],
    ),
    LazyFactor("wasmlet.factors.mysql", ["fermyon:spin/mysql", "fermyon:spin/rdbms-types"]),
    LazyFactor("wasmlet.factors.mqtt", ["fermyon:spin/mqtt"]),
)


def configure(ctx: AppContext, factors: tuple[Factor[Any, Any], ...] = FACTORS) -> AppFactors:
    """Every registered factor configured for one app (raises on bad runtime config)."""
    return AppFactors(ctx, factors)


__all__ = [
    "FACTORS",
    "AppContext",
    "AppFactors",
    "ComponentContext",
    "ComponentFactors",
    "Factor",
    "LazyFactor",
    "configure",
]
