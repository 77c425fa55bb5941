"""Pydantic models of `spin.toml`, manifest version 2 (Spin's `schema/v2.rs`).

Every table rejects unknown fields, as Spin does, except the ones Spin leaves open: trigger
tables of types other than `http`, `[application.trigger.<type>]` and `tool` tables. Values are
checked strictly (no string-to-number coercion). Checks that need no context beyond one value
(id syntax, allowed-host syntax, template syntax, file patterns) are `_checks.py`; checks that
relate values to each other (unknown variables and components) live in `_load.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    model_validator,
)

from ._checks import (
    SHAPE_ERROR_TYPE,
    ComponentId,
    DependencyName,
    Digest,
    FilePattern,
    HttpHost,
    Label,
    OutboundHost,
    PackageName,
    SemVer,
    TemplateStr,
    VariableName,
    convert_allowed_http_hosts,
    fail,
)
from ._templates import quote

# -- models -------------------------------------------------------------------------------------


class Model(BaseModel):
    """Base of every manifest table: strict types, unknown fields rejected."""

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


def _tag(model: type[BaseModel]) -> str:
    """The union tag of a model; `_load.key_path` leaves `<...>` tags out of key paths."""
    return f"<{model.__name__}>"


def _shape(tag_of: Callable[[Any], str | None], expected: str) -> Discriminator:
    """A discriminator picking a union member from the value's shape (or failing cleanly)."""

    def tag(value: Any) -> str | None:
        return _tag(type(value)) if isinstance(value, BaseModel) else tag_of(value)

    return Discriminator(tag, custom_error_type=SHAPE_ERROR_TYPE, custom_error_message=expected)


def _keys_tag(
    value: Any, choices: dict[str, type[BaseModel]], fallback: type[BaseModel] | None
) -> str | None:
    """Tag of a table: the model of the first of `choices`' keys it has, else `fallback`."""
    if not isinstance(value, dict):
        return None
    model = next((m for key, m in choices.items() if key in value), fallback)
    return _tag(model) if model else None


def _str_or_table(table_tag: Callable[[Any], str | None]) -> Callable[[Any], str | None]:
    def tag_of(value: Any) -> str | None:
        return "<string>" if isinstance(value, str) else table_tag(value)

    return tag_of


# component source


class RemoteSource(Model):
    url: str
    digest: Digest


class RegistrySource(Model):
    registry: str | None = None
    package: PackageName
    version: SemVer


def _source_tag(value: Any) -> str | None:
    return _keys_tag(
        value,
        {
            "url": RemoteSource,
            "digest": RemoteSource,
            "package": RegistrySource,
            "version": RegistrySource,
        },
        None,
    )


ComponentSource = Annotated[
    Annotated[str, Tag("<string>")]
    | Annotated[RemoteSource, Tag(_tag(RemoteSource))]
    | Annotated[RegistrySource, Tag(_tag(RegistrySource))],
    _shape(
        _str_or_table(_source_tag),
        'expected a file path, { url = "...", digest = "sha256:..." } or '
        '{ registry = "...", package = "...", version = "..." }',
    ),
]


# files


class FilePlacement(Model):
    source: str
    destination: str


FilesMount = Annotated[
    Annotated[FilePattern, Tag("<string>")] | Annotated[FilePlacement, Tag(_tag(FilePlacement))],
    _shape(
        _str_or_table(lambda v: _keys_tag(v, {}, FilePlacement)),
        'expected a glob pattern or { source = "...", destination = "..." }',
    ),
]


# build


def _list_tag(value: Any) -> str | None:
    return "<list>" if isinstance(value, list) else None


Commands = Annotated[
    Annotated[str, Tag("<string>")] | Annotated[list[str], Tag("<list>")],
    _shape(_str_or_table(_list_tag), "expected a command string or an array of commands"),
]


class ProfileBuild(Model):
    """`profile.<name>.build`: only the command can change."""

    command: Commands

    def commands(self) -> list[str]:
        return [self.command] if isinstance(self.command, str) else list(self.command)


