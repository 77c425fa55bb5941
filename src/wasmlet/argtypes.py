"""argparse types shared by wasmlet's commands: each turns one argument into a value, or
raises `ArgumentTypeError` with a one-line reason."""

from __future__ import annotations

import argparse

from .engine import parse_size
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
