"""The runtime config file (`--runtime-config-file`), as Spin reads it.

Top-level keys are checked (unknown keys are an error naming the key); paths are relative to
the file. Stores, databases and variable providers are parsed here and used by the host
capabilities that serve them.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .engine import parse_size
from .errors import NotSupportedError, RuntimeConfigError, WasmletError
from .locked import LockedApp
from .variables import ENV_PREFIX, EnvProvider, StaticProvider, VariableProvider


class StoreConfig(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str


class ProviderConfig(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str


class RuntimeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    state_dir: Path | None = None
    log_dir: Path | None = None
    max_instance_memory: int | None = None
    key_value_store: dict[str, StoreConfig] = Field(default_factory=dict)
    sqlite_database: dict[str, StoreConfig] = Field(default_factory=dict)
    variables_provider: list[ProviderConfig] = Field(default_factory=list)
    llm_compute: dict[str, Any] | None = None
    outbound_http: dict[str, Any] | None = None
    outbound_networking: dict[str, Any] | None = None
    outbound_redis: dict[str, Any] | None = None
    outbound_pg: dict[str, Any] | None = None
    outbound_mysql: dict[str, Any] | None = None
    outbound_mqtt: dict[str, Any] | None = None
    base_dir: Path | None = Field(default=None, exclude=True)  # where relative paths start


def variable_providers(
    config: RuntimeConfig, environ: Mapping[str, str], base: Path
) -> list[VariableProvider]:
    """The runtime config's `[[variables_provider]]`s, in order."""
    providers: list[VariableProvider] = []
    for i, p in enumerate(config.variables_provider):
        extra = p.model_extra or {}
        if p.type == "static":
            values = extra.get("values", {})
            if not isinstance(values, dict):
                raise RuntimeConfigError(f"variables_provider[{i}].values: expected a table")
            providers.append(StaticProvider({str(k): str(v) for k, v in values.items()}))
        elif p.type == "env":
            dotenv = extra.get("dotenv_path")
            providers.append(
                EnvProvider(
                    environ,
                    prefix=str(extra.get("prefix", ENV_PREFIX)),
                    dotenv_path=base / dotenv if dotenv else None,
                )
            )
        else:
            raise NotSupportedError(
                f"variables_provider[{i}]: provider type {p.type!r} is not supported "
                "(supported: env, static)"
            )
    return providers


def load_runtime_config(path: Path | None, home: Path) -> RuntimeConfig:
    """Read and validate a runtime config file; no file gives the defaults."""
    if path is None:
        return RuntimeConfig()
    try:
        data = tomllib.loads(path.read_text())
    except OSError as e:
        raise RuntimeConfigError(f"{path}: cannot read: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise RuntimeConfigError(f"{path}: invalid TOML: {e}") from None
    if "config_provider" in data:  # Spin's older name
        data.setdefault("variables_provider", []).extend(data.pop("config_provider"))
    memory = data.get("max_instance_memory")
    if isinstance(memory, str):
        try:
            data["max_instance_memory"] = parse_size(memory)
        except Exception as e:
            raise RuntimeConfigError(f"{path}: max_instance_memory: {e}") from None
    try:
        config = RuntimeConfig.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        problem = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        raise RuntimeConfigError(f"{path}: {where}: {problem}") from None
    base = path.resolve().parent
    config.base_dir = base
    for name in ("state_dir", "log_dir"):
        value = getattr(config, name)
        if value is not None and not value.is_absolute():
            setattr(config, name, base / value)
    return config


def apply_cli_overrides(
    app: LockedApp, env: dict[str, str], retain: list[str] | None = None
) -> LockedApp:
    """`--env K=V` sets an environment variable in every component; `--component-id`
    (or `SPIN_COMPONENTS_TO_RETAIN`) keeps only those components and their triggers."""
    if not env and not retain:
        return app
    app = app.model_copy(deep=True)
    if retain:
        known = {c.id for c in app.components}
        unknown = [c for c in retain if c not in known]
        if unknown:
            raise WasmletError(
                f"--component-id {unknown[0]!r}: the app has no such component "
                f"(components: {', '.join(sorted(known))})"
            )
        app.components = [c for c in app.components if c.id in retain]
        app.triggers = [
            t
            for t in app.triggers
            if t.trigger_config.get("component", retain[0]) in retain
            or "static_response" in t.trigger_config
        ]
    for component in app.components:
        component.env.update(env)
    return app
