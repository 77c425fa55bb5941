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

Ported: AWS::Serverless::Function resources with Runtime python3.x or nodejs18.x and later
(Globals.Function applied), their Api (REST, payload 1.0), HttpApi (payload 2.0 or 1.0) events
and FunctionUrlConfig, Environment.Variables, Handler (Node.js: app.js, .mjs, .cjs or .ts),
CodeUri, requirements.txt and package.json. Not ported,
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
        help="an AWS SAM template with Python or Node.js Lambda functions",
        description="Port an AWS SAM project: each Python or Node.js Lambda function with HTTP "
        "events (API Gateway REST and HTTP APIs, function URLs) becomes a component that runs "
        "its handler unchanged, with the event and context Lambda would give it. spin.toml and "
        ".wasmlet/lambda/ (Python) or .wasmlet/lambda-js/ (Node.js) are written next to the "
        "template; what is not ported is listed.",
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
    _auth_and_force(sam)
    sam.set_defaults(func=cmd_port_aws_sam)
    _register_serverless(kinds)
    _register_azure(kinds)


SERVERLESS_EPILOG = """\
examples:
  wasmlet port serverless                   ./serverless.yml -> ./spin.toml
  wasmlet port serverless path/to/serverless.yml --stage prod --region eu-west-1

then: wasmlet build && wasmlet up          (the same routes, handlers unchanged)

Ported: functions with a python3.x or nodejs18.x-and-later runtime (provider's runtime,
environment, memorySize, timeout applied; the function's win), their httpApi ('*', 'GET /path'
or path/method), http (REST) and alb events and url; ${self:}, ${env:}, ${opt:stage},
${sls:stage}, ${aws:region}, ${param:} and ${file(...)} variables. Not ported, and listed with
why: other runtimes, non-HTTP events, authorizers and private routes, layers, plugins,
resources, variables without a value. See docs/serverless.md.
"""


def _register_serverless(kinds: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sls = kinds.add_parser(
        "serverless",
        help="a Serverless Framework service (serverless.yml) with Python or Node.js functions",
        description="Port a Serverless Framework service: each Python or Node.js function with "
        "HTTP events (httpApi, http, alb, url) becomes a component that runs its handler "
        "unchanged, with the event and context Lambda would give it. spin.toml and .wasmlet/ "
        "are written next to serverless.yml; what is not ported is listed.",
        epilog=SERVERLESS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sls.add_argument(
        "config",
        nargs="?",
        type=Path,
        help="the service's file (default: serverless.yml, .yaml or .json in .)",
    )
    sls.add_argument("--stage", help="the stage (default: provider.stage, else dev)")
    sls.add_argument("--region", help="the region (default: provider.region, else us-east-1)")
    _auth_and_force(sls)
    sls.set_defaults(func=cmd_port_serverless)


def _auth_and_force(parser: argparse.ArgumentParser) -> None:
    """The options of the Lambda ports (AWS SAM, the Serverless Framework) alike."""
    parser.add_argument(
        "--without-auth",
        action="store_true",
        help="also serve routes that need an authorizer, API key or IAM auth on AWS, "
        "WITHOUT checking it (by default they are not served)",
    )
    parser.add_argument(
        "--force", action="store_true", help="replace a spin.toml not written by wasmlet port"
    )


AZURE_EPILOG = """\
examples:
  wasmlet port azure-functions              the app in . -> ./spin.toml
  wasmlet port azure-functions path/to/app --without-auth

then: wasmlet build && wasmlet up          (the same routes, functions unchanged)

Ported: Python apps of the v1 model (function.json folders) and the v2 model
(function_app.py), Node.js apps of the v4 model (@azure/functions 4.x); their HTTP functions
(route, methods, authLevel), host.json's extensions.http.routePrefix, local.settings.json's
Values (the environment) and the dependencies (requirements.txt, package.json). Not ported,
and listed with why: other triggers and bindings, keys of authLevel function/admin; other
languages are an error. See docs/serverless.md.
"""


def _register_azure(kinds: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    azure = kinds.add_parser(
        "azure-functions",
        help="an Azure Functions app in Python (v1, v2 models) or JavaScript (v4 model)",
        description="Port an Azure Functions app: its HTTP functions run unchanged, with the real "
        "azure-functions (Python) or @azure/functions (JavaScript) library, in one component "
        "that routes as the Functions host does. spin.toml and .wasmlet/azure/ are written in "
        "the app's directory; what is not ported is listed.",
        epilog=AZURE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    azure.add_argument(
        "app",
        nargs="?",
        type=Path,
        default=Path(),
        help="the app's directory, with host.json (default: .)",
    )
    azure.add_argument(
        "--without-auth",
        action="store_true",
        help="serve functions of authLevel function or admin WITHOUT checking any key (by "
        "default they answer 401, as Azure does to a request without a key)",
    )
    azure.add_argument(
        "--force", action="store_true", help="replace a spin.toml not written by wasmlet port"
    )
    azure.set_defaults(func=cmd_port_azure_functions)


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


def cmd_port_serverless(args: argparse.Namespace) -> int:
    from .run import port_serverless, report
    from .serverless import find

    result = port_serverless(
        find(args.config),
        stage=args.stage,
        region=args.region,
        without_auth=args.without_auth,
        force=args.force,
    )
    print(report(result))
    return 0


def cmd_port_azure_functions(args: argparse.Namespace) -> int:
    from .azure_app import port_azure_functions, report

    if not args.app.is_dir():
        raise WasmletError(f"{args.app}: no such directory")
    app = port_azure_functions(args.app, without_auth=args.without_auth, force=args.force)
    print(report(app))
    return 0
