"""`wasmlet new` and `wasmlet add`: apps and components from the templates in
`wasmlet/templates/`.

A template is a directory with:

- `template.toml`: `description` (shown by `--list`, and the default description of a new
  app), `needs` (the toolchain its build needs) and, for a template that is a serverless
  project (azure-python), `port`: the `wasmlet port` kind that `wasmlet new` runs on the new
  app to write its spin.toml and build directory;
- `content/`: the files of a new app, `spin.toml` among them;
- `component.toml`: the `[[trigger.http]]` and `[component.*]` tables `wasmlet add` appends
  to an existing spin.toml (the other files of `content/` go to the component's directory).

Placeholders, replaced in file contents and file names (any other `{{ ... }}` text is left
alone):

- `{{project-name}}`: the app or component name as given, kebab-case (`my-app`);
- `{{project-name | snake_case}}`: the same with `_` for `-` (`my_app`);
- `{{project-description}}`, `{{http-path}}` (the route, `/...` by default);
- `{{output-path}}` (`wasmlet add` only): the component's directory, relative to spin.toml.

A file or directory name starting with `dot-` is created with a leading `.` instead
(`dot-gitignore` → `.gitignore`): package data globs skip dotfiles, so templates cannot ship
them under their real names.
"""

from __future__ import annotations

import re
import shutil
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from .errors import WasmletError
from .manifest import load_manifest, manifest_file

_KEBAB = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
_PLACEHOLDER = re.compile(r"\{\{\s*([a-z][a-z-]*)\s*(\|\s*snake_case\s*)?\}\}")
_ROUTE = re.compile(r"/\S*")
_DOT_PREFIX = "dot-"
DEFAULT_ROUTE = "/..."


@dataclass(frozen=True)
class TemplateInfo:
    name: str
    description: str
    needs: str
    port: str = ""  # a `wasmlet port` kind run on the new app (it writes spin.toml)


def _templates_root() -> Traversable:
    return resources.files("wasmlet").joinpath("templates")


def list_templates() -> list[str]:
    """The names of the available templates, sorted."""
    root = _templates_root()
    if not root.is_dir():
        return []
    return sorted(
        entry.name
        for entry in root.iterdir()
        if entry.is_dir() and entry.joinpath("content").is_dir()
    )


def template_info(name: str) -> TemplateInfo:
    """A template's `template.toml`; `WasmletError` for an unknown template."""
    templates = list_templates()
    if name not in templates:
        available = ", ".join(templates) or "none"
        raise WasmletError(
            f"unknown template {name!r} (templates: {available}; see wasmlet new --list)"
        )
    meta = _templates_root().joinpath(name, "template.toml")
    data = tomllib.loads(meta.read_text(encoding="utf-8")) if meta.is_file() else {}
    return TemplateInfo(
        name,
        str(data.get("description", "")),
        str(data.get("needs", "")),
        str(data.get("port", "")),
    )


def validate_name(name: str) -> None:
    """Raise `WasmletError` unless `name` is kebab-case (`my-app`, `api2`, `hello-v2`)."""
    if not _KEBAB.fullmatch(name):
        raise WasmletError(
            f"invalid name {name!r}: use kebab-case, lower-case letters and digits in words "
            "separated by single hyphens, starting with a letter (e.g. my-app)"
        )


def validate_route(route: str) -> None:
    """Spin's rule for a template's HTTP path: `/` followed by no whitespace."""
    if not _ROUTE.fullmatch(route):
        raise WasmletError(
            f"invalid route {route!r}: it starts with / and has no spaces "
            "(e.g. /..., /api/..., /hello)"
        )


def validate_description(description: str) -> None:
    """The description goes into TOML and JSON strings as it is: no quotes, backslashes or
    control characters."""
    bad = [c for c in description if c in '"\\' or ord(c) < 0x20 or ord(c) == 0x7F]
    if bad:
        raise WasmletError(
            f"invalid description {description!r}: it cannot contain {bad[0]!r} "
            "(no quotes, backslashes or control characters)"
        )


def render(text: str, name: str, values: Mapping[str, str] | None = None) -> str:
    """Replace the placeholders in `text`: `project-name` (with `| snake_case`) and `values`."""
    known = {"project-name": name, **(values or {})}

    def replace(m: re.Match[str]) -> str:
        key, snake = m.group(1), m.group(2)
        if key not in known:
            return m.group(0)
        return known[key].replace("-", "_") if snake else known[key]

    return _PLACEHOLDER.sub(replace, text)


