"""The Spin application manifest (`spin.toml`), versions 2 and 1.

`load_manifest(path)` reads a manifest into an `AppManifest` (version 1 files are converted),
checked the way Spin checks it; every problem is a `ManifestError` naming the file and key path.
"""

from ._checks import (
    WELL_KNOWN_PORTS,
    AllowedHost,
    convert_allowed_http_hosts,
    parse_allowed_host,
)
from ._load import MANIFEST_FILE, join_key, load_manifest, manifest_file, parse_manifest
from ._schema import (
    AppComponentDependency,
    Application,
    AppManifest,
    BuildConfig,
    Component,
    ComponentProfile,
    FilePlacement,
    HttpDependency,
    HttpExecutor,
    HttpTrigger,
    LocalDependency,
    PackageDependency,
    PrivateRoute,
    RegistrySource,
    RemoteSource,
    StaticResponse,
    Trigger,
    Triggers,
    Variable,
)
from ._templates import Template, TemplateError, parse_template, quote, unknown_variables

__all__ = [
    "MANIFEST_FILE",
    "WELL_KNOWN_PORTS",
    "AllowedHost",
    "AppComponentDependency",
    "AppManifest",
    "Application",
    "BuildConfig",
    "Component",
    "ComponentProfile",
    "FilePlacement",
    "HttpDependency",
    "HttpExecutor",
    "HttpTrigger",
    "LocalDependency",
    "PackageDependency",
    "PrivateRoute",
    "RegistrySource",
    "RemoteSource",
    "StaticResponse",
    "Template",
    "TemplateError",
    "Trigger",
    "Triggers",
    "Variable",
    "convert_allowed_http_hosts",
    "join_key",
    "load_manifest",
    "manifest_file",
    "parse_allowed_host",
    "parse_manifest",
    "parse_template",
    "quote",
    "unknown_variables",
]
