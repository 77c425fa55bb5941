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

from .errors import NotSupportedError, RuntimeConfigError, WasmletError
from .guestlimits import parse_size
from .locked import LockedApp
from .manifest import join_key, quote
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
    source: str = Field(default="runtime config", exclude=True)  # the file, as errors name it

    def error(self, key: str, problem: str) -> RuntimeConfigError:
        """`<file>: <key>: <problem>`."""
        return RuntimeConfigError(f"{self.source}: {key}: {problem}")


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


# pydantic's wording for the errors a runtime config gets most, in the manifest's words.
_PROBLEMS = {
    "extra_forbidden": "unknown key",
    "missing": "missing required key",
    "dict_type": "expected a table",
    "model_type": "expected a table",
    "list_type": "expected an array",
    "string_type": "expected a string",
    "int_type": "expected an integer",
    "int_parsing": "expected an integer",
    "path_type": "expected a path (a string)",
}


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
    for key in ("variables_provider", "config_provider"):  # the latter: Spin's older name
        providers = data.get(key, [])
        if not isinstance(providers, list) or not all(isinstance(p, dict) for p in providers):
            raise RuntimeConfigError(f"{path}: {key}: expected an array of tables ([[{key}]])")
    if "config_provider" in data:
        data.setdefault("variables_provider", []).extend(data.pop("config_provider"))
    memory = data.get("max_instance_memory")
    if memory is not None and (isinstance(memory, bool) or not isinstance(memory, int | str)):
        raise RuntimeConfigError(
            f"{path}: max_instance_memory: expected a size (bytes, or e.g. 64Mi, 1Gi)"
        )
    if isinstance(memory, str):
        try:
            data["max_instance_memory"] = parse_size(memory)
        except WasmletError as e:
            raise RuntimeConfigError(f"{path}: max_instance_memory: {e}") from None
    try:
        config = RuntimeConfig.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        where = ""
        for part in err["loc"]:
            where = f"{where}[{part}]" if isinstance(part, int) else join_key(where, str(part))
        problem = _PROBLEMS.get(err["type"], err["msg"])
        raise RuntimeConfigError(f"{path}: {where}: {problem}") from None
    config.source = str(path)
    base = path.resolve().parent
    config.base_dir = base
    check(config)
    for name in ("state_dir", "log_dir"):
        value = getattr(config, name)
        if value is not None and not value.is_absolute():
            setattr(config, name, base / value)
    return config


# What each kind of store, database and provider takes (Spin's runtime config keys).
_KEYS = {
    ("key_value_store", "spin"): {"path"},
    ("key_value_store", "redis"): {"url"},
    ("sqlite_database", "spin"): {"path"},
    ("variables_provider", "env"): {"prefix", "dotenv_path"},
    ("variables_provider", "static"): {"values"},
}
MAX_MEMORY = 2**63 - 1  # wasmtime takes a signed 64-bit size


def check(config: RuntimeConfig) -> None:
    """Everything about the runtime config that can be checked before the app runs, so that
    a store or provider that cannot work fails `wasmlet up`, not a request. Raises
    `RuntimeConfigError` as `<file>: <key>: <problem>`."""
    memory = config.max_instance_memory
    if memory is not None and not 0 < memory <= MAX_MEMORY:
        raise config.error("max_instance_memory", "expected a size above 0 (e.g. 64Mi)")
    for name in ("state_dir", "log_dir"):
        value = getattr(config, name)
        if value is not None and "\0" in str(value):
            raise config.error(name, "contains a NUL character")
        if value is not None and config.base_dir is not None:
            where = config.base_dir / value
            try:
                if where.exists() and not where.is_dir():
                    raise config.error(name, f"{quote(str(where))} is not a directory")
            except OSError as e:
                raise config.error(name, f"{quote(str(where))}: {e.strerror}") from None
    for section, kinds in (
        ("key_value_store", "spin, redis"),
        ("sqlite_database", "spin"),
    ):
        for label, spec in getattr(config, section).items():
            _check_entry(config, join_key(section, label), section, spec, kinds)
    for index, provider in enumerate(config.variables_provider):
        where = f"variables_provider[{index}]"
        if provider.type not in ("env", "static"):
            raise NotSupportedError(
                f"{config.source}: {where}: provider type {provider.type!r} is not supported "
                "(supported: env, static)"
            )
        _check_entry(config, where, "variables_provider", provider, "env, static")
    outbound = config.outbound_http or {}
    pooling = outbound.get("connection_pooling")
    if pooling is not None and not isinstance(pooling, bool):
        raise config.error("outbound_http.connection_pooling", "expected true or false")
    limit = outbound.get("max_concurrent_connections")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise config.error("outbound_http.max_concurrent_connections", "expected a number above 0")


