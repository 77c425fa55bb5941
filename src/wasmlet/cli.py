"""The `wasmlet` command line: `up`, `build`, `new`, `add`, `watch`, `lock`, and the groups
of the subsystems.

Every user-facing error is one line on stderr (`Error: …`) and a non-zero exit. The
developer loop's commands (`build`, `new`, `add`, `watch`) get a parser without the other
commands, whose modules (engine, HTTP server, Kubernetes) take seconds to import: a `wasmlet
build` with nothing to do finishes in a fraction of a second. `up` and `lock` get a parser
without the subsystems' groups (`host`, `registry`, `kube`, `node`): importing those took
`wasmlet up` seconds longer to start (and `wasmlet watch` to restart an app).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, cast

from . import __version__, devcli
from .errors import WasmletError
from .port import cli as port_cli

# Everything else is imported where it is used: the engine, the HTTP server and the
# subsystems' command lines take seconds to import, which `wasmlet build` must not pay.
if TYPE_CHECKING:
    from .locked import LockedApp
    from .trigger.http.server import ServeOptions

log = logging.getLogger("wasmlet")

UP_EPILOG = """\
examples:
  wasmlet up                          serve ./spin.toml on http://127.0.0.1:3000
  wasmlet up --build                  build what changed first (wasmlet build)
  wasmlet up -f examples/hello        serve the app in a directory
  wasmlet up --listen 0.0.0.0:8080 --workers 2
  wasmlet up --variable api_key=s3cr3t --env RUST_LOG=debug

environment:
  SPIN_HTTP_LISTEN_ADDR      default for --listen
  SPIN_MAX_INSTANCE_MEMORY   default for --max-instance-memory
  SPIN_VARIABLE_<NAME>       value of application variable <name>
  WASMLET_CACHE_DIR          where compiled modules are cached (default ~/.cache/wasmlet)
"""


BUILD_EPILOG = """\
examples:
  wasmlet build                       build the components of ./spin.toml that changed
  wasmlet build -c api --force        rebuild the component api even if it is up to date
  wasmlet build --up                  then serve (like wasmlet up --build)

environment:
  WASMLET_CACHE_DIR   where the Python component tools venv goes (default ~/.cache/wasmlet)
"""


class _Parser(argparse.ArgumentParser):
    """Usage errors are one line naming the command's --help, not a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"Error: {message} (see '{self.prog} --help')\n")


LIGHT_COMMANDS = ("build", "new", "add", "watch", "port")
CORE_COMMANDS = ("up", "lock")  # parsed without the subsystems' command groups
# The command groups that live with their subsystem: its module, and its line in `--help`.
# A group's module is imported only to run or explain that group: kopf, grpclib and the
# OCI client take about a second to import (a test checks these lines against theirs).
SUBSYSTEMS = {
    "host": (
        "wasmlet.apphost.cli",
        "serve every app in a directory from one process, picked by Host",
    ),
    "registry": ("wasmlet.oci.cli", "push and pull apps to and from OCI registries"),
    "kube": ("wasmlet.kube.cli", "Kubernetes: scaffold SpinApps, install and run the operator"),
    "node": ("wasmlet.shim.cli", "install the containerd shim on a node"),
}


