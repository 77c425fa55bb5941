"""The factor registry: every host interface is routed to its module, and loading is lazy."""

from __future__ import annotations

import subprocess
import sys

import pytest

from wasmlet.factors import PROVIDERS, factor_module, modules_for

MODULES = sorted(set(PROVIDERS.values()))


@pytest.mark.parametrize("module", MODULES)
def test_every_interface_is_routed_to_its_module(module: str) -> None:
    interfaces = factor_module(module).INTERFACES
    assert interfaces
    for iface in interfaces:
        assert modules_for([iface.name]) == {module}, iface.name


def test_unrelated_imports_load_nothing() -> None:
    assert modules_for(["wasi:http/types@0.2.0", "wasi:io/streams@0.2.3"]) == set()


def test_serving_does_not_load_database_clients() -> None:
    code = (
        "import sys, wasmlet.cli, wasmlet.trigger.http.server, wasmlet.runtime\n"
        "heavy = [m for m in ('psycopg', 'pymysql', 'paho', 'redis') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
