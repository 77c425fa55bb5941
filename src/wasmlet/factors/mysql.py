"""Outbound MySQL: `fermyon:spin/mysql@2.0.0` (its types are `fermyon:spin/rdbms-types@2.0.0`),
with PyMySQL.

Access is decided as Spin does, from the component's `allowed_outbound_hosts`: the address
`mysql://[user[:password]@]host[:port][/database][?ssl-mode=…]` is checked with scheme `mysql`
(port 3306 by default); denied is `connection-failed("address <address> is not permitted")`.
`ssl-mode` other than `disabled` turns TLS on.

Statements use `?` placeholders (run as a server-side prepared statement); integer, float,
string and binary columns convert, any other column type fails the query with
`value-conversion-failed`, as in Spin. Server errors are `query-failed("ERROR <code>:
<message>")`. Each `open` is one connection, closed when the guest drops it or the instance
ends. The driver part is `_mysql_client.py`, imported when a guest first opens a connection.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..outbound import OutboundPolicy
from ..wasi import STRING, Borrow, Interface, Key, List, Own, Result, current, table
from ._factor import ComponentContext, StatelessFactor
from ._outbound import Failure, address_allowed
from .rdbms_types import RDBMS_TYPES, V2_ERROR, V2_PARAMETER, V2_ROW_SET, call, connection

if TYPE_CHECKING:
    from ._mysql_client import MysqlConnection


@dataclass(frozen=True)
class OutboundMysql:
    """The outbound MySQL capability of one component."""

    policy: OutboundPolicy

    def open(self, address: str) -> MysqlConnection:
        """A connection; raises Failure with a v2 error."""
        # Checked before PyMySQL is loaded: a denied address costs no import.
        if not address_allowed(self.policy, address, "mysql"):
            raise Failure(("connection-failed", f"address {address} is not permitted"))
        from ._mysql_client import connect  # loads PyMySQL on first use

        return connect(address)


KEY: Key[OutboundMysql] = Key("outbound-mysql")


def _connection(rep: int) -> MysqlConnection:
    # Only a guest that opened a connection holds a handle, so PyMySQL is loaded by now.
    from ._mysql_client import MysqlConnection

    return connection(rep, MysqlConnection)


def _open(address: str) -> object:
    return call(lambda: table().push(current().get(KEY).open(address)))


def _query(rep: int, statement: str, params: list[Any]) -> object:
    return call(lambda: _connection(rep).query(statement, params))


def _execute(rep: int, statement: str, params: list[Any]) -> object:
    return call(lambda: _connection(rep).execute(statement, params))


spin_mysql = Interface("fermyon:spin/mysql@2.0.0", blocking=True, api="mysql")
CONNECTION = spin_mysql.resource("connection", lambda rep: table().pop(rep))
_ARGS = (Borrow(CONNECTION), STRING, List(V2_PARAMETER))
spin_mysql.func("[static]connection.open", (STRING,), Result(Own(CONNECTION), V2_ERROR))(_open)
spin_mysql.func("[method]connection.query", _ARGS, Result(V2_ROW_SET, V2_ERROR))(_query)
spin_mysql.func("[method]connection.execute", _ARGS, Result(None, V2_ERROR))(_execute)


class OutboundMysqlFactor(StatelessFactor[OutboundMysql]):
    key = KEY
    interfaces = (RDBMS_TYPES, spin_mysql)

    def serves(self, imports: Iterable[str]) -> bool:
        # Importing rdbms-types alone (a PostgreSQL v2 guest) is no use of MySQL.
        return any(spin_mysql.serves(name) for name in imports)

    def prepare(self, state: None, ctx: ComponentContext) -> OutboundMysql:
        return OutboundMysql(ctx.policy)


FACTOR = OutboundMysqlFactor()
