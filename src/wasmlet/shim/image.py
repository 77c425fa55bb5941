"""A container's image in containerd's content store: is it a Spin app, and its blobs.

Container -> image -> manifest (following an index to its `wasm`/`wasi*` entry) -> config and
layers. An image with Spin or Wasm layers (or an old-format Spin config) is a Wasm app: its
config and app layers are copied out of the content store into the shim's blob directory
(`<state>/blobs/{wasm,data}/sha256/<hex>`, the layout of wasmlet's registry cache, verified
while written), where the runner reads them. Nothing here imports wasmlet's heavier modules:
the shim stays small, the runner builds the locked app (`appload.py`).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grpclib.const import Status

from .containerd import Containerd, ContainerdError, Descriptor

# The same strings as wasmlet.oci.mediatypes (checked by the tests).
SPIN_APP_LAYER = "application/vnd.fermyon.spin.application.v1+config"
WASM_LAYERS = ("application/vnd.wasm.content.layer.v1+wasm", "application/wasm")
DATA_LAYER = "application/vnd.wasm.content.layer.v1+data"
ARCHIVE_LAYER = "application/vnd.wasm.content.bundle.v1.tar+gzip"
APP_MEDIA_TYPES = (SPIN_APP_LAYER, *WASM_LAYERS, DATA_LAYER, ARCHIVE_LAYER)
INDEXES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
WASM = "wasm"
DATA = "data"


class ImageError(Exception):
    pass


@dataclass(frozen=True)
class Blob:
    media_type: str
    digest: str
    size: int

    @property
    def kind(self) -> str:
        return WASM if self.media_type in WASM_LAYERS else DATA

    def to_json(self) -> list[Any]:
        return [self.media_type, self.digest, self.size]

    @classmethod
    def from_json(cls, value: list[Any]) -> Blob:
        return cls(str(value[0]), str(value[1]), int(value[2]))


@dataclass(frozen=True)
class ImageApp:
    name: str
    config: Blob
    layers: tuple[Blob, ...]  # the app's layers, in manifest order

    @property
    def wasm_layers(self) -> tuple[str, ...]:
        return tuple(b.digest for b in self.layers if b.kind == WASM)

    def to_json(self) -> list[Any]:
        return [self.name, self.config.to_json(), [b.to_json() for b in self.layers]]

    @classmethod
    def from_json(cls, value: list[Any]) -> ImageApp:
        return cls(str(value[0]), Blob.from_json(value[1]), tuple(map(Blob.from_json, value[2])))


def blob_path(blobs: Path, kind: str, digest: str) -> Path:
    algorithm, _, hexdigest = digest.partition(":")
    if algorithm != "sha256" or len(hexdigest) != 64:
        raise ImageError(f"unsupported digest {digest!r}")
    return blobs / kind / "sha256" / hexdigest


async def find_image_app(containerd: Containerd, container_id: str, blobs: Path) -> ImageApp | None:
    """The container's image as a Wasm app (blobs fetched), or None for other images."""
    try:
        name = await containerd.container_image(container_id)
        if not name:
            return None
        manifest = await _manifest(containerd, await containerd.image_target(name))
    except ContainerdError as e:
        if e.status == Status.NOT_FOUND:
            return None
        raise ImageError(f"cannot read the container's image from containerd: {e}") from None
    if manifest is None:
        return None
    config = _blob(manifest.get("config"))
    layers = tuple(_blob(x) for x in manifest.get("layers") or [])
    app_layers = tuple(x for x in layers if x.media_type in APP_MEDIA_TYPES)
    if not app_layers and config.media_type != SPIN_APP_LAYER:
        return None  # an ordinary image: its root filesystem decides
    for blob in (config, *app_layers):
        await fetch(containerd, blobs, blob)
    return ImageApp(name, config, app_layers)


def _blob(value: Any) -> Blob:
    d = Descriptor.from_json(value)
    return Blob(d.media_type, d.digest, d.size)


async def _manifest(containerd: Containerd, target: Descriptor) -> dict[str, Any] | None:
    data = await containerd.read_json(target.digest)
    if target.media_type in INDEXES or "manifests" in data:
        entries = [Descriptor.from_json(e) for e in data.get("manifests") or []]
        wasm = [
            e
            for e in entries
            if e.platform.get("architecture") == "wasm"
            and str(e.platform.get("os", "")).startswith("wasi")
        ]
        chosen = wasm or (entries if len(entries) == 1 else [])
        if not chosen:
            return None
        data = await containerd.read_json(chosen[0].digest)
    if not isinstance(data, dict) or "config" not in data:
        raise ImageError(f"image manifest {target.digest} has no config")
    return data


async def fetch(containerd: Containerd, blobs: Path, blob: Blob) -> Path:
    """Copy a blob out of the content store (once; verified by its digest)."""
    path = blob_path(blobs, blob.kind, blob.digest)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            written = await containerd.read_into(blob.digest, f)
        if written != blob.digest:
            raise ImageError(f"content {blob.digest} read from containerd does not match")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path
