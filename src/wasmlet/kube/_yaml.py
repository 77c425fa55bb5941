"""YAML documents as `kubectl` prints them."""

from __future__ import annotations

from typing import Any

import yaml


def dump(objs: list[dict[str, Any]]) -> str:
    """`---`-separated documents, keys in the order they were built."""
    return "".join("---\n" + yaml.safe_dump(o, sort_keys=False, width=100) for o in objs)
