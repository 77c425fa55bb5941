"""What a port reads from a serverless project, whatever its format (AWS SAM, the Serverless
Framework): functions with their runtime, handler, code, settings and HTTP events, and notes
on what was not ported and why."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# Event kinds of the Lambda adapter (wasmlet_lambda.events.KINDS).
HTTP_API = "http-api"
HTTP_API_V1 = "http-api-1.0"
REST = "rest"
FUNCTION_URL = "function-url"
ALB = "alb"
ALB_MULTI = "alb-multi-value"


@dataclass(frozen=True)
class Note:
    """Something of the project that was not ported (or not as it was), and why."""

    where: str  # "template.yaml: Resources.Orders.Events.Queue"
    what: str
    why: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}: {self.why}"


@dataclass(frozen=True)
class HttpEvent:
    """An HTTP trigger of a function."""

    where: str  # its place in the project file, for messages
    kind: str  # HTTP_API, HTTP_API_V1, REST, FUNCTION_URL, ALB or ALB_MULTI
    path: str  # the API's route path ("/items/{id}", "/{proxy+}"); "" for $default or a URL
    method: str | None  # upper-case; None for any method
    stage: str = "$default"


@dataclass
class LambdaFunction:
    """A function to port: its code, handler, settings and HTTP events."""

    logical_id: str  # the template's name for it
    name: str  # what `context.function_name` says (FunctionName, else the logical id)
    where: str  # "template.yaml: Resources.HelloWorldFunction"
    runtime: str  # "python3.12", "nodejs22.x"
    handler: str  # "app.lambda_handler", "src/app.handler"
    code_dir: Path  # absolute
    environment: dict[str, str] = field(default_factory=dict)
    memory_mb: int = 128
    timeout: float = 3.0
    events: list[HttpEvent] = field(default_factory=list)
    preload: tuple[str, ...] = ()


@dataclass
class Project:
    """A project read by a port: where it is, its functions and what was left out."""

    source: Path  # the project file (template.yaml)
    name: str  # the app's name in spin.toml
    description: str
    region: str
    kind: str = "aws-sam"  # the `wasmlet port` command that reads it
    functions: list[LambdaFunction] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
