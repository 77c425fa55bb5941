"""OCI references: `registry[:port]/repository[:tag][@sha256:<hex>]`, Docker's rules.

A first path component with a `.` or `:`, or `localhost`, is a registry host; otherwise the
reference is on Docker Hub (`docker.io`, single names under `library/`). The tag defaults to
`latest` when there is no digest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import InvalidReferenceError

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
DEFAULT_TAG = "latest"

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class Reference:
    registry: str  # as written, e.g. "ghcr.io", "127.0.0.1:5000", "docker.io"
    repository: str  # e.g. "acme/app"
    tag: str | None = None
    digest: str | None = None

    @property
    def api_host(self) -> str:
        """The host:port the distribution API is served on."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def target(self) -> str:
        """What to ask `/manifests/` for: the digest when pinned, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.registry, self.repository, self.tag, digest)

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse_reference(text: str) -> Reference:
    """Parse `text`; raises `InvalidReferenceError` with the reason."""
    rest = text.strip()
    if not rest:
        raise InvalidReferenceError("empty OCI reference")
    if "://" in rest:
        raise InvalidReferenceError(
            f"{text!r}: an OCI reference has no scheme (use --insecure for plain HTTP)"
        )
    digest = None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not _DIGEST.match(digest):
            raise InvalidReferenceError(f"{text!r}: invalid digest {digest!r}")
    tag = None
    last = rest.rsplit("/", 1)[-1]
    if ":" in last:
        rest, tag = rest.rsplit(":", 1)
        if not _TAG.match(tag):
            raise InvalidReferenceError(f"{text!r}: invalid tag {tag!r}")
    first, sep, remainder = rest.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        registry, repository = first, remainder
    else:
        registry, repository = DOCKER_HUB, rest
        if "/" not in repository:
            repository = f"library/{repository}"
    if not _REPOSITORY.match(repository):
        raise InvalidReferenceError(
            f"{text!r}: invalid repository name {repository!r} "
            "(lowercase letters, digits and . _ - separators)"
        )
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return Reference(registry, repository, tag, digest)


def normalize_registry(server: str) -> str:
    """The registry key for credentials: `https://ghcr.io/` → `ghcr.io`,
    `index.docker.io` / `registry-1.docker.io` → `docker.io`."""
    host = re.sub(r"^[a-z]+://", "", server.strip()).split("/", 1)[0]
    if host in ("index.docker.io", DOCKER_HUB_API):
        return DOCKER_HUB
    return host
