"""argparse types and options shared by wasmlet's commands: each type turns one argument into
a value, or raises `ArgumentTypeError` with a one-line reason."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from .dirs import default_cache_dir
from .engine import DEFAULT_REQUEST_TIMEOUT, parse_size
from .errors import WasmletError


def key_value_arg(text: str) -> tuple[str, str]:
    """An argparse type for `KEY=VALUE` (the value may contain `=`)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return int(text)


def seconds(text: str) -> float:
    try:
        value = float(text.removesuffix("s"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("the timeout cannot be negative")
    return value


def size(text: str) -> int:
    try:
        return parse_size(text)
    except WasmletError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def serving_options(parser: argparse.ArgumentParser, listen: str | None = None) -> None:
    """The options of every command that serves HTTP (`up`, `host`, `kube activator`)."""
    parser.add_argument(
        "-k", "--insecure", action="store_true", help="pull from the registry over plain HTTP"
    )
    parser.add_argument(
        "--listen",
        default=listen or os.environ.get("SPIN_HTTP_LISTEN_ADDR", "127.0.0.1:3000"),
        metavar="ADDR",
        help="address to listen on (default: %(default)s)",
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        metavar="N",
        help="worker processes sharing the port (default: 1)",
    )
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=0,
        metavar="N",
        help="requests in progress per worker, running or waiting for I/O "
        "(default: 4 per core, at least 8, at most 32)",
    )
    parser.add_argument(
        "--max-running",
        type=positive_int,
        default=1,
        metavar="N",
        help="guests running at once per worker; the others wait their turn, at most 50 ms "
        "(default: 1: host calls are Python, which runs one thread at a time; use --workers "
        "for more cores)",
    )
    parser.add_argument(
        "--request-timeout",
        type=seconds,
        default=DEFAULT_REQUEST_TIMEOUT,
        metavar="SECONDS",
        help="stop a request's guest after this long and answer 500; 0 = never "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--max-instance-memory",
        type=size,
        default=os.environ.get("SPIN_MAX_INSTANCE_MEMORY"),
        metavar="SIZE",
        help="linear memory limit per instance, e.g. 64Mi (default: unlimited)",
    )
    parser.add_argument(
        "--max-body-size",
        type=size,
        default="100Mi",
        metavar="SIZE",
        help="largest request body accepted; larger gets 413 (default: 100Mi)",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=default_cache_dir(),
        metavar="DIR",
        help="compile cache directory (default: %(default)s)",
    )
    parser.add_argument("--no-cache", action="store_true", help="do not use the compile cache")
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="(default: info)",
    )