def build_parser(light: bool = False, subsystems: bool | str = True) -> argparse.ArgumentParser:
    """The whole command line, or (`light`) only the developer loop's commands; `subsystems`:
    the groups `host`, `registry`, `kube`, `node` in full (True), not at all (False), or only
    the one named in full and the others by their names and help lines ("": none in full)."""
    parser = _Parser(
        prog="wasmlet",
        description="Run Spin-compatible WebAssembly apps as serverless functions: "
        "a fresh sandboxed instance per request.",
    )
    parser.add_argument("--version", action="version", version=f"wasmlet {__version__}")
    # (typed as of plain parsers: the subsystems' `register` functions take those)
    sub = cast(
        "argparse._SubParsersAction[argparse.ArgumentParser]",
        parser.add_subparsers(dest="command", metavar="COMMAND"),
    )
    if not light:
        _add_up(sub)
    _add_build(sub)
    devcli.register(sub)
    port_cli.register(sub)
    if light:
        return parser

    lock = sub.add_parser(
        "lock",
        help="print the locked app JSON of a spin.toml",
        description="Resolve a spin.toml into the locked app (Spin's LockedApp JSON) and print it.",
    )
    lock.add_argument("-f", "--from", dest="app", default=".", metavar="APP")
    lock.add_argument("-o", "--output", type=Path, metavar="FILE", help="write to FILE")
    lock.set_defaults(func=cmd_lock)
    if subsystems is False:  # their modules take a second to import: `wasmlet up` does not pay it
        return parser

    for name, (module, line) in SUBSYSTEMS.items():
        if subsystems is True or subsystems == name:
            importlib.import_module(module).register(sub)
        else:  # listed by `wasmlet --help`; `wasmlet NAME` parses with the real one
            sub.add_parser(name, help=line)
    return parser


