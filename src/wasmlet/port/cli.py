"""`wasmlet port`: its command line (light: the port's modules load when it runs)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import WasmletError

EPILOG = """\
examples:
  wasmlet port aws-sam                      ./template.yaml -> ./spin.toml
  wasmlet port aws-sam path/to/template.yaml --region eu-west-1
  wasmlet port aws-sam --parameter-overrides Stage=dev TableName=items

then: wasmlet build && wasmlet up          (the same routes, handlers unchanged)

Ported: AWS::Serverless::Function resources with Runtime python3.x (Globals.Function
applied), their Api (REST, payload 1.0), HttpApi (payload 2.0 or 1.0) events and
FunctionUrlConfig, Environment.Variables, Handler, CodeUri and requirements.txt. Not ported,
and listed with why: other runtimes, non-HTTP events, routes behind authorizers, layers,
other AWS resources. See docs/serverless.md.
"""


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return key, value


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `port` (with `aws-sam`) to the `wasmlet` command line."""
    port = sub.add_parser(
        "port",
        help="bring a serverless project over: its handlers, unchanged, as a Spin app",
        description="Write a spin.toml (and a build directory) for a serverless project, so "
        "that `wasmlet build && wasmlet up` serves its HTTP functions, their code unchanged.",
    )
    kinds = port.add_subparsers(dest="port_kind", metavar="KIND", required=True)
    sam = kinds.add_parser(
        "aws-sam",
        help="an AWS SAM template with Python Lambda functions",
        description="Port an AWS SAM project: each Python Lambda function with HTTP events "
        "(API Gateway REST and HTTP APIs, function URLs) becomes a component that runs its "
        "handler unchanged, with the event and context Lambda would give it. spin.toml and "
        ".wasmlet/lambda/ are written next to the template; what is not ported is listed.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sam.add_argument(
        "template",
        nargs="?",
        type=Path,
        help="the SAM template (default: template.yaml, template.yml or template.json in .)",
    )
    sam.add_argument(
        "--region",
        default="us-east-1",
        help="AWS_REGION for the functions and AWS::Region in the template (default: %(default)s)",
    )
    sam.add_argument(
        "--parameter-overrides",
        nargs="+",
        type=_key_value,
        default=[],
        metavar="NAME=VALUE",
        help="values of template parameters (as `sam deploy --parameter-overrides`)",
    )
    sam.add_argument(
        "--without-auth",
        action="store_true",
        help="also serve routes that need an authorizer, API key or IAM auth on AWS, "
        "WITHOUT checking it (by default they are not served)",
    )
    sam.add_argument(
        "--force", action="store_true", help="replace a spin.toml not written by wasmlet port"
    )
    sam.set_defaults(func=cmd_port_aws_sam)


def _find_template(given: Path | None) -> Path:
    if given is not None:
        if not given.is_file():
            raise WasmletError(f"{given}: no such file")
        return given
    for name in ("template.yaml", "template.yml", "template.json"):
        if Path(name).is_file():
            return Path(name)
    raise WasmletError("no template.yaml, template.yml or template.json here: name the template")


def cmd_port_aws_sam(args: argparse.Namespace) -> int:
    from .run import port_aws_sam, report

    result = port_aws_sam(
        _find_template(args.template),
        region=args.region,
        overrides=dict(args.parameter_overrides),
        without_auth=args.without_auth,
        force=args.force,
    )
    print(report(result))
    return 0
