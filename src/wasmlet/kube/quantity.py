"""Kubernetes resource quantities (`128Mi`, `1G`, `1e6`) as whole numbers of bytes."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1)}
_DECIMAL |= {"k": Decimal(10**3), "M": Decimal(10**6), "G": Decimal(10**9)}
_DECIMAL |= {"T": Decimal(10**12), "P": Decimal(10**15), "E": Decimal(10**18)}
_RE = re.compile(
    r"^(?P<num>[+-]?(?:\d+(?:\.\d*)?|\.\d+))"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?$"
)
INT64_MAX = 2**63 - 1


class QuantityError(ValueError):
    pass


def parse_bytes(text: str) -> int:
    """`128Mi` -> 134217728. Fractions round up, as Kubernetes does; must fit in int64."""
    m = _RE.match(text.strip())
    if m is None:
        raise QuantityError(f"{text!r} is not a Kubernetes quantity (e.g. 128Mi, 1G)")
    try:
        number = Decimal(m.group("num"))
    except InvalidOperation:  # pragma: no cover - the regex admits only numbers
        raise QuantityError(f"{text!r} is not a number") from None
    suffix = m.group("suffix") or ""
    if suffix in _BINARY:
        value = number * _BINARY[suffix]
    elif suffix[:1] in ("e", "E"):
        value = number * Decimal(10) ** int(suffix[1:])
    else:
        value = number * _DECIMAL[suffix]
    if value < 0:
        raise QuantityError(f"{text!r} is negative")
    whole = int(value.to_integral_value(rounding="ROUND_CEILING"))
    if whole > INT64_MAX:
        raise QuantityError(f"{text!r} is too large (more than {INT64_MAX} bytes)")
    return whole
