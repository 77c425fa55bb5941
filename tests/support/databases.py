"""What the PostgreSQL and MySQL value tests share: the real servers as fixtures (a missing
one skips its tests, or fails them under CI=true)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from wasmlet.factors import _mysql_client, _postgres_client
from wasmlet.factors._outbound import Failure
from wasmlet.outbound import OutboundPolicy

from .env import IN_CI

PG = "host=127.0.0.1 user=postgres dbname=test"
MYSQL = "mysql://root@127.0.0.1/test"


def _service(what: str, connect: Callable[[], Any]) -> Any:
    try:
        return connect()
    except Failure as e:
        message = f"{what} not reachable: {e.error}"
        if IN_CI:
            pytest.fail(message + " — required under CI=true")
        pytest.skip(message)


@pytest.fixture(scope="module")
def pg() -> Iterator[Any]:
    policy = OutboundPolicy.parse(["postgres://127.0.0.1:5432"])
    conn = _service("PostgreSQL on 127.0.0.1:5432", lambda: _postgres_client.connect(policy, PG))
    # Not UTC, so that reading timestamptz "as UTC" is tested (psycopg loads it in the
    # session's zone).
    conn.conn.execute("SET TIME ZONE 'Asia/Kathmandu'")
    yield conn
    conn.conn.close()


@pytest.fixture(scope="module")
def mysql() -> Iterator[Any]:
    conn = _service("MariaDB/MySQL on 127.0.0.1:3306", lambda: _mysql_client.connect(MYSQL))
    yield conn
    conn.conn.close()