def _target_name(template_name: str, name: str) -> str:
    rendered = render(template_name, name)
    if rendered.startswith(_DOT_PREFIX):
        rendered = "." + rendered[len(_DOT_PREFIX) :]
    return rendered


def _template_files(directory: Traversable, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The relative paths (as name tuples) of the files under `directory`, sorted."""
    files: list[tuple[str, ...]] = []
    for entry in sorted(directory.iterdir(), key=lambda e: e.name):
        if entry.name in ("__pycache__", "node_modules"):
            continue
        if entry.is_dir():
            files.extend(_template_files(entry, (*prefix, entry.name)))
        elif entry.is_file():
            files.append((*prefix, entry.name))
    return files


def _check_dest(dest: Path) -> None:
    if dest.exists():
        if not dest.is_dir():
            raise WasmletError(f"cannot create {dest}: it exists and is not a directory")
        if any(dest.iterdir()):
            raise WasmletError(f"cannot create {dest}: the directory exists and is not empty")


def _values(info: TemplateInfo, description: str | None, route: str | None) -> dict[str, str]:
    description = info.description if description is None else description
    route = DEFAULT_ROUTE if route is None else route
    validate_description(description)
    validate_route(route)
    return {"project-description": description, "http-path": route}


def _copy_content(template: str, name: str, values: Mapping[str, str], dest: Path) -> list[Path]:
    """Render the template's content into `dest` (all but spin.toml when adding)."""
    source = _templates_root().joinpath(template, "content")
    adding = "output-path" in values
    written = []
    dest.mkdir(parents=True, exist_ok=True)
    for parts in _template_files(source):
        if adding and parts == ("spin.toml",):
            continue
        target = dest.joinpath(*(_target_name(part, name) for part in parts))
        target.parent.mkdir(parents=True, exist_ok=True)
        data = source.joinpath(*parts).read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            target.write_bytes(data)
        else:
            target.write_bytes(render(text, name, values).encode("utf-8"))
        written.append(target)
    return written


def new_project(
    template: str,
    name: str,
    dest: Path,
    *,
    description: str | None = None,
    route: str | None = None,
) -> Path:
    """Create the app `name` from `template` in the directory `dest` and return `dest`.

    `dest` is the project directory itself; it may exist if it is empty. Raises `WasmletError`
    for an unknown template, a name that is not kebab-case, a bad route or description, or a
    `dest` that is a file or a non-empty directory.
    """
    info = template_info(template)
    validate_name(name)
    values = _values(info, description, route)
    _check_dest(dest)
    _copy_content(template, name, values, dest)
    return dest


def add_component(
    template: str,
    name: str,
    app: Path,
    *,
    directory: str | None = None,
    description: str | None = None,
    route: str | None = None,
) -> Path:
    """Add the component `name` from `template` to the app at `app` (spin.toml or its
    directory): its files go to `directory` (default: `name`, relative to spin.toml) and its
    trigger and component tables are appended to spin.toml. Returns the component's directory.

    The route defaults to `/<name>/...`, so that the app's existing routes keep their
    components. Nothing is changed if the result would not be a valid manifest."""
    info = template_info(template)
    validate_name(name)
    file = manifest_file(app)
    manifest = load_manifest(file)  # the app must be valid before it is changed
    if name in manifest.components:
        raise WasmletError(f"{file}: the app already has a component {name!r}")
    output = directory or name
    if Path(output).is_absolute() or ".." in Path(output).parts:
        raise WasmletError(
            f"invalid directory {output!r}: it must be inside the app (relative to spin.toml)"
        )
    values = _values(info, description, route or f"/{name}/...")
    values["output-path"] = Path(output).as_posix()
    dest = file.parent / output
    _check_dest(dest)
    snippet = _templates_root().joinpath(template, "component.toml").read_text(encoding="utf-8")
    original = file.read_text(encoding="utf-8")
    created = not dest.exists()
    _copy_content(template, name, values, dest)
    separator = "" if original.endswith("\n\n") else ("\n" if original.endswith("\n") else "\n\n")
    file.write_text(original + separator + render(snippet, name, values), encoding="utf-8")
    try:
        load_manifest(file)
    except WasmletError:
        file.write_text(original, encoding="utf-8")
        if created:
            shutil.rmtree(dest, ignore_errors=True)
        raise
    return dest
