"""WASI 0.2 and component-model host support in Python, over wasmtime's C API.

The public face for the rest of wasmlet: the component-value types host interfaces declare
their signatures with, `Interface` to declare one, the per-instance state host functions read
(`current()`, `table()`, typed capability `Key`s), and `call_export` to call a component.
The WASI interfaces themselves are the modules `io`, `http`, `filesystem`, `sockets`, and the
linker that puts them together is `host.build_linker`.
"""

from ._abi import (
    BOOL,
    CHAR,
    F32,
    F64,
    LIST_U8,
    S8,
    S16,
    S32,
    S64,
    STRING,
    U8,
    U16,
    U32,
    U64,
    Borrow,
    Enum,
    Err,
    Flags,
    List,
    Ok,
    Option,
    Own,
    Record,
    Result,
    Some,
    Tuple,
    Ty,
    Variant,
)
from ._calls import GuestError, HostTrap, call_export
from ._iface import Interface
from ._state import InstanceState, Key, ResourceTable, active, current, table

__all__ = [
    "BOOL",
    "CHAR",
    "F32",
    "F64",
    "LIST_U8",
    "S8",
    "S16",
    "S32",
    "S64",
    "STRING",
    "U8",
    "U16",
    "U32",
    "U64",
    "Borrow",
    "Enum",
    "Err",
    "Flags",
    "GuestError",
    "HostTrap",
    "InstanceState",
    "Interface",
    "Key",
    "List",
    "Ok",
    "Option",
    "Own",
    "Record",
    "ResourceTable",
    "Result",
    "Some",
    "Tuple",
    "Ty",
    "Variant",
    "active",
    "call_export",
    "current",
    "table",
]
