"""Turn a locked app into Spin's OCI artifact: layers, locked-app layer, config, manifest.

The format is what `spin registry push` writes (see `mediatypes.py`):

- per component, in order: its Wasm layer, its dependencies' Wasm layers, then a data
  layer per file (or, in archive mode, one tar+gzip layer with all its files);
- in the locked app, every source and file becomes `{digest, inline?}`: content of at most
  128 bytes is inlined (base64) and, for files, gets no layer; file paths are relative;
  `metadata.origin` is removed;
- identical layers are pushed once; the locked-app layer comes last;
- the config is a standard OCI image config (`wasm`/`wasip1`) labelled with the locked-app
  layer's digest, and the manifest carries the `org.opencontainers.image.*` annotations.

Archive mode is used when asked (`archive=True`, or `SPIN_OCI_ARCHIVE_LAYERS` set) or when
there would be more than 499 layers.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import LockError
from ..locked import ContentRef, LockedApp, LockedComponent, url_to_path
from . import mediatypes as mt
from .blobs import Blob, compact_json, sha256
from .lockjson import to_spin_json

WASM_MAGIC = b"\0asm"


@dataclass(frozen=True)
class Artifact:
    manifest: bytes
    config: Blob
    layers: list[Blob]  # manifest order; the locked-app layer is last
    locked_app: bytes

    @property
    def digest(self) -> str:
        return sha256(self.manifest)

    @property
    def manifest_json(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.manifest)
        return value

    def blobs(self) -> list[Blob]:
        """Every blob to store, each digest once (layers, then the config)."""
        seen: dict[str, Blob] = {}
        for blob in [*self.layers, self.config]:
            seen.setdefault(blob.digest, blob)
        return list(seen.values())


def assemble(
    app: LockedApp,
    workdir: Path,
    *,
    archive: bool | None = None,
    annotations: Mapping[str, str] | None = None,
    created: datetime | None = None,
) -> Artifact:
    """Build the artifact of `app`, whose sources are `file://` URLs or inline content.

    Archive files are written under `workdir` (which must outlive the returned artifact)."""
    forced = archive if archive is not None else mt.ARCHIVE_LAYERS_ENV in os.environ
    components, layers = _Assembler(workdir, archive=forced).run(app)
    if not forced and len(layers) > mt.MAX_LAYER_COUNT - 1:
        components, layers = _Assembler(workdir, archive=True).run(app)

    dumped = app.model_dump()
    dumped["components"] = components
    dumped["metadata"] = {k: v for k, v in dumped["metadata"].items() if k != "origin"}
    locked_bytes = compact_json(to_spin_json(dumped))
    locked_layer = Blob.of_bytes(mt.SPIN_APP_LAYER, locked_bytes)
    layers.append(locked_layer)

    config = Blob.of_bytes(mt.OCI_CONFIG, compact_json(image_config(locked_layer.digest)))
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": config.descriptor(),
        "layers": [layer.descriptor() for layer in layers],
    }
    notes = inferred_annotations(app, created) | dict(annotations or {})
    if notes:
        manifest["annotations"] = dict(sorted(notes.items()))
    return Artifact(compact_json(manifest), config, layers, locked_bytes)


def image_config(locked_app_digest: str) -> dict[str, Any]:
    """The OCI image config Spin writes (no rootfs content: the layers are not tars)."""
    return {
        "architecture": mt.ARCHITECTURE,
        "os": mt.OS,
        "config": {"Labels": {mt.LOCKED_APP_DIGEST_LABEL: locked_app_digest}},
        "rootfs": {"type": "layers", "diff_ids": []},
    }


def inferred_annotations(app: LockedApp, created: datetime | None = None) -> dict[str, str]:
    """`org.opencontainers.image.*` from the app's metadata, and the creation time."""
    notes: dict[str, str] = {}
    authors = app.metadata.get("authors") or []
    if isinstance(authors, list) and authors:
        notes[mt.ANNOTATION_AUTHORS] = ", ".join(str(a) for a in authors)
    for key, annotation in (
        ("name", mt.ANNOTATION_TITLE),
        ("description", mt.ANNOTATION_DESCRIPTION),
        ("version", mt.ANNOTATION_VERSION),
    ):
        value = app.metadata.get(key)
        if isinstance(value, str) and value:
            notes[annotation] = value
    notes[mt.ANNOTATION_CREATED] = (created or datetime.now(UTC)).isoformat()
    return notes


@dataclass(frozen=True)
class _File:
    path: str  # relative, posix
    blob: Blob


