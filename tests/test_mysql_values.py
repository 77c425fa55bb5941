"""Property tests of the MySQL value conversions, through the real MariaDB: values go into
typed columns of a temporary table and back through `mysql_data_type`/`mysql_value`, which
are also checked on their own."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymysql.constants import FIELD_TYPE, FLAG
from support.databases import MYSQL

from wasmlet.factors import _mysql_client
from wasmlet.factors._mysql_client import mysql_data_type, mysql_value
from wasmlet.factors._outbound import Failure

EXAMPLES = settings(max_examples=40, deadline=None)
FEW = settings(max_examples=15, deadline=None)

# Text any database can hold: no NUL (and, as for any WIT string, no lone surrogates).
TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=40)


# == MySQL ===================================================================================

# Each integer column type: (its WIT case, the column's own range [low, high)).
MYSQL_INTEGERS = {
    "TINYINT": ("int8", -(2**7), 2**7),
    "TINYINT UNSIGNED": ("uint8", 0, 2**8),
    "SMALLINT": ("int16", -(2**15), 2**15),
    "SMALLINT UNSIGNED": ("uint16", 0, 2**16),
    "MEDIUMINT": ("int32", -(2**23), 2**23),  # 24 bits, read as Spin reads it: 32
    "MEDIUMINT UNSIGNED": ("uint32", 0, 2**24),
    "INT": ("int32", -(2**31), 2**31),
    "INT UNSIGNED": ("uint32", 0, 2**32),
    "BIGINT": ("int64", -(2**63), 2**63),
    "BIGINT UNSIGNED": ("uint64", 0, 2**64),
}


def _column(sql_type: str) -> str:
    return "c_" + sql_type.replace(" ", "_").lower()


@pytest.fixture(scope="module")
def mysql_table(mysql: Any) -> Any:
    columns = ", ".join(f"{_column(sql)} {sql}" for sql in MYSQL_INTEGERS)
    mysql.execute(
        f"""CREATE TEMPORARY TABLE v ({columns}, f FLOAT, d DOUBLE,
        s TEXT CHARACTER SET utf8mb4, vs VARCHAR(100) CHARACTER SET utf8mb4,
        b BLOB, vb VARBINARY(100))""",
        [],
    )
    return mysql


def mysql_round_trip(conn: Any, column: str, param: object) -> tuple[Any, Any]:
    """`param` stored in `column` of the temporary table and read back: (data type, value)."""
    conn.execute("DELETE FROM v", [])
    try:
        conn.execute(f"INSERT INTO v ({column}) VALUES (?)", [param])
        rows = conn.query(f"SELECT {column} FROM v", [])
    finally:
        conn.execute("DELETE FROM v", [])
    (col,) = rows["columns"]
    ((value,),) = rows["rows"]
    return col["data-type"], value


@pytest.mark.parametrize("sql_type", list(MYSQL_INTEGERS))
def test_mysql_integer_columns(mysql_table: Any, sql_type: str) -> None:
    tag, low, high = MYSQL_INTEGERS[sql_type]
    # In range, just outside it, and anything a guest's int64/uint64 parameter can carry.
    values = (
        st.integers(low, high - 1)
        | st.sampled_from([low, high - 1, low - 1, high])
        | st.integers(-(2**63), 2**64 - 1)
    )

    @EXAMPLES
    @given(values)
    def check(n: int) -> None:
        param = ("int64", n) if n < 2**63 else ("uint64", n)
        if low <= n < high:
            assert mysql_round_trip(mysql_table, _column(sql_type), param) == (tag, (tag, n))
        else:  # strict mode: the server refuses it
            with pytest.raises(Failure) as e:
                mysql_round_trip(mysql_table, _column(sql_type), param)
            assert e.value.error[0] == "query-failed" and "1264" in e.value.error[1]

    check()


@EXAMPLES
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_mysql_double_is_exact(mysql_table: Any, x: float) -> None:
    assert mysql_round_trip(mysql_table, "d", ("floating64", x)) == (
        "floating64",
        ("floating64", x),
    )


@EXAMPLES
@given(st.floats(width=32, allow_nan=False, allow_infinity=False))
def test_mysql_float_reads_as_the_server_prints_it(mysql_table: Any, x: float) -> None:
    """FLOAT comes back as MariaDB's text protocol prints it, six significant digits (Spin's
    binary protocol would give the exact f32: a known difference, see docs/spin-apis.md)."""
    data_type, (tag, out) = mysql_round_trip(mysql_table, "f", ("floating32", x))
    assert (data_type, tag) == ("floating32", "floating32")
    assert out == float(format(x, ".6g"))
    assert out == 0 or math.isclose(out, x, rel_tol=5e-6)


ANY_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=60)  # NUL included


@EXAMPLES
@given(st.sampled_from(["s", "vs", "b", "vb"]), st.data())
def test_mysql_text_and_binary_columns(mysql_table: Any, column: str, data: st.DataObject) -> None:
    tag = "str" if column in ("s", "vs") else "binary"
    value = data.draw(ANY_TEXT if tag == "str" else st.binary(max_size=60))
    assert mysql_round_trip(mysql_table, column, (tag, value)) == (tag, (tag, value))


# -- mysql_value and mysql_data_type on their own ---------------------------------------------


@EXAMPLES
@given(
    st.sampled_from(sorted({tag for tag, _, _ in MYSQL_INTEGERS.values()})),
    st.integers(-(2**70), 2**70),
    st.sampled_from([str, lambda s: s.encode()]),
)
def test_mysql_value_range_checks_each_width(
    tag: str, n: int, form: Callable[[str], str | bytes]
) -> None:
    bits = int(tag.removeprefix("u").removeprefix("int"))
    low, high = (0, 2**bits) if tag.startswith("u") else (-(2 ** (bits - 1)), 2 ** (bits - 1))
    if low <= n < high:
        assert mysql_value(form(str(n)), tag, "c") == (tag, n)
    else:
        with pytest.raises(Failure) as e:
            mysql_value(form(str(n)), tag, "c")
        message = f"column c: {n} is out of range for {tag}"
        assert e.value.error == ("value-conversion-failed", message)


@EXAMPLES
@given(st.floats(allow_nan=False), st.sampled_from(["floating32", "floating64"]))
def test_mysql_value_floats(x: float, tag: str) -> None:
    assert mysql_value(repr(x), tag, "c") == (tag, x)


@EXAMPLES
@given(st.binary(max_size=20), TEXT)
def test_mysql_value_strings_and_binary(raw: bytes, text: str) -> None:
    assert mysql_value(raw, "binary", "c") == ("binary", raw)
    assert mysql_value(text, "str", "c") == ("str", text)
    assert mysql_value(text, "binary", "c") == ("binary", text.encode())
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        with pytest.raises(Failure) as e:
            mysql_value(raw, "str", "c")
        assert e.value.error[0] == "value-conversion-failed"
    else:
        assert mysql_value(raw, "str", "c") == ("str", decoded)
    assert mysql_value(None, "other", "c") == "db-null"
    with pytest.raises(Failure) as e:
        mysql_value(text, "other", "c")
    assert e.value.error[0] == "value-conversion-failed"


def spin_data_type(type_code: int, flags: int) -> str:
    """Spin's table (factor-outbound-mysql's convert_data_type), written out independently."""
    unsigned, binary = bool(flags & FLAG.UNSIGNED), bool(flags & FLAG.BINARY)
    ints = dict(TINY=8, SHORT=16, INT24=32, LONG=32, LONGLONG=64)
    others = dict(DOUBLE="floating64", FLOAT="floating32", LONG_BLOB="binary", MEDIUM_BLOB="binary")
    table = {getattr(FIELD_TYPE, k): f"{'u' if unsigned else ''}int{n}" for k, n in ints.items()}
    table |= {getattr(FIELD_TYPE, k): v for k, v in others.items()}
    if type_code in table:
        return table[type_code]
    if type_code in (FIELD_TYPE.BLOB, FIELD_TYPE.STRING, FIELD_TYPE.VAR_STRING):
        return "binary" if binary else "str"
    return "other"


# Every column type PyMySQL names, and a few codes it does not.
FIELD_TYPES = sorted({v for k, v in vars(FIELD_TYPE).items() if k.isupper()} | {17, 100, 200})


@pytest.mark.parametrize("type_code", FIELD_TYPES)
def test_mysql_data_type_is_spins(type_code: int) -> None:
    @FEW
    @given(st.integers(0, 2**16 - 1))
    def check(flags: int) -> None:
        assert mysql_data_type(type_code, flags) == spin_data_type(type_code, flags)

    check()


# -- connecting -------------------------------------------------------------------------------


def test_mysql_tls_modes_are_enforced(mysql: Any) -> None:
    """A bug fixed in the split: `ssl-mode=required` (any mode but `disabled`) used to pass
    PyMySQL an empty options dict, which it treats as none: the connection went on in plain
    TCP. Now TLS is required with the certificate verified (as Spin), so against this server
    (no TLS, or an unverifiable certificate) it fails; `disabled` is plain TCP."""
    for mode in ("required", "VERIFY_IDENTITY", "preferred"):
        with pytest.raises(Failure) as e:
            _mysql_client.connect(f"{MYSQL}?ssl-mode={mode}")
        assert e.value.error[0] == "connection-failed"
    for address in (f"{MYSQL}?ssl-mode=disabled", MYSQL):
        conn = _mysql_client.connect(address)
        rows = conn.query("SHOW SESSION STATUS LIKE 'Ssl_cipher'", [])
        assert rows["rows"] == [[("str", "Ssl_cipher"), ("str", "")]]
        conn.conn.close()
