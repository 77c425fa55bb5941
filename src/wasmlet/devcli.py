"""The developer loop's commands: `wasmlet new`, `wasmlet add`, `wasmlet watch`.

Their modules are light (no engine, no HTTP server): `cli.main` builds only these parsers
(and `build`'s) when one of them is the command, so they start in a fraction of a second.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from .errors import WasmletError

NEW_EPILOG = """\
examples:
  wasmlet new                          ask for everything (on a terminal)
  wasmlet new http-py hello            a Python app in ./hello
  wasmlet new http-ts api --route '/api/...' --description 'My API'
  wasmlet new --list                   the templates and what their builds need

then: cd NAME && wasmlet up --build     (or wasmlet watch, to rebuild on every change)
"""

ADD_EPILOG = """\
examples:
  wasmlet add http-js frontend         ./frontend, served on /frontend/...
  wasmlet add c-wagi cgi --route /cgi/... -f path/to/app
"""

WATCH_EPILOG = """\
examples:
  wasmlet watch                        build, serve on 127.0.0.1:3000, rebuild on change
  wasmlet watch --listen 127.0.0.1:8080 -- --variable api_key=k
  wasmlet watch --skip-build           restart when a component's .wasm changes

A component is rebuilt when a file its `watch` globs match changes (or its requirements.txt,
package.json, package-lock.json); spin.toml changes rebuild what is stale and restart. Build
errors and an app that fails to start are shown, and the watcher waits for the next change.
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `new`, `add` and `watch` to the `wasmlet` command line."""
    new = sub.add_parser(
        "new",
        help="create a new app from a template",
        description="Create a new app from a template. Without TEMPLATE or NAME, asks for "
        "them (and the description and route) on a terminal.",
        epilog=NEW_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    new.add_argument("template", nargs="?", help="template name (see --list)")
    new.add_argument("name", nargs="?", help="app name, kebab-case (e.g. my-app)")
    new.add_argument(
        "-o", "--output", type=Path, metavar="DIR", help="directory to create (default: ./NAME)"
    )
    _template_values(new, route_default="/...")
    new.add_argument("--list", action="store_true", help="list the templates and exit")
    new.set_defaults(func=cmd_new)

    add = sub.add_parser(
        "add",
        help="add a component to an app from a template",
        description="Add a component from a template to an existing app: its files go to a "
        "directory of their own and its tables are appended to spin.toml (Spin's `spin add`).",
        epilog=ADD_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add.add_argument("template", nargs="?", help="template name (see wasmlet new --list)")
    add.add_argument("name", nargs="?", help="component name, kebab-case")
    add.add_argument(
        "-f",
        "--from",
        dest="app",
        default=".",
        metavar="APP",
        help="spin.toml or a directory containing one (default: .)",
    )
    add.add_argument(
        "-o",
        "--output",
        metavar="DIR",
        help="the component's directory, relative to spin.toml (default: NAME)",
    )
    _template_values(add, route_default="/NAME/...")
    add.set_defaults(func=cmd_add)

    watch = sub.add_parser(
        "watch",
        help="rebuild and restart the app when its sources change",
        description="Build the app, serve it, and on every change to a component's sources "
        "rebuild that component and restart the app on the same address (Spin's `spin watch`).",
        epilog=WATCH_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    watch.add_argument(
        "-f",
        "--from",
        dest="app",
        default=".",
        metavar="APP",
        help="spin.toml or a directory containing one (default: .)",
    )
    watch.add_argument(
        "--listen",
        default=os.environ.get("SPIN_HTTP_LISTEN_ADDR", "127.0.0.1:3000"),
        metavar="ADDR",
        help="address to serve on, kept across restarts (default: %(default)s)",
    )
    watch.add_argument(
        "--skip-build",
        action="store_true",
        help="do not build; restart when a component's Wasm file changes",
    )
    watch.add_argument(
        "-d",
        "--debounce",
        type=int,
        default=100,
        metavar="MS",
        help="quiet time after a change before acting, in milliseconds (default: 100)",
    )
    watch.add_argument(
        "up_args",
        nargs=argparse.REMAINDER,
        metavar="-- UP_OPTIONS",
        help="options for `wasmlet up` after `--` (e.g. -- --variable k=v --workers 2)",
    )
    watch.set_defaults(func=cmd_watch)


def _template_values(parser: argparse.ArgumentParser, route_default: str) -> None:
    parser.add_argument(
        "--description",
        metavar="TEXT",
        help="description (default: the template's; asked for on a terminal)",
    )
    parser.add_argument(
        "--route",
        metavar="ROUTE",
        help=f"HTTP route (default: {route_default}; asked for on a terminal)",
    )


# -- commands ------------------------------------------------------------------------------


def cmd_new(args: argparse.Namespace) -> int:
    from .prompt import interactive
    from .scaffold import list_templates, new_project, template_info

    if args.list:
        print("Templates:")
        for name in list_templates():
            info = template_info(name)
            print(f"  {name:<10} {info.description}")
            print(f"  {'':<10} needs: {info.needs}")
        return 0
    asking = interactive() and (not args.template or not args.name)
    if not args.template or not args.name:
        if not asking:
            missing = "TEMPLATE and NAME" if not args.template else "NAME"
            raise WasmletError(
                f"missing {missing}, and stdin is not a terminal to ask for them: "
                f"wasmlet new TEMPLATE NAME (templates: {', '.join(list_templates())}; "
                "wasmlet new --list describes them)"
            )
        _ask_template_values(args, default_route="/...")
    dest = args.output or Path(args.name)
    port = template_info(args.template).port
    if port and args.route not in (None, "/..."):
        raise WasmletError(
            f"--route {args.route}: template {args.template} takes its routes from its "
            "functions (edit them after `wasmlet new`), not from --route"
        )
    project = new_project(
        args.template, args.name, dest, description=args.description, route=args.route
    )
    print(f"Created {args.name} from template {args.template} in {project}")
    if port == "azure-functions":
        from .port.azure_app import port_azure_functions, report

        print(report(port_azure_functions(project)))
    needs = template_info(args.template).needs
    if needs:
        print(f"Its build needs: {needs}")
    print(f"Next: cd {project} && wasmlet up --build   (or wasmlet watch)")
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    from .prompt import interactive
    from .scaffold import add_component, list_templates, template_info

    if not args.template or not args.name:
        if not interactive():
            raise WasmletError(
                "missing TEMPLATE or NAME, and stdin is not a terminal to ask for them: "
                f"wasmlet add TEMPLATE NAME (templates: {', '.join(list_templates())})"
            )
        _ask_template_values(args, default_route=None)
    if template_info(args.template).port:
        raise WasmletError(
            f"template {args.template} is a whole serverless app (its functions share one "
            f"component): create it with `wasmlet new {args.template} NAME`, not added to an app"
        )
    dest = add_component(
        args.template,
        args.name,
        Path(args.app),
        directory=args.output,
        description=args.description,
        route=args.route,
    )
    print(f"Added component {args.name} from template {args.template} in {dest}")
    print("Next: wasmlet up --build   (or wasmlet watch)")
    return 0


def _ask_template_values(args: argparse.Namespace, default_route: str | None) -> None:
    """Ask on the terminal for what the command line did not give."""
    from .prompt import ask, choose
    from .scaffold import (
        list_templates,
        template_info,
        validate_description,
        validate_name,
        validate_route,
    )

    if not args.template:
        options = [(name, template_info(name).description) for name in list_templates()]
        args.template = choose("Template", options)
    else:
        template_info(args.template)  # an unknown template fails before the questions
    info = template_info(args.template)
    if not args.name:
        args.name = ask("Name", check=validate_name)
    if args.description is None:
        args.description = ask("Description", info.description, check=validate_description)
    if args.route is None:
        route = default_route or f"/{args.name}/..."
        args.route = ask("HTTP route", route, check=validate_route)


def cmd_watch(args: argparse.Namespace) -> int:
    from .watch import WatchOptions, watch

    up_args = list(args.up_args)
    if up_args and up_args[0] == "--":
        up_args = up_args[1:]
    app = Path(args.app)
    if not (app / "spin.toml").is_file() and not app.is_file():
        raise WasmletError(f"{args.app}: no spin.toml to watch")
    opts = WatchOptions(
        app=app,
        listen=args.listen,
        up_args=up_args,
        skip_build=args.skip_build,
        debounce_ms=max(args.debounce, 1),
    )
    watch(opts)
    return 0