class _Assembler:
    def __init__(self, workdir: Path, *, archive: bool) -> None:
        self.workdir = workdir
        self.archive = archive
        self.layers: list[Blob] = []

    def run(self, app: LockedApp) -> tuple[list[dict[str, Any]], list[Blob]]:
        components = [self._component(c) for c in app.components]
        unique: dict[tuple[str, str], Blob] = {}
        for layer in self.layers:
            unique.setdefault((layer.digest, layer.media_type), layer)
        return components, list(unique.values())

    def _component(self, c: LockedComponent) -> dict[str, Any]:
        what = f"component {c.id!r}"
        out = c.model_dump()
        wasm = self._wasm(c.source, f"{what} source")
        out["source"] = {"content_type": c.source.content_type, **_ref(wasm)}
        for name, dep in out["dependencies"].items():
            source = dep.get("source") if isinstance(dep, dict) else None
            if not isinstance(source, dict):
                raise LockError(f"{what}: dependency {name!r} has no source")
            blob = self._wasm(
                ContentRef.model_validate(
                    {k: source.get(k) for k in ("source", "inline", "digest")}
                ),
                f"{what} dependency {name!r}",
            )
            dep["source"] = {
                "content_type": source.get("content_type", "application/wasm"),
                **_ref(blob),
            }
        files = [f for entry in c.files for f in _expand(entry, what)]
        out["files"] = [{**_ref(f.blob), "path": f.path} for f in files]
        if self.archive:
            if files:
                self.layers.append(self._archive(c.id, files))
        else:
            self.layers += [f.blob for f in files if f.blob.size > mt.INLINE_MAX_SIZE]
        return out

    def _wasm(self, ref: ContentRef, what: str) -> Blob:
        blob = _blob(ref, mt.WASM_LAYER, what)
        with blob.open() as f:
            if f.read(4) != WASM_MAGIC:
                raise LockError(f"{what}: not a WebAssembly binary")
        self.layers.append(blob)
        return blob

    def _archive(self, component_id: str, files: list[_File]) -> Blob:
        """A deterministic tar+gzip of the component's files (same files, same digest)."""
        path = self.workdir / f"{component_id}.tar.gz"
        with (
            path.open("wb") as out,
            gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz,
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            for f in sorted(files, key=lambda f: f.path):
                info = tarfile.TarInfo(f.path)
                info.size = f.blob.size
                info.mode = 0o644
                info.mtime = 0
                with f.blob.open() as src:
                    tar.addfile(info, src)
        return Blob.of_file(mt.ARCHIVE_LAYER, path)


def _ref(blob: Blob) -> dict[str, Any]:
    ref: dict[str, Any] = {}
    if blob.size <= mt.INLINE_MAX_SIZE:
        ref["inline"] = base64.b64encode(blob.read()).decode()
    ref["digest"] = blob.digest
    return ref


def _blob(ref: ContentRef, media_type: str, what: str) -> Blob:
    if ref.inline is not None:
        blob = Blob.of_bytes(media_type, base64.b64decode(ref.inline))
    elif ref.source is not None:
        path = url_to_path(ref.source)
        if not path.is_file():
            raise LockError(f"{what}: {path} is not a file")
        blob = Blob.of_file(media_type, path)
    else:
        raise LockError(f"{what}: content has neither source nor inline data")
    if ref.digest is not None and ref.digest != blob.digest:
        raise LockError(f"{what}: content digest mismatch (expected {ref.digest})")
    return blob


def _expand(entry: Any, what: str) -> list[_File]:
    """One `files` entry as files with relative paths (a directory source is walked)."""
    base = _relative(entry.path, what)
    if entry.source is not None and entry.inline is None:
        root = url_to_path(entry.source)
        if root.is_dir():
            return [
                _File(
                    "/".join(x for x in (base, p.relative_to(root).as_posix()) if x),
                    Blob.of_file(mt.DATA_LAYER, p),
                )
                for p in sorted(root.rglob("*"))
                if p.is_file()
            ]
    if not base:
        raise LockError(f"{what}: file {entry.path!r} has no file name")
    return [_File(base, _blob(entry, mt.DATA_LAYER, f"{what} file {entry.path}"))]


def _relative(path: str, what: str) -> str:
    parts = [p for p in PurePosixPath(path).parts if p not in ("/", ".")]
    if ".." in parts:
        raise LockError(f"{what}: file path {path!r} escapes the component root")
    return "/".join(parts)
