"""`wasmlet node install|uninstall|runtimeclass` (registered into the `wasmlet` command)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

EPILOG = """\
examples:
  wasmlet node install --dry-run          show what would change on this node
  wasmlet node install                    link the shim, add the runtime, restart containerd
  wasmlet node install --host-root /host --label-node "$NODE_NAME"   (the installer DaemonSet)
  wasmlet node uninstall
  wasmlet node runtimeclass | kubectl apply -f -
"""


def register(subparsers: Any) -> None:
    node = subparsers.add_parser(
        "node",
        help="install the containerd shim on a node",
        description="Install containerd-shim-wasmlet-v2 on a Kubernetes node (or any "
        "containerd host) and configure containerd's `wasmlet` runtime.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = node.add_subparsers(dest="node_command", metavar="ACTION")
    for action, helptext in (
        ("install", "copy/link the shim and add the runtime to containerd's config"),
        ("uninstall", "remove the runtime from containerd's config and the shim"),
    ):
        p = sub.add_parser(action, help=helptext, description=helptext)
        _common(p)
        p.set_defaults(func=_run, action=action)
    rc = sub.add_parser("runtimeclass", help="print the RuntimeClass manifest (YAML)")
    rc.add_argument("--name", default="wasmlet", help="name and handler (default: wasmlet)")
    rc.add_argument("--node-selector", action="append", default=[], metavar="KEY=VALUE",
                    help="node selector (default: wasmlet.dev/shim=installed)")  # fmt: skip
    rc.set_defaults(func=_runtime_class)
    node.set_defaults(func=lambda _args: _usage(node))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--host-root",
        type=Path,
        default=Path("/"),
        help="where the node's filesystem is mounted (default: /)",
    )
    p.add_argument(
        "--distro",
        default="auto",
        choices=["auto", "containerd", "k3s", "rke2", "microk8s"],
        help="how containerd is run (default: detected)",
    )
    p.add_argument(
        "--config",
        type=Path,
        help="containerd config file to edit (a node path; default: the distribution's)",
    )
    p.add_argument(
        "--containerd-major",
        type=int,
        choices=[1, 2],
        help="containerd's major version when there is no config to tell",
    )
    p.add_argument(
        "--mode",
        default="auto",
        choices=["auto", "link", "copy"],
        help="link this installation's shim, or copy a Python runtime with "
        "wasmlet to --prefix (default: link on the node, copy from a container)",
    )
    p.add_argument(
        "--bin-dir",
        type=Path,
        default=Path("/usr/local/bin"),
        help="where the shim goes, on containerd's PATH (default: /usr/local/bin)",
    )
    p.add_argument(
        "--prefix",
        type=Path,
        default=Path("/opt/wasmlet"),
        help="where --mode copy puts the runtime (default: /opt/wasmlet)",
    )
    p.add_argument(
        "--runtime-name",
        default="wasmlet",
        help="containerd runtime / RuntimeClass handler name (default: wasmlet)",
    )
    p.add_argument(
        "--no-restart",
        dest="restart",
        action="store_false",
        help="do not restart containerd after changing its config",
    )
    p.add_argument(
        "--restart-command",
        help="command that restarts containerd (default: "
        "systemctl try-restart of the distribution's units)",
    )
    p.add_argument(
        "--label-node",
        metavar="NODE",
        help="label the Kubernetes node wasmlet.dev/shim=installed (in-cluster)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the changes, make none")


def _run(args: argparse.Namespace) -> int:
    from ..errors import WasmletError
    from . import nodeinstall
    from .containerdconfig import ConfigError

    opts = nodeinstall.Options(
        host_root=args.host_root,
        distro=args.distro,
        config=args.config,
        containerd_major=args.containerd_major,
        mode=args.mode,
        bin_dir=args.bin_dir,
        prefix=args.prefix,
        runtime_name=args.runtime_name,
        restart=args.restart,
        restart_command=args.restart_command.split() if args.restart_command else None,
        dry_run=args.dry_run,
        label_node=args.label_node,
    )
    action = nodeinstall.install if args.action == "install" else nodeinstall.uninstall
    try:
        return action(opts, sys.stdout)
    except (ConfigError, ValueError, RuntimeError, OSError) as e:
        raise WasmletError(str(e)) from None


def _runtime_class(args: argparse.Namespace) -> int:
    import yaml

    from ..errors import WasmletError
    from .nodeinstall import runtime_class

    selector = {}
    for item in args.node_selector:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise WasmletError(f"--node-selector: expected KEY=VALUE, got {item!r}")
        selector[key] = value
    sys.stdout.write(yaml.safe_dump(runtime_class(args.name, selector or None), sort_keys=False))
    return 0