class BuildConfig(ProfileBuild):
    workdir: str | None = None
    watch: list[str] = Field(default_factory=list)


# targets


class RegistryTarget(Model):
    registry: str
    id: str


class FileTarget(Model):
    path: str


TargetRef = Annotated[
    Annotated[str, Tag("<string>")]
    | Annotated[RegistryTarget, Tag(_tag(RegistryTarget))]
    | Annotated[FileTarget, Tag(_tag(FileTarget))],
    _shape(
        _str_or_table(lambda v: _keys_tag(v, {"path": FileTarget}, RegistryTarget)),
        'expected an environment id, { registry = "...", id = "..." } or { path = "..." }',
    ),
]


# dependencies


def _inherit_tag(value: Any) -> str | None:
    return "<bool>" if isinstance(value, bool) else _list_tag(value)


InheritConfiguration = Annotated[
    Annotated[bool, Tag("<bool>")] | Annotated[list[str], Tag("<list>")],
    _shape(_inherit_tag, "expected true, false or an array of configuration names"),
]


class _DependencyTable(Model):
    export: str | None = None
    inherit_configuration: InheritConfiguration | None = None
    environment: dict[str, str] = Field(default_factory=dict)


class PackageDependency(_DependencyTable):
    version: str
    registry: str | None = None
    package: PackageName | None = None


class LocalDependency(_DependencyTable):
    path: str


class HttpDependency(_DependencyTable):
    url: str
    digest: Digest


class AppComponentDependency(_DependencyTable):
    component: ComponentId


def _dependency_tag(value: Any) -> str | None:
    return _keys_tag(
        value,
        {
            "path": LocalDependency,
            "url": HttpDependency,
            "digest": HttpDependency,
            "component": AppComponentDependency,
        },
        PackageDependency,
    )


Dependency = Annotated[
    Annotated[str, Tag("<string>")]
    | Annotated[PackageDependency, Tag(_tag(PackageDependency))]
    | Annotated[LocalDependency, Tag(_tag(LocalDependency))]
    | Annotated[HttpDependency, Tag(_tag(HttpDependency))]
    | Annotated[AppComponentDependency, Tag(_tag(AppComponentDependency))],
    _shape(
        _str_or_table(_dependency_tag),
        'expected a version requirement or a table with "version", "path", "url" or "component"',
    ),
]


# component


class ComponentProfile(Model):
    source: ComponentSource | None = None
    environment: dict[str, str] = Field(default_factory=dict)
    dependencies: dict[DependencyName, Dependency] = Field(default_factory=dict)
    build: ProfileBuild | None = None


class Component(Model):
    source: ComponentSource
    description: str = ""
    variables: dict[VariableName, TemplateStr] = Field(default_factory=dict)
    environment: dict[str, str] = Field(default_factory=dict)
    files: list[FilesMount] = Field(default_factory=list)
    exclude_files: list[str] = Field(default_factory=list)
    allowed_http_hosts: list[HttpHost] = Field(default_factory=list)
    allowed_outbound_hosts: list[OutboundHost] = Field(default_factory=list)
    key_value_stores: list[Label] = Field(default_factory=list)
    sqlite_databases: list[Label] = Field(default_factory=list)
    ai_models: list[str] = Field(default_factory=list)
    targets: list[TargetRef] | None = None
    build: BuildConfig | None = None
    tool: dict[str, dict[str, Any]] = Field(default_factory=dict)
    dependencies_inherit_configuration: bool | None = None
    dependencies: dict[DependencyName, Dependency] = Field(default_factory=dict)
    profile: dict[str, ComponentProfile] = Field(default_factory=dict)

    def normalized_allowed_outbound_hosts(self) -> list[str]:
        """`allowed_outbound_hosts` plus the converted deprecated `allowed_http_hosts`."""
        converted = convert_allowed_http_hosts(self.allowed_http_hosts, False)
        return [*self.allowed_outbound_hosts, *converted]

    def local_source(self) -> str | None:
        """The source path when the source is a local file, else None."""
        return self.source if isinstance(self.source, str) else None


