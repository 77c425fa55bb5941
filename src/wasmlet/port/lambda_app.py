"""A ported project's files: spin.toml (one `[[trigger.http]]` per route, one component per
group of functions) and the build directories of its components, `.wasmlet/lambda/` for
Python (`lambda_python.py`) and `.wasmlet/lambda-js/` for Node.js (`lambda_js.py`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tomli_w

from . import lambda_js, lambda_python
from .cfn import PortError
from .handlers import NODE, PYTHON
from .lambda_plan import Component
from .lambda_python import MARKER, _write
from .model import Project


def _table(component: Component, project: Project, out: Path) -> dict[str, Any]:
    if component.language == NODE:
        return lambda_js.component_table(component, project, out)
    return lambda_python.component_table(component, project, out)


def manifest(project: Project, components: list[Component], out: Path) -> str:
    """spin.toml's text."""
    triggers = [{"route": r.route, "component": c.id} for c in components for r in c.routes]
    unique = list({t["route"]: t for t in triggers}.values())
    data = {
        "spin_manifest_version": 2,
        "application": {
            "name": project.name,
            "version": "0.1.0",
            "description": project.description or f"{project.source.name}, ported by wasmlet",
        },
        "trigger": {"http": unique},
        "component": {c.id: _table(c, project, out) for c in components},
    }
    dirs = " and ".join(
        d
        for d, lang in ((lambda_python.WORKDIR + "/", PYTHON), (lambda_js.WORKDIR + "/", NODE))
        if any(c.language == lang for c in components)
    )
    header = (
        f"{MARKER} {project.kind} {project.source.name}`: run it again after changing\n"
        f"# {project.source.name} (it rewrites this file and {dirs}; your code stays).\n"
    )
    return header + tomli_w.dumps(data)


def write(project: Project, components: list[Component], out: Path, *, force: bool) -> None:
    """Write spin.toml and the components' build directories into `out`."""
    spin = out / "spin.toml"
    if spin.is_file() and not force and not spin.read_text(encoding="utf-8").startswith(MARKER):
        raise PortError(
            f"{spin}: exists and was not written by wasmlet port; move it away or pass --force"
        )
    node = [c for c in components if c.language == NODE]
    python = [c for c in components if c.language != NODE]
    # A build directory no component needs is left alone, but loses its components' entries.
    if python or (out / lambda_python.WORKDIR).is_dir():
        lambda_python.write_workdir(project, python, out)
    if node or (out / lambda_js.WORKDIR).is_dir():
        lambda_js.write_workdir(project, node, out)
    _write(spin, manifest(project, components, out).encode())
