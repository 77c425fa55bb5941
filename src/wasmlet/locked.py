"""The locked app: the one canonical form of an application.

A `LockedApp` is Spin's LockedApp JSON (`spin_lock_version = 1`): every source and file is
resolved to a content reference (`source` URL and/or `inline` base64, plus a `sha256:` digest).
The manifest loader produces it, `wasmlet up` runs from it, OCI packaging ships it and the
Kubernetes side hands it to pods. Nothing downstream reads `spin.toml`.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from pydantic import BaseModel, ConfigDict, Field

from .errors import LockError

SPIN_LOCK_VERSION = 1


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ContentRef(_Model):
    """Where content comes from: a URL (`file://…` locally), inline bytes, and its digest."""

    source: str | None = None
    inline: str | None = None  # base64
    digest: str | None = None  # "sha256:<hex>"


class ContentPath(ContentRef):
    """A file (or, with a directory `source`, a tree) mounted at `path` in the guest."""

    path: str


class LockedComponentSource(ContentRef):
    content_type: str = "application/wasm"


class LockedComponent(_Model):
    id: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    source: LockedComponentSource
    env: dict[str, str] = Field(default_factory=dict)
    files: list[ContentPath] = Field(default_factory=list)
    config: dict[str, str] = Field(default_factory=dict)
    dependencies: dict[str, Any] = Field(default_factory=dict)
    host_requirements: dict[str, Any] = Field(default_factory=dict)


class LockedTrigger(_Model):
    id: str
    trigger_type: str
    trigger_config: dict[str, Any] = Field(default_factory=dict)


class LockedVariable(_Model):
    description: str | None = None
    default: str | None = None
    secret: bool = False

    @property
    def required(self) -> bool:
        return self.default is None


class LockedApp(_Model):
    spin_lock_version: int = SPIN_LOCK_VERSION
    must_understand: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    host_requirements: dict[str, Any] = Field(default_factory=dict)
    variables: dict[str, LockedVariable] = Field(default_factory=dict)
    triggers: list[LockedTrigger] = Field(default_factory=list)
    components: list[LockedComponent] = Field(default_factory=list)

    # -- access -------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return str(self.metadata.get("name", ""))

    @property
    def version(self) -> str | None:
        v = self.metadata.get("version")
        return str(v) if v is not None else None

    def component(self, component_id: str) -> LockedComponent:
        for c in self.components:
            if c.id == component_id:
                return c
        raise LockError(f"locked app has no component {component_id!r}")

    def triggers_of(self, trigger_type: str) -> list[LockedTrigger]:
        return [t for t in self.triggers if t.trigger_type == trigger_type]

    # -- (de)serialisation ----------------------------------------------------------------
    def to_json(self) -> str:
        return self.model_dump_json(indent=2, exclude_none=True)

    def write(self, path: Path) -> None:
        path.write_text(self.to_json() + "\n")

    @classmethod
    def from_json(cls, text: str | bytes, origin: str = "locked app") -> LockedApp:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise LockError(f"{origin}: not valid JSON: {e}") from None
        if not isinstance(data, dict):
            raise LockError(f"{origin}: expected a JSON object")
        version = data.get("spin_lock_version")
        if version != SPIN_LOCK_VERSION:
            raise LockError(f"{origin}: unsupported spin_lock_version {version!r}")
        try:
            return cls.model_validate(data)
        except Exception as e:  # pydantic.ValidationError
            raise LockError(f"{origin}: {e}") from None

    @classmethod
    def read(cls, path: Path) -> LockedApp:
        try:
            text = path.read_bytes()
        except OSError as e:
            raise LockError(f"{path}: cannot read: {e.strerror}") from None
        return cls.from_json(text, origin=str(path))


# -- content helpers ---------------------------------------------------------------------------


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def path_to_url(path: Path) -> str:
    return path.resolve().as_uri()


def url_to_path(url: str) -> Path:
    parsed = urlparse(url)
    if parsed.scheme != "file":
        raise LockError(f"content source {url!r}: only file:// URLs can be read locally")
    return Path(unquote(parsed.path))


def read_content(ref: ContentRef, what: str) -> bytes:
    """Return the bytes a content reference names, verifying its digest when it has one."""
    if ref.inline is not None:
        data = base64.b64decode(ref.inline)
    elif ref.source is not None:
        path = url_to_path(ref.source)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise LockError(f"{what}: cannot read {path}: {e.strerror}") from None
    else:
        raise LockError(f"{what}: content has neither source nor inline data")
    if ref.digest is not None and sha256_digest(data) != ref.digest:
        raise LockError(f"{what}: content digest mismatch (expected {ref.digest})")
    return data
