"""`wasmlet registry …`: push, pull, login, logout, build-image."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import Any

from ..errors import WasmletError
from ..locked import LockedApp

EPILOG = """\
examples:
  wasmlet registry push ghcr.io/acme/hello:v1 -f examples/hello
  wasmlet registry push localhost:5000/hello:v1 --insecure
  wasmlet registry pull ghcr.io/acme/hello:v1
  wasmlet up -f ghcr.io/acme/hello:v1
  echo "$TOKEN" | wasmlet registry login ghcr.io -u acme --password-stdin
  wasmlet registry build-image -f examples/hello -o hello.tar

environment:
  SPIN_OCI_ARCHIVE_LAYERS   set: push files as one archive layer per component
  WASMLET_CACHE_DIR         cache root; pulled content is in <root>/registry
  WASMLET_CONFIG_DIR        where `login` stores credentials (default ~/.config/wasmlet)
  DOCKER_CONFIG             Docker's config directory (credentials are read from it too)
"""


def register(subparsers: Any) -> None:
    registry = subparsers.add_parser(
        "registry",
        help="push and pull apps to and from OCI registries",
        description="Push, pull and package Spin apps as OCI artifacts (Spin's format).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = registry.add_subparsers(dest="registry_command", metavar="COMMAND")
    registry.set_defaults(func=lambda args: _help(registry))

    push = sub.add_parser("push", help="push an app to a registry")
    push.add_argument("reference", metavar="REF", help="e.g. ghcr.io/acme/app:v1")
    _app_arg(push)
    _insecure_arg(push)
    push.add_argument(
        "--archive-layers",
        action="store_true",
        help="one tar+gzip layer per component's files (also: SPIN_OCI_ARCHIVE_LAYERS)",
    )
    push.add_argument(
        "--annotation",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra manifest annotation (repeatable)",
    )
    push.set_defaults(func=cmd_push)

    pull = sub.add_parser("pull", help="pull an app into the local cache")
    pull.add_argument("reference", metavar="REF")
    _insecure_arg(pull)
    pull.set_defaults(func=cmd_pull)

    login = sub.add_parser("login", help="store credentials for a registry")
    login.add_argument("server", metavar="REGISTRY", help="e.g. ghcr.io or localhost:5000")
    login.add_argument("-u", "--username", required=True)
    secret = login.add_mutually_exclusive_group()
    secret.add_argument("-p", "--password", help="the password (prefer --password-stdin)")
    secret.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin"
    )
    _insecure_arg(login)
    login.set_defaults(func=cmd_login)

    logout = sub.add_parser("logout", help="forget stored credentials for a registry")
    logout.add_argument("server", metavar="REGISTRY")
    logout.set_defaults(func=cmd_logout)

    image = sub.add_parser(
        "build-image",
        help="write the app as an OCI image layout (directory or tar), no registry",
        description="Write the app's artifact as an OCI image layout: a directory, or a "
        "tar archive that `ctr images import` and `skopeo` read.",
    )
    _app_arg(image)
    image.add_argument(
        "-o", "--output", required=True, type=Path, metavar="DIR|FILE.tar", help="where to write"
    )
    image.add_argument(
        "--format",
        choices=["oci-dir", "oci-archive"],
        help="default: oci-archive for a .tar output, else oci-dir",
    )
    image.add_argument(
        "-t",
        "--tag",
        metavar="NAME",
        help="image name recorded in the index (default: localhost/<app>:<version>)",
    )
    image.add_argument("--archive-layers", action="store_true", help="as for push")
    image.set_defaults(func=cmd_build_image)


def _app_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-f",
        "--from",
        dest="app",
        default=".",
        metavar="APP",
        help="spin.toml, a directory containing one, or a locked app .json (default: .)",
    )


def _insecure_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-k", "--insecure", action="store_true", help="talk to the registry over plain HTTP"
    )


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def load_local_app(app_arg: str) -> LockedApp:
    from ..loader import load_app

    path = Path(app_arg)
    if path.suffix == ".json" and path.is_file():
        return LockedApp.read(path)
    if not path.exists():
        raise WasmletError(f"{app_arg}: no such file or directory")
    return load_app(path)


def _annotations(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise WasmletError(f"--annotation: expected KEY=VALUE, got {pair!r}")
        out[key] = value
    return out


def cmd_push(args: argparse.Namespace) -> int:
    from .push import push_app

    app = load_local_app(args.app)
    result = push_app(
        app,
        args.reference,
        insecure=args.insecure,
        archive=True if args.archive_layers else None,
        annotations=_annotations(args.annotation),
    )
    print(f"Pushed {result.reference}")
    print(f"Digest: {result.digest}")
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    from .pull import pull

    result = pull(args.reference, insecure=args.insecure)
    fmt = " (old Spin format)" if result.legacy_format else ""
    print(f"Pulled {result.reference}{fmt}")
    print(f"Digest: {result.digest}")
    return 0


def cmd_login(args: argparse.Namespace) -> int:
    from .client import RegistryClient
    from .credentials import Credentials, save_login
    from .reference import Reference, normalize_registry

    if args.password_stdin:
        password = sys.stdin.read().rstrip("\r\n")
    elif args.password is not None:
        password = args.password
    else:
        password = getpass.getpass(f"Password for {args.username}: ")
    if not password:
        raise WasmletError("login: empty password")
    server = normalize_registry(args.server)
    creds = Credentials(args.username, password, "the command line")
    ref = Reference(server, "wasmlet/login-check")  # no repository is accessed
    with RegistryClient(ref, insecure=args.insecure, credentials=creds, scope="") as client:
        client.login()  # proves the credentials before they are stored
    path = save_login(server, args.username, password)
    print(f"Login Succeeded (credentials for {server} stored in {path})")
    return 0


def cmd_logout(args: argparse.Namespace) -> int:
    from .credentials import remove_login
    from .reference import normalize_registry

    server = normalize_registry(args.server)
    if not remove_login(server):
        raise WasmletError(f"logout: no stored credentials for {server}")
    print(f"Removed credentials for {server}")
    return 0


def cmd_build_image(args: argparse.Namespace) -> int:
    from .layout import build_image, default_format

    app = load_local_app(args.app)
    artifact = build_image(
        app,
        args.output,
        name=args.tag,
        fmt=args.format,
        archive=True if args.archive_layers else None,
    )
    print(f"Wrote {args.output} ({args.format or default_format(args.output)})")
    print(f"Digest: {artifact.digest}")
    return 0