def _component_spec_tag(value: Any) -> str | None:
    return "<string>" if isinstance(value, str) else _keys_tag(value, {}, Component)


ComponentSpec = Annotated[
    Annotated[ComponentId, Tag("<string>")] | Annotated[Component, Tag(_tag(Component))],
    _shape(_component_spec_tag, "expected a component id or an inline component table"),
]

ComponentSpecs = Annotated[
    Annotated[list[ComponentSpec], Tag("<list>")] | Annotated[ComponentSpec, Tag("<one>")],
    Discriminator(lambda v: "<list>" if isinstance(v, list) else "<one>"),
]


# variables


class Variable(Model):
    description: str | None = None
    required: bool = False
    default: str | None = None
    secret: bool = False

    @model_validator(mode="after")
    def _required_xor_default(self) -> Variable:
        if self.required and self.default is not None:
            fail("a variable cannot be both `required = true` and have a `default`")
        if not self.required and self.default is None:
            fail("a variable must either be `required = true` or have a `default`")
        return self


# triggers


class PrivateRoute(Model):
    private: bool

    @model_validator(mode="after")
    def _must_be_private(self) -> PrivateRoute:
        if not self.private:
            fail("`private = false` is not allowed: give a route string or `{ private = true }`")
        return self


Route = Annotated[
    Annotated[str, Tag("<string>")] | Annotated[PrivateRoute, Tag(_tag(PrivateRoute))],
    _shape(
        _str_or_table(lambda v: _keys_tag(v, {}, PrivateRoute)),
        "expected a route string or { private = true }",
    ),
]


def _check_entrypoint(value: str | None) -> str | None:
    if value is not None and value != "_start":
        fail(f'unsupported Wagi entrypoint {quote(value)}: it is deprecated and must be "_start"')
    return value


class HttpExecutor(Model):
    type: Literal["http", "spin", "wagi"]
    argv: str | None = None
    entrypoint: Annotated[str | None, AfterValidator(_check_entrypoint)] = None

    @model_validator(mode="after")
    def _wagi_options_only(self) -> HttpExecutor:
        if self.type != "wagi":
            for name in ("argv", "entrypoint"):
                if getattr(self, name) is not None:
                    fail(f'`{name}` is only allowed with executor type "wagi"')
        return self


def _check_status(value: int | None) -> int | None:
    if value is not None and not 100 <= value <= 999:
        fail(f"invalid HTTP status code {value}: expected 100 to 999")
    return value


class StaticResponse(Model):
    status_code: Annotated[int | None, AfterValidator(_check_status)] = None
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = None


class HttpTrigger(Model):
    """A `[[trigger.http]]` table."""

    id: str = ""
    component: ComponentSpec | None = None
    route: Route
    executor: HttpExecutor | None = None
    static_response: StaticResponse | None = None

    @model_validator(mode="after")
    def _component_xor_static_response(self) -> HttpTrigger:
        if (self.component is None) == (self.static_response is None):
            which = "neither" if self.component is None else "both"
            fail(
                f"a trigger must have exactly one of `component` or `static_response` (has {which})"
            )
        return self

    def config(self) -> dict[str, Any]:
        """The trigger's settings as written, with the component as an id."""
        out: dict[str, Any] = self.model_dump(
            exclude={"id", "component"}, exclude_unset=True, exclude_none=True
        )
        if isinstance(self.component, str):
            out["component"] = self.component
        return out


class Trigger(Model):
    """A trigger table of any type but `http`: `id`, `component(s)` and open settings."""

    model_config = ConfigDict(extra="allow", strict=True)

    id: str = ""
    component: ComponentSpec | None = None
    components: dict[str, ComponentSpecs] = Field(default_factory=dict)

    def config(self) -> dict[str, Any]:
        """The trigger's settings as written, with components as ids."""
        out = dict(self.model_extra or {})
        if isinstance(self.component, str):
            out["component"] = self.component
        if self.components:
            out["components"] = {
                key: [s for s in (v if isinstance(v, list) else [v]) if isinstance(s, str)]
                for key, v in self.components.items()
            }
        return out


