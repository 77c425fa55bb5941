"""Host capabilities ("factors", after Spin's): one module each, registered below.

A factor declares the WIT interfaces it serves, checks the runtime config against the app and
builds its app state once per app, and prepares each component's share once per component
(see `_factor.py`). `AppFactors` configures every registered factor for an app; a component's
linker gets only the interfaces it imports, and its instances only those capabilities.

Adding a capability: a new module defining a `Factor` (its interfaces, key, configure_app,
prepare) and one line in `FACTORS`.
"""

from __future__ import annotations

from typing import Any

from . import (
    files,
    key_value,
    mqtt,
    mysql,
    outbound_http,
    outbound_networking,
    postgres,
    redis,
    sqlite,
    variables,
)
from ._factor import AppContext, AppFactors, ComponentContext, ComponentFactors, Factor

FACTORS: tuple[Factor[Any, Any], ...] = (
    variables.FACTOR,
    key_value.FACTOR,
    sqlite.FACTOR,
    files.FACTOR,
    outbound_http.FACTOR,
    outbound_networking.FACTOR,
    redis.FACTOR,
    postgres.FACTOR,
    mysql.FACTOR,
    mqtt.FACTOR,
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
    "configure",
]
