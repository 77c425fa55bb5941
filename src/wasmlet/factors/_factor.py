"""What a factor is, and the factors of one app.

A factor is one host capability as a unit, after Spin's `crates/factors`: the WIT interfaces
it serves (every version), how it checks the runtime config against the locked app and
builds its app state (once per app, at startup: a bad label fails there, naming the label
and the component), and how it prepares a component's share of that state (once per
component, shared by all its instances). Host functions find the share through the factor's
typed `key` (`current().get(KEY)`); policy is decided here, never per call.

A factor module is cheap to import: a client library it needs (psycopg, PyMySQL, paho, redis)
is imported by the code that first connects, so an app that uses no database does not load
one. A stateless factor's module can be registered as a `LazyFactor`, by the names of the
interfaces it serves: imported only when a component imports one of them (its WIT types
cost a fresh process milliseconds to build).
"""

from __future__ import annotations

import functools
import importlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from ..errors import ManifestError, VariableError
from ..locked import LockedApp, LockedComponent, url_to_path
from ..manifest import parse_allowed_host, quote
from ..outbound import OutboundPolicy
from ..runtime_config import RuntimeConfig
from ..variables import VariableResolver
from ..wasi import Interface, Key

log = logging.getLogger("wasmlet.factors")

AppState = TypeVar("AppState")
Share = TypeVar("Share")


@dataclass(frozen=True)
class AppContext:
    """What a factor sees of the app when it is configured (once per app)."""

    app: LockedApp
    state_dir: Path  # the app's own state (default stores and databases live here)
    runtime_config: RuntimeConfig = field(default_factory=RuntimeConfig)
    resolver: VariableResolver | None = None  # None: no variables beyond the defaults
    self_origin: str | None = None  # the app's own base URL (relative outbound requests)
    self_host: str | None = None  # the Host they carry, when the server routes by it

    @functools.cached_property
    def variables(self) -> VariableResolver:
        return self.resolver or VariableResolver(self.app, environ={})

    @functools.cached_property
    def policies(self) -> dict[str, OutboundPolicy]:
        """Every component's `allowed_outbound_hosts`, templates rendered and checked: an
        entry that renders to nonsense (`redis://x:{{ port }}` with port `6379x`) fails the
        app's start, naming the entry, not each request."""
        return {c.id: self._policy(c) for c in self.app.components}

    def _policy(self, component: LockedComponent) -> OutboundPolicy:
        hosts = [str(h) for h in component.metadata.get("allowed_outbound_hosts", [])]
        rendered = []
        for index, template in enumerate(hosts):
            where = f"component.{component.id}.allowed_outbound_hosts[{index}]"
            try:
                text = self.variables.render(template)
                parse_allowed_host(text)
            except VariableError as e:
                raise ManifestError(self.manifest_name, where, str(e)) from None
            except ValueError as e:
                raise ManifestError(
                    self.manifest_name, where, f"{e} (rendered from {quote(template)})"
                ) from None
            rendered.append(text)
        return OutboundPolicy.parse(rendered)

    @property
    def manifest_name(self) -> str:
        """The app's manifest file as errors name it."""
        origin = str(self.app.metadata.get("origin", ""))
        return str(url_to_path(origin)) if origin.startswith("file:") else origin or "spin.toml"

    @property
    def config_base(self) -> Path:
        """What relative paths in the runtime config are relative to."""
        return self.runtime_config.base_dir or self.state_dir


class ComponentContext:
    """What a factor sees of one component when it prepares the component's share."""

    def __init__(self, app: AppContext, component: LockedComponent, files_root: Path | None):
        self.app = app
        self.component = component
        self.files_root = files_root

    @property
    def id(self) -> str:
        return self.component.id

    def metadata_list(self, key: str) -> list[str]:
        """A list in the component's metadata (`key_value_stores`, `databases`, …)."""
        return [str(v) for v in self.component.metadata.get(key, [])]

    @functools.cached_property
    def policy(self) -> OutboundPolicy:
        """`allowed_outbound_hosts`, templates rendered (the networking every outbound
        factor checks against)."""
        return self.app.policies[self.component.id]