AnyTrigger = HttpTrigger | Trigger


class Triggers(Model):
    """The `[trigger]` table: `http` triggers typed, other types kept as open tables."""

    model_config = ConfigDict(extra="allow", strict=True)
    __pydantic_extra__: dict[str, list[Trigger]] = Field(init=False)

    http: list[HttpTrigger] = Field(default_factory=list)

    def by_type(self) -> dict[str, list[AnyTrigger]]:
        """Trigger lists by type, `http` first, omitting empty lists."""
        out: dict[str, list[AnyTrigger]] = {}
        if self.http:
            out["http"] = list(self.http)
        for trigger_type, triggers in (self.model_extra or {}).items():
            if triggers:
                out[trigger_type] = list(triggers)
        return out


# application


class Application(Model):
    name: str
    version: str = ""
    description: str = ""
    authors: list[str] = Field(default_factory=list)
    targets: list[TargetRef] = Field(default_factory=list)
    trigger: dict[str, dict[str, Any]] = Field(default_factory=dict)
    tool: dict[str, dict[str, Any]] = Field(default_factory=dict)


class AppManifest(Model):
    """A `spin.toml` (version 2; version 1 manifests are converted to this).

    `load_manifest` returns it normalised: every trigger has an `id`, and inline components
    have moved into `components` (the trigger's `component` is then the new id).
    """

    spin_manifest_version: Literal[2]
    application: Application
    variables: dict[VariableName, Variable] = Field(default_factory=dict)
    triggers: Triggers = Field(alias="trigger")
    components: dict[ComponentId, Component] = Field(default_factory=dict, alias="component")

    # Where things were written in the file, for error messages: inline components live under
    # their trigger and version 1 manifests have `[[component]]` arrays (see `_load`, `_v1`).
    _paths: dict[str, str] = PrivateAttr(default_factory=dict)
    _source_version: int = PrivateAttr(default=2)

    @property
    def name(self) -> str:
        return self.application.name

    @property
    def source_version(self) -> int:
        """The manifest version of the file this was read from (1 or 2)."""
        return self._source_version

    def all_triggers(self) -> list[tuple[str, AnyTrigger]]:
        """Every trigger as (type, trigger), `http` first, in file order."""
        return [(t, trig) for t, trigs in self.triggers.by_type().items() for trig in trigs]

    def trigger_types(self) -> list[str]:
        return list(self.triggers.by_type())

    def component_path(self, component_id: str, field: str | None = None) -> str:
        """Key path of a component (or one of its fields) in its file, e.g. `component.hello`."""
        base = self._paths.get(f"component:{component_id}", f"component.{component_id}")
        if field is None:
            return base
        if self._source_version == 1 and field == "variables":
            field = "config"
        return f"{base}.{field}"

    def trigger_path(self, trigger_type: str, index: int) -> str:
        """Key path of a trigger in its file, e.g. `trigger.http[0]`."""
        key = f"trigger:{trigger_type}[{index}]"
        return self._paths.get(key, f"trigger.{trigger_type}[{index}]")

    def app_trigger_path(self, trigger_type: str) -> str:
        """Key path of the application-wide settings of a trigger type."""
        if self._source_version == 1:
            return "trigger"
        return f"application.trigger.{trigger_type}"

    def set_origin(self, paths: dict[str, str], source_version: int) -> None:
        """Record where components and triggers were written (used by the loaders)."""
        self._paths = dict(paths)
        self._source_version = source_version

    def add_component(self, component_id: str, component: Component, path: str) -> None:
        """Add a component that was written at key path `path` (an inline component)."""
        self.components[component_id] = component
        self._paths[f"component:{component_id}"] = path
