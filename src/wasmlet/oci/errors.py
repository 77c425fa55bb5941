"""Errors of the registry client. Each message is one line naming the registry and what
went wrong, e.g. `registry 127.0.0.1:5000: repository "acme/app" not found`."""

from __future__ import annotations

from ..errors import WasmletError


class RegistryError(WasmletError):
    """A registry answered with an error, or its answer is not usable."""


class ReferenceNotFoundError(RegistryError):
    """The repository, tag or digest does not exist in the registry."""


class RegistryAuthError(RegistryError):
    """The registry refused our credentials, or wants credentials we do not have."""


class DigestMismatchError(RegistryError):
    """Content does not hash to the digest that names it."""


class RegistryUnreachableError(RegistryError):
    """No HTTP conversation with the registry was possible (DNS, TCP, TLS, timeout)."""


class InvalidReferenceError(RegistryError):
    """A string is not a valid OCI reference (`registry/repository[:tag][@digest]`)."""