class Factor(ABC, Generic[AppState, Share]):
    """One host capability (see the module docstring)."""

    #: Names the capability in an instance's state; host functions look it up with it.
    key: Key[Share]
    #: The WIT interfaces it serves, each at every version it is served at.
    interfaces: Sequence[Interface] = ()

    @abstractmethod
    def configure_app(self, ctx: AppContext) -> AppState:
        """Check the runtime config against the app; build the app state. Raises a
        `WasmletError` naming what is wrong."""

    @abstractmethod
    def prepare(self, state: AppState, ctx: ComponentContext) -> Share:
        """A component's share of the app state."""

    def close_app(self, state: AppState) -> None:
        """Release what `configure_app` made (clients, threads); the app has stopped and no
        guest runs any more."""

    def serves(self, imports: Iterable[str]) -> bool:
        """Whether a component with these imports uses this factor."""
        return any(i.serves(name) for name in imports for i in self.interfaces)

    def loaded(self) -> Factor[AppState, Share]:
        """The factor itself (a `LazyFactor`'s, once imported)."""
        return self


class StatelessFactor(Factor[None, Share]):
    """A factor with no app state of its own (it needs only the component)."""

    def configure_app(self, ctx: AppContext) -> None:
        return None


class LazyFactor(StatelessFactor[Any]):
    """The stateless factor `FACTOR` of module `module`, imported when a component imports
    one of the interfaces named `names` (without versions: `fermyon:spin/postgres`); what
    it serves is then decided by the factor itself."""

    def __init__(self, module: str, names: Iterable[str]) -> None:
        self.module = module
        self.names = frozenset(names)
        self._factor: StatelessFactor[Any] | None = None

    def serves(self, imports: Iterable[str]) -> bool:
        names = list(imports)
        if not any(name.partition("@")[0] in self.names for name in names):
            return False
        return self.loaded().serves(names)

    def loaded(self) -> StatelessFactor[Any]:
        if self._factor is None:
            factor = importlib.import_module(self.module).FACTOR
            if not isinstance(factor, StatelessFactor):  # its app state would be skipped
                raise TypeError(f"{self.module}.FACTOR is not a StatelessFactor")
            self._factor = factor
        return self._factor

    def prepare(self, state: None, ctx: ComponentContext) -> Any:
        return self.loaded().prepare(state, ctx)


@dataclass(frozen=True)
class ComponentFactors:
    """The factors one component uses: the interfaces its linker needs and the capability
    shares its instances get."""

    interfaces: list[Interface]
    capabilities: dict[Key[Any], Any]


class AppFactors:
    """Every registered factor, configured for one app."""

    def __init__(self, ctx: AppContext, factors: Sequence[Factor[Any, Any]]) -> None:
        self.ctx = ctx
        ctx.policies  # noqa: B018 (checks every component's outbound hosts now, at startup)
        self._states = [(f, f.configure_app(ctx)) for f in factors]

    def prepare(
        self, component: LockedComponent, imports: Iterable[str], files_root: Path | None
    ) -> ComponentFactors:
        """The factors a component with these imports uses, prepared for it."""
        names = list(imports)
        cctx = ComponentContext(self.ctx, component, files_root)
        interfaces: list[Interface] = []
        capabilities: dict[Key[Any], Any] = {}
        for lazy, state in self._states:
            if lazy.serves(names):
                factor = lazy.loaded()
                interfaces += factor.interfaces
                capabilities[factor.key] = factor.prepare(state, cctx)
        return ComponentFactors(interfaces, capabilities)

    def close(self) -> None:
        """Release every factor's app state, the last configured first."""
        for factor, state in reversed(self._states):
            try:
                factor.close_app(state)
            except Exception:
                log.exception("closing the %s factor", type(factor).__name__)
