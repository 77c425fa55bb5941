"""`containerd-shim-wasmlet-v2`: containerd's runtime v2 shim for Spin apps.

    containerd-shim-wasmlet-v2 -namespace NS -address SOCK -publish-binary BIN -id ID start
    containerd-shim-wasmlet-v2 -namespace NS -address SOCK -id ID -bundle DIR delete
    containerd-shim-wasmlet-v2 -v

`start` is on the path of every container start, so this module imports nothing but `os` and
`sys` (argparse alone costs ~10 ms here): the flags are parsed by hand, Go-style (one dash),
as containerd passes them. The task's shim itself is forked from the node's template
(template.py), not started by this program.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # not typing's: importing `typing` costs 15 ms here (mypy knows the name)
if TYPE_CHECKING:
    from collections.abc import Sequence

_VALUED = {"namespace", "address", "publish-binary", "id", "bundle", "socket"}
ACTIONS = ("start", "delete")


class Flags:
    """The flags containerd passes (a plain class: `dataclasses` imports `inspect`, 20 ms)."""

    def __init__(self) -> None:
        self.namespace = ""
        self.address = ""
        self.publish_binary = "containerd"
        self.id = ""
        self.bundle = ""
        self.socket = ""
        self.debug = False
        self.version = False
        self.action: str | None = None


class FlagError(Exception):
    pass


def parse(argv: Sequence[str]) -> Flags:
    flags = Flags()
    args = list(argv)
    while args:
        arg = args.pop(0)
        name, eq, value = arg.lstrip("-").partition("=")
        if not arg.startswith("-"):
            if arg not in ACTIONS or flags.action is not None:
                raise FlagError(f"unexpected argument {arg!r}")
            flags.action = arg
        elif name in _VALUED:
            if not eq:
                if not args:
                    raise FlagError(f"flag -{name} needs a value")
                value = args.pop(0)
            setattr(flags, name.replace("-", "_"), value)
        elif name in ("debug", "v") and not eq:
            setattr(flags, "debug" if name == "debug" else "version", True)
        else:
            raise FlagError(f"unknown flag {arg!r}")
    return flags


def main(argv: Sequence[str] | None = None) -> int:
    try:
        flags = parse(sys.argv[1:] if argv is None else argv)
    except FlagError as e:
        print(f"containerd-shim-wasmlet-v2: {e}", file=sys.stderr)
        return 2
    if flags.version:
        from .. import __version__

        print(f"containerd-shim-wasmlet-v2:\n  Version: {__version__}\n  Runtime: wasmlet")
        return 0
    if not flags.id:
        print("containerd-shim-wasmlet-v2: -id is required", file=sys.stderr)
        return 2
    if flags.action == "start":
        from .launch import start

        return start(flags, sys.argv[1:] if argv is None else list(argv))
    if flags.action == "delete":
        from .cleanup import delete

        return delete(flags.id, flags.bundle or os.getcwd(), flags.namespace)
    print("containerd-shim-wasmlet-v2: an action (start or delete) is required", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
