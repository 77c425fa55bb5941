"""What guests/build.py and guests/build_components.py share: errors, target selection and
atomic writes of build outputs (stdlib only)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, TypeVar


class BuildError(Exception):
    """A target failed to build (exit status 1); the message is one line."""

    status = 1


class SetupError(BuildError):
    """A toolchain is missing or the command line is wrong (exit status 2)."""

    status = 2


class Named(Protocol):
    @property
    def name(self) -> str: ...


T = TypeVar("T", bound=Named)


def select(targets: Sequence[T], names: Sequence[str]) -> list[T]:
    """The targets called `names` in order (all of them when none are named)."""
    if not names:
        return list(targets)
    by_name = {target.name: target for target in targets}
    unknown = [name for name in names if name not in by_name]
    if unknown:
        known = ", ".join(by_name)
        raise SetupError(f"unknown target(s): {', '.join(unknown)} (targets: {known})")
    return [by_name[name] for name in dict.fromkeys(names)]


def write_if_changed(path: Path, data: bytes) -> bool:
    """Atomically replace `path` with `data` unless it already holds them; True if written."""
    if path.is_file() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data)
    os.replace(partial, path)
    return True
