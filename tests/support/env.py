"""Where the tests find things, and what they need from the machine."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
WAGI = FIXTURES / "wagi"
TESTBED = WAGI / "testbed.wasm"
HELLO = WAGI / "hello.wasm"
IN_CI = os.environ.get("CI", "").lower() == "true"
# wasmlet's Python tools venv for the tests (`WASMLET_CACHE_DIR`): kept between runs like
# guests/build/tools-venv, so the first run installs componentize-py and spin-sdk (the user's
# first build) and later runs reuse them (every later build).
TOOLS_CACHE = ROOT / "guests" / "build" / "wasmlet-cache"


def path_without(*programs: str) -> str:
    """PATH without the directories that hold `programs` (to exercise what wasmlet provides)."""
    keep = [
        d
        for d in os.environ.get("PATH", os.defpath).split(os.pathsep)
        if d and not any(os.access(Path(d) / p, os.X_OK) for p in programs)
    ]
    return os.pathsep.join(keep)


def require_tool(tool: str, packages: str) -> str:
    """Path of `tool`; skip (or, under CI=true, fail) when it is missing."""
    path = (
        shutil.which(tool) if not tool.startswith("/") else (tool if Path(tool).exists() else None)
    )
    if path is None:
        message = f"{tool} not installed (apt-get install {packages})"
        if IN_CI:
            pytest.fail(message + " — required under CI=true")
        pytest.skip(message)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