def _add_up(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from .argtypes import key_value_arg, serving_options

    up = sub.add_parser(
        "up",
        help="serve an app (spin.toml) over HTTP",
        description="Serve a Spin app over HTTP on this machine (no cluster, no services).",
        epilog=UP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    up.add_argument(
        "-f",
        "--from",
        dest="app",
        default=".",
        metavar="APP",
        help="spin.toml, a directory containing one, a locked app .json, or an OCI "
        "reference such as ghcr.io/org/app:v1 (default: current directory)",
    )
    up.add_argument(
        "--runtime-config-file",
        type=Path,
        metavar="FILE",
        help="runtime configuration TOML (state_dir, max_instance_memory, stores, …)",
    )
    up.add_argument(
        "-c",
        "--component-id",
        action="append",
        default=[],
        metavar="ID",
        help="run only this component (repeatable; env SPIN_COMPONENTS_TO_RETAIN, comma-separated)",
    )
    up.add_argument(
        "-e",
        "--env",
        type=key_value_arg,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="environment variable for every component",
    )
    up.add_argument(
        "--variable",
        type=key_value_arg,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set an application variable",
    )
    up.add_argument(
        "--state-dir",
        type=Path,
        metavar="DIR",
        help="where the app keeps state (default: .spin next to spin.toml)",
    )
    up.add_argument(
        "--build",
        action="store_true",
        help="run `wasmlet build` first (components whose sources changed)",
    )
    serving_options(up)
    up.set_defaults(func=cmd_up)


def _add_build(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    build = sub.add_parser(
        "build",
        help="run each component's build command",
        description="Run the [component.*.build] command of each component, in its workdir. "
        "What a build needs is checked first: the Python component tools (componentize-py, "
        "spin-sdk) are installed into wasmlet's cache, npm dependencies with `npm install`; "
        "a missing tool (Node.js, clang, ...) is named with its Debian packages. A component "
        "whose `watch` files did not change since its last build is skipped.",
        epilog=BUILD_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    build.add_argument(
        "-f",
        "--from",
        dest="app",
        default=".",
        metavar="APP",
        help="spin.toml or a directory containing one (default: .)",
    )
    build.add_argument(
        "-c",
        "--component-id",
        action="append",
        default=[],
        metavar="ID",
        help="build only this component (repeatable)",
    )
    build.add_argument(
        "--force", action="store_true", help="build every component, also those up to date"
    )
    build.add_argument("--up", action="store_true", help="run `wasmlet up` after building")
    build.set_defaults(func=cmd_build)


# -- commands ------------------------------------------------------------------------------


def _load(app_arg: str, insecure: bool = False) -> tuple[LockedApp, Path]:
    """Load a locked app from spin.toml / a directory / a locked .json / an OCI reference;
    also its home directory."""
    from .loader import load_app
    from .locked import LockedApp

    path = Path(app_arg)
    if path.suffix == ".json" and path.is_file():
        return LockedApp.read(path), path.resolve().parent
    if not path.exists():
        if _looks_like_reference(app_arg):
            from .oci import pull_app

            return pull_app(app_arg, insecure=insecure)
        raise WasmletError(f"{app_arg}: no such file or directory")
    app = load_app(path)
    return app, (path if path.is_dir() else path.parent).resolve()


def _looks_like_reference(text: str) -> bool:
    """`registry/repo:tag` or `…@sha256:…`, as opposed to a local path."""
    return (
        "/" in text
        and (":" in text.rsplit("/", 1)[-1] or "@sha256:" in text)
        and not (text.startswith((".", "/", "~")))
    )


def cmd_up(args: argparse.Namespace) -> int:
    if getattr(args, "build", False):
        from .build import build_app

        build_app(Path(args.app))
    from . import gcpause

    gcpause.pause()  # until it serves (gcpause.py)
    from .forkserver import start_early
    from .logs import configure_logging
    from .observe.endpoint import serving
    from .trigger.http.server import serve

    # Forked now: after the imports its workers share, before any thread (forkserver.py).
    start_early(args.workers)
    configure_logging(args.log_level, args.log_format)
    app, opts = up_options(args)
    # Spin writes component output to .spin/logs/; wasmlet logs it: say where it goes.
    if args.log_format == "json":
        where = "as JSON lines, each component's stdout and stderr lines with its id"
    else:
        where = (
            "with each component's stdout and stderr lines prefixed by its id "
            "([ID] and [ID stderr])"
        )
    print(f"Logs: on stderr at level {args.log_level}, {where}", flush=True)
    # Bound and switched on before the app is built (a bad address fails first).
    with serving(args.metrics_listen, opts.workers):
        serve(app, opts)
    return 0


def up_options(args: argparse.Namespace) -> tuple[LockedApp, ServeOptions]:
    """What `wasmlet up ARGS` serves and how: the app loaded and locked, its runtime config
    read and checked (everything before building the app; the config fuzz test runs this)."""
    from .engine import EngineSettings, Limits
    from .running import AppOptions
    from .runtime_config import apply_cli_overrides, load_runtime_config
    from .trigger.http.server import ServeOptions, limits_from_args

    app, home = _load(args.app, insecure=args.insecure)
    rc = load_runtime_config(args.runtime_config_file, home)
    retain = args.component_id or [
        c for c in os.environ.get("SPIN_COMPONENTS_TO_RETAIN", "").split(",") if c
    ]
    app = apply_cli_overrides(app, env=dict(args.env), retain=retain)
    state_dir = args.state_dir or rc.state_dir or home / ".spin"
    memory = args.max_instance_memory  # bytes: argparse applies `size` to the env default too
    opts = ServeOptions(
        listen=args.listen,
        workers=args.workers,
        log_level=args.log_level,
        log_format=args.log_format,
        limits=limits_from_args(args),
        app=AppOptions(
            state_dir=state_dir,
            engine=EngineSettings(cache_dir=None if args.no_cache else args.cache_dir),
            limits=Limits(
                request_timeout=args.request_timeout,
                max_instance_memory=memory if memory is not None else rc.max_instance_memory,
                max_output=args.max_wagi_output,
            ),
            runtime_config=rc,
            variables=dict(args.variable),
            home=home,
            threads=args.threads,
            max_running=args.max_running,
            max_body=args.max_body_size,
            max_waiting=args.max_waiting,
            body_read_timeout=args.body_read_timeout,
        ),
    )
    return app, opts


def cmd_build(args: argparse.Namespace) -> int:
    from .build import build_app

    build_app(Path(args.app), only=args.component_id, force=args.force)
    if args.up:
        return cmd_up(build_parser(subsystems=False).parse_args(["up", "-f", args.app]))
    return 0


def cmd_lock(args: argparse.Namespace) -> int:
    app, _ = _load(args.app)
    if args.output:
        app.write(args.output)
    else:
        print(app.to_json())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv else ""
    core = command in (*CORE_COMMANDS, *LIGHT_COMMANDS)
    parser = build_parser(light=command in LIGHT_COMMANDS, subsystems=False if core else command)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except WasmletError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `wasmlet lock | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
