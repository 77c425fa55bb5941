"""`containerd-shim-wasmlet-v2`: containerd's runtime v2 shim for Spin apps.

    containerd-shim-wasmlet-v2 -namespace NS -address SOCK -publish-binary BIN -id ID start
    containerd-shim-wasmlet-v2 -namespace NS -address SOCK -id ID -bundle DIR delete
    containerd-shim-wasmlet-v2 -v

Without an action it is the daemon `start` launched (holding the listening socket). The
flags are Go-style (one dash) as containerd passes them.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .. import __version__


def parse(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="containerd-shim-wasmlet-v2", allow_abbrev=False)
    p.add_argument("-namespace", default="")
    p.add_argument("-address", default="")
    p.add_argument("-publish-binary", dest="publish_binary", default="containerd")
    p.add_argument("-id", default="")
    p.add_argument("-bundle", default="")
    p.add_argument("-socket", default="")
    p.add_argument("-debug", action="store_true")
    p.add_argument("-v", dest="version", action="store_true")
    p.add_argument("action", nargs="?", choices=["start", "delete"])
    return p.parse_args(list(argv))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    if args.version:
        print(f"containerd-shim-wasmlet-v2:\n  Version: {__version__}\n  Runtime: wasmlet")
        return 0
    if not args.id:
        print("containerd-shim-wasmlet-v2: -id is required", file=sys.stderr)
        return 2
    if args.action == "start":
        from .start import start

        return start(args.id, args.namespace, args.address, args.publish_binary, args.debug)
    if args.action == "delete":
        from .start import delete

        return delete(args.id, Path(args.bundle or os.getcwd()))
    from .daemon import run

    return run(args.namespace, args.address, args.debug)


if __name__ == "__main__":
    sys.exit(main())
