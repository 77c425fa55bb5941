"""Shared fixtures: start the real `wasmlet up` on loopback and talk HTTP to it (the helpers
themselves are in tests/support/)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.databases import mysql, pg  # noqa: F401  (fixtures: the real database servers)
from support.server import Server, start_server

# The servers the tests start run one process unless a test asks for more (`--workers N`):
# `wasmlet up`'s default, a worker per CPU, is tested on its own (test_http_server.py).
os.environ.setdefault("WASMLET_WORKERS", "1")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("compile-cache")


@pytest.fixture
def server_factory(cache_dir: Path) -> Iterator[object]:
    started: list[Server] = []

    def factory(app: Path | str, *args: str, **kw: object) -> Server:
        kw.setdefault("cache_dir", cache_dir)
        s = start_server(app, *args, **kw)  # type: ignore[arg-type]
        started.append(s)
        return s

    yield factory
    for s in started:
        if s.alive():
            s.stop(signal.SIGKILL)
