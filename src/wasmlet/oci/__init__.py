"""OCI packaging: push Spin apps to registries, pull and run them, write OCI image layouts.

The format is Spin's (`spin registry push`); see `docs/oci.md`.
"""

from __future__ import annotations

from .assemble import Artifact, assemble
from .errors import (
    DigestMismatchError,
    InvalidReferenceError,
    ReferenceNotFoundError,
    RegistryAuthError,
    RegistryError,
    RegistryUnreachableError,
)
from .layout import build_image
from .lockjson import from_spin_json
from .pull import PullResult, pull, pull_app
from .push import PushResult, push_app
from .reference import Reference, parse_reference

__all__ = [
    "Artifact",
    "DigestMismatchError",
    "InvalidReferenceError",
    "PullResult",
    "PushResult",
    "Reference",
    "ReferenceNotFoundError",
    "RegistryAuthError",
    "RegistryError",
    "RegistryUnreachableError",
    "assemble",
    "build_image",
    "from_spin_json",
    "parse_reference",
    "pull",
    "pull_app",
    "push_app",
]