def _check_entry(
    config: RuntimeConfig, where: str, section: str, spec: StoreConfig | ProviderConfig, kinds: str
) -> None:
    extra = spec.model_extra or {}
    allowed = _KEYS.get((section, spec.type))
    if allowed is None:
        raise NotSupportedError(
            f"{config.source}: {where}: type {spec.type!r} is not supported (supported: {kinds})"
        )
    unknown = sorted(set(extra) - allowed)
    if unknown:
        takes = ", ".join(sorted(allowed))
        raise config.error(where, f"unknown key {unknown[0]!r} (type {spec.type!r} takes {takes})")
    for key, value in extra.items():
        if key == "values":
            if not isinstance(value, dict):
                raise config.error(f"{where}.values", "expected a table of strings")
            for name, text in value.items():
                if not isinstance(text, str):
                    raise config.error(join_key(f"{where}.values", str(name)), "expected a string")
        elif not isinstance(value, str):
            raise config.error(join_key(where, key), "expected a string")
        elif "\0" in value or (key in ("path", "dotenv_path") and not value):
            raise config.error(join_key(where, key), f"{quote(value)} is not a valid path")
        elif key == "path" and config.base_dir is not None:
            problem = _not_creatable(config.base_dir / value)
            if problem:
                raise config.error(join_key(where, key), problem)
        elif key == "dotenv_path" and config.base_dir is not None:
            problem = _not_readable(config.base_dir / value)
            if problem:
                raise config.error(join_key(where, key), problem)
    if spec.type == "redis":
        if "url" not in extra:
            raise config.error(where, "type 'redis' needs a url")
        problem = redis_url_problem(str(extra["url"]))
        if problem:
            raise config.error(f"{where}.url", problem)


def _not_creatable(file: Path) -> str | None:
    """Why a database file could not be created at `file` (None: it may be), found now
    rather than when a guest first opens the store: its directory (or the nearest that
    exists) must be a directory, and the file, if there, not one."""
    try:
        if file.is_dir():
            return f"{quote(str(file))} is a directory"
        for parent in file.parents:
            if parent.exists():
                return None if parent.is_dir() else f"{quote(str(parent))} is not a directory"
    except OSError as e:  # a name too long, a loop of links...
        return f"{quote(str(file))}: {e.strerror}"
    return None


def _not_readable(file: Path) -> str | None:
    """Why a `.env` file at `file` could not be read (None: it can, or it is absent, which
    Spin allows): a FIFO would block startup, a device never end."""
    try:
        if file.exists() and not file.is_file():
            return f"{quote(str(file))} is not a regular file"
    except OSError as e:
        return f"{quote(str(file))}: {e.strerror}"
    return None


def redis_url_problem(url: str) -> str | None:
    """Why a Redis client could not use `url` (None if it can); parsing only, as Spin does
    when it opens the store: the server need not be up yet."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        return f"{url!r} is not a valid URL: {e}"
    if parts.scheme not in ("redis", "rediss", "unix"):
        return (
            f"{url!r} is not a Redis URL (expected redis://HOST[:PORT][/DB], rediss:// or unix://)"
        )
    if parts.scheme == "unix" and not parts.path:
        return f"{url!r} names no socket path"
    if parts.scheme != "unix" and not parts.hostname:
        return f"{url!r} names no host"
    if port == 0:
        return f"{url!r}: port 0"
    db = parts.path.strip("/")
    if parts.scheme != "unix" and db and not db.isdigit():
        return f"{url!r}: the database {db!r} is not a number"
    return None


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
