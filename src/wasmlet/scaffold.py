"""`wasmlet new`: create an app from one of the templates shipped in `wasmlet/templates/`.

A template is a directory of files copied into the new project, with two placeholders
replaced in file contents and file names:

- `{{project-name}}`: the app name as given, kebab-case (`my-app`);
- `{{project-name | snake_case}}`: the same with `_` for `-` (`my_app`).

Any other `{{ ... }}` text is left alone. A file or directory name starting with `dot-` is
created with a leading `.` instead (`dot-gitignore` → `.gitignore`): package data globs skip
dotfiles, so templates cannot ship them under their real names.
"""

from __future__ import annotations

import re
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from .errors import WasmletError

_KEBAB = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
_PLACEHOLDER = re.compile(r"\{\{\s*project-name\s*(\|\s*snake_case\s*)?\}\}")
_DOT_PREFIX = "dot-"


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
        if entry.is_dir() and not entry.name.startswith(("_", "."))
    )


def validate_name(name: str) -> None:
    """Raise `WasmletError` unless `name` is kebab-case (`my-app`, `api2`, `hello-v2`)."""
    if not _KEBAB.fullmatch(name):
        raise WasmletError(
            f"invalid app name {name!r}: use kebab-case, lower-case letters and digits in words "
            "separated by single hyphens, starting with a letter (e.g. my-app)"
        )


def render(text: str, name: str) -> str:
    """Replace the project-name placeholders in `text`."""
    snake = name.replace("-", "_")
    return _PLACEHOLDER.sub(lambda m: snake if m.group(1) else name, text)


def _target_name(template_name: str, name: str) -> str:
    rendered = render(template_name, name)
    if rendered.startswith(_DOT_PREFIX):
        rendered = "." + rendered[len(_DOT_PREFIX) :]
    return rendered


def _template_files(directory: Traversable, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The relative paths (as name tuples) of the files under `directory`, sorted."""
    files: list[tuple[str, ...]] = []
    for entry in sorted(directory.iterdir(), key=lambda e: e.name):
        if entry.name == "__pycache__":
            continue
        if entry.is_dir():
            files.extend(_template_files(entry, (*prefix, entry.name)))
        elif entry.is_file():
            files.append((*prefix, entry.name))
    return files


def new_project(template: str, name: str, dest: Path) -> Path:
    """Create the app `name` from `template` in the directory `dest` and return `dest`.

    `dest` is the project directory itself; it may exist if it is empty. Raises `WasmletError`
    for an unknown template, a name that is not kebab-case, or a `dest` that is a file or a
    non-empty directory.
    """
    templates = list_templates()
    if template not in templates:
        available = ", ".join(templates) or "none"
        raise WasmletError(f"unknown template {template!r} (templates: {available})")
    validate_name(name)
    if dest.exists():
        if not dest.is_dir():
            raise WasmletError(f"cannot create the app in {dest}: it exists and is not a directory")
        if any(dest.iterdir()):
            raise WasmletError(
                f"cannot create the app in {dest}: the directory exists and is not empty"
            )

    source = _templates_root().joinpath(template)
    files = _template_files(source)
    dest.mkdir(parents=True, exist_ok=True)
    for parts in files:
        entry = source.joinpath(*parts)
        target = dest.joinpath(*(_target_name(part, name) for part in parts))
        target.parent.mkdir(parents=True, exist_ok=True)
        data = entry.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            target.write_bytes(data)
        else:
            target.write_bytes(render(text, name).encode("utf-8"))
    return dest
