"""The factor registry: every factor has a key and its own interfaces, a component gets only
the factors it imports, and database and broker clients load only when a guest connects."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import wasmtime
from wasmtime import component

from wasmlet.factors import FACTORS, AppContext, Factor, LazyFactor, configure, mysql, postgres
from wasmlet.factors.rdbms_types import RDBMS_TYPES
from wasmlet.locked import LockedApp, LockedComponent, LockedComponentSource
from wasmlet.wasi.host import build_linker

# The one interface two factors list: a types-only interface both database factors need.
SHARED = {RDBMS_TYPES.name: {postgres.FACTOR, mysql.FACTOR}}


# Every factor as it serves (a lazily registered one imported).
LOADED = [f.loaded() for f in FACTORS]


def _name(factor: Factor[Any, Any]) -> str:
    return type(factor).__name__


def _app(tmp_path: Path) -> tuple[LockedApp, Any]:
    comp = LockedComponent(
        id="c",
        source=LockedComponentSource(source="file:///c.wasm"),
        metadata={"allowed_outbound_hosts": ["postgres://127.0.0.1:5432"]},
    )
    app = LockedApp(components=[comp])
    return app, configure(AppContext(app, tmp_path))


@pytest.mark.parametrize("factor", LOADED, ids=_name)
def test_every_factor_has_a_key_and_serves_its_interfaces_alone(
    factor: Factor[Any, Any],
) -> None:
    assert factor.key.name
    assert factor.interfaces
    for iface in factor.interfaces:
        for name in iface.full_names():
            serving = {f for f in LOADED if any(i.serves(name) for i in f.interfaces)}
            assert serving == SHARED.get(iface.name, {factor}), name
            if iface.name not in SHARED:
                assert factor.serves([name]), name
                registered = FACTORS[LOADED.index(factor)]
                assert registered.serves([name]), name  # lazily registered: the same


@pytest.mark.parametrize("lazy", [f for f in FACTORS if isinstance(f, LazyFactor)], ids=str)
def test_a_lazy_factor_names_every_interface_its_module_serves(lazy: LazyFactor) -> None:
    """What decides whether a lazily registered factor is imported must not miss one of
    its interfaces (a component importing it would get no capability)."""
    served = {i.name.partition("@")[0] for i in lazy.loaded().interfaces}
    assert lazy.names == served


def test_factor_keys_are_distinct() -> None:
    keys = [f.key for f in LOADED]
    assert len(set(map(id, keys))) == len(keys)
    assert len({k.name for k in keys}) == len(keys)


def test_http_only_component_gets_no_spin_factors(tmp_path: Path) -> None:
    app, factors = _app(tmp_path)
    imports = ["wasi:http/types@0.2.0", "wasi:io/streams@0.2.3", "wasi:io/poll@0.2.0"]
    prepared = factors.prepare(app.components[0], imports, None)
    assert prepared.interfaces == []
    assert prepared.capabilities == {}


def test_rdbms_types_alone_is_no_use_of_either_database(tmp_path: Path) -> None:
    app, factors = _app(tmp_path)
    types = RDBMS_TYPES.name
    only_mysql = factors.prepare(app.components[0], [types, "fermyon:spin/mysql@2.0.0"], None)
    assert set(only_mysql.capabilities) == {mysql.KEY}
    assert RDBMS_TYPES in only_mysql.interfaces
    only_pg = factors.prepare(app.components[0], [types, "fermyon:spin/postgres@2.0.0"], None)
    assert set(only_pg.capabilities) == {postgres.KEY}
    assert factors.prepare(app.components[0], [types], None).capabilities == {}


def test_rdbms_types_listed_by_both_database_factors_links(tmp_path: Path) -> None:
    """A component using PostgreSQL and MySQL gets rdbms-types from both factors; defining it
    twice in one linker must not fail (it is empty, and the linker allows shadowing)."""
    app, factors = _app(tmp_path)
    imports = [RDBMS_TYPES.name, "fermyon:spin/mysql@2.0.0", "spin:postgres/postgres@4.0.0"]
    prepared = factors.prepare(app.components[0], imports, None)
    assert prepared.interfaces.count(RDBMS_TYPES) == 2
    assert set(prepared.capabilities) == {postgres.KEY, mysql.KEY}
    engine = wasmtime.Engine()
    wat = f"""(component
      (import "{RDBMS_TYPES.name}" (instance))
      (import "fermyon:spin/mysql@2.0.0" (instance (export "connection" (type (sub resource)))))
    )"""
    comp = component.Component(engine, wat)
    linker = build_linker(engine, comp, prepared.interfaces)
    linker.instantiate(wasmtime.Store(engine), comp)


def _run(code: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


HEAVY = "('psycopg', 'pymysql', 'paho', 'redis')"


def test_serving_does_not_load_database_clients() -> None:
    code = f"""
        import sys, wasmlet.cli, wasmlet.trigger.http.server, wasmlet.running, wasmlet.factors
        print("clients:", ','.join(m for m in {HEAVY} if m in sys.modules))
        lazy = [f.module for f in wasmlet.factors.FACTORS if hasattr(f, "module")]
        print(len(lazy), "lazy:", ','.join(m for m in lazy if m in sys.modules))
    """
    assert _run(code) == "clients: \n5 lazy:"  # nor the lazily registered factors


def test_postgres_component_loads_psycopg_only_when_it_connects(tmp_path: Path) -> None:
    """Preparing a component that imports PostgreSQL loads no driver; its first `open` does
    (a denied address suffices: the connection string is parsed by psycopg)."""
    code = f"""
        import sys
        from pathlib import Path
        from wasmlet.factors import AppContext, configure, postgres
        from wasmlet.locked import LockedApp, LockedComponent, LockedComponentSource
        from wasmlet.wasi import InstanceState, active

        comp = LockedComponent(id="c", source=LockedComponentSource(source="file:///c.wasm"))
        app = LockedApp(components=[comp])
        factors = configure(AppContext(app, Path({str(tmp_path)!r})))
        prepared = factors.prepare(comp, ["spin:postgres/postgres@4.0.0"], None)
        assert postgres.KEY in prepared.capabilities
        print('loaded:' + ','.join(m for m in {HEAVY} if m in sys.modules))
        v4 = postgres.INTERFACES[-1]
        open_ = next(f.fn for f in v4.funcs if f.name == "[static]connection.open")
        with active(InstanceState("c", prepared.capabilities)):
            result = open_("host=db.example.com dbname=test")
        print(result.value)
        print('loaded:' + ','.join(m for m in {HEAVY} if m in sys.modules))
    """
    before, result, after = _run(code).splitlines()
    assert before == "loaded:"
    assert result == "('connection-failed', 'address postgres://db.example.com is not permitted')"
    assert after == "loaded:psycopg"
