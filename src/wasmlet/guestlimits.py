"""A guest's limits as the command line and the runtime config give them: the defaults, and
sizes such as `64Mi`. Only the standard library: the command line is parsed with these
before wasmtime and the rest of the runtime are imported (`wasmlet up` starts its workers'
fork server then: forkserver.py)."""

from __future__ import annotations

import re

from .errors import WasmletError

DEFAULT_REQUEST_TIMEOUT = 30.0
DEFAULT_MAX_OUTPUT = 64 << 20  # a Wagi response is held whole in memory

_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
_SIZE_RE = re.compile(r"^\s*(\d+)\s*([kmg]?)(?:i?b?)\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Parse `128Mi`, `64MB`, `1g`, `65536` (bytes) into a number of bytes."""
    m = _SIZE_RE.match(text)
    if m is None:
        raise WasmletError(f"invalid size {text!r}: use bytes or a suffix such as 64Mi or 1Gi")
    return int(m.group(1)) * _SIZE_UNITS[m.group(2).lower()]
