"""Port a project: read it, plan its components, write the app; and the report."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import lambda_js, lambda_python
from .cfn import PortError
from .handlers import NODE
from .lambda_app import write
from .lambda_plan import Component, plan
from .model import Project
from .sam import read_sam
from .serverless import read_serverless


@dataclass
class PortResult:
    project: Project
    components: list[Component]
    out: Path


def port_aws_sam(
    template: Path,
    *,
    region: str = "us-east-1",
    overrides: dict[str, str] | None = None,
    without_auth: bool = False,
    force: bool = False,
) -> PortResult:
    """Port the SAM project of `template`: spin.toml and .wasmlet/lambda/ next to it."""
    project = read_sam(template, region=region, overrides=overrides, without_auth=without_auth)
    return _port(project, force=force)


def port_serverless(
    config: Path,
    *,
    stage: str | None = None,
    region: str | None = None,
    without_auth: bool = False,
    force: bool = False,
) -> PortResult:
    """Port the Serverless Framework service of `config`: spin.toml and .wasmlet/ next to it."""
    project = read_serverless(config, stage=stage, region=region, without_auth=without_auth)
    return _port(project, force=force)


def _port(project: Project, *, force: bool) -> PortResult:
    if not project.functions:
        reasons = "".join(f"\n  {note}" for note in project.notes) or "\n  (no functions)"
        raise PortError(f"{project.source.name}: nothing to port:{reasons}")
    components = plan(project)
    out = project.source.parent
    write(project, components, out, force=force)
    return PortResult(project, components, out)


def report(result: PortResult) -> str:
    """What was ported, what was not and why, and the limits to run it with."""
    project = result.project
    names = {f.logical_id: f for f in project.functions}
    workdirs = {
        lambda_js.WORKDIR if c.language == NODE else lambda_python.WORKDIR
        for c in result.components
    }
    dirs = sorted(f"{d}/" for d in workdirs)
    lines = [
        f"Ported {project.source.name} to spin.toml (build directory {' and '.join(dirs)}): "
        f"{len(project.functions)} function(s) in {len(result.components)} component(s)"
    ]
    for component in result.components:
        for route in component.routes:
            methods = ",".join(route.methods) or "ANY"
            f = names[route.function]
            stage = f", stage {route.stage}" if route.stage != "$default" else ""
            lines.append(
                f"  {component.id}: {methods} {route.route}  <- {f.logical_id} "
                f"({f.handler}; {route.kind} event{stage})"
            )
    if project.notes:
        lines.append("Not ported (or not as on AWS):")
        lines += [f"  {note}" for note in project.notes]
    slow = max(project.functions, key=lambda f: f.timeout)
    big = max(project.functions, key=lambda f: f.memory_mb)
    lines.append(
        "Limits are per function on Lambda, per app in wasmlet: run with "
        f"`wasmlet up --request-timeout {slow.timeout:g} --max-instance-memory {big.memory_mb}Mi` "
        f"(the timeout of {slow.logical_id}, the memory size of {big.logical_id})"
    )
    lines.append("Next: wasmlet build && wasmlet up")
    return "\n".join(lines)
