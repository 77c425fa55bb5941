"""The content-addressed registry cache: `<cache>/registry/{manifests,wasm,data}/sha256/<hex>`.

Every entry is named by the sha256 of its bytes. Writes go to a temporary file in the same
directory and are renamed into place, so concurrent pulls never see a partial entry; reads
re-hash the file, so a corrupted entry is detected, removed and fetched again.
`apps/<registry>/<repository>` is the home directory of a pulled app (its `.spin` state).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, BinaryIO

from ..dirs import default_cache_dir
from .blobs import file_sha256
from .errors import DigestMismatchError
from .reference import Reference

log = logging.getLogger("wasmlet.oci")

MANIFESTS = "manifests"
WASM = "wasm"
DATA = "data"
_DIGEST = re.compile(r"^sha256:([0-9a-f]{64})$")


def default_registry_cache() -> Path:
    return default_cache_dir() / "registry"


class BlobCache:
    def __init__(self, root: Path | None = None) -> None:
        self.root = root if root is not None else default_registry_cache()
        self._verified: set[tuple[str, int, int]] = set()

    def path(self, kind: str, digest: str) -> Path:
        m = _DIGEST.match(digest)
        if m is None:
            raise DigestMismatchError(f"unsupported digest {digest!r} (only sha256 is supported)")
        return self.root / kind / "sha256" / m.group(1)

    def find(self, digest: str, *kinds: str) -> Path | None:
        """The verified cache file for `digest` under one of `kinds`; a corrupted one is
        deleted (and so reported missing)."""
        for kind in kinds or (WASM, DATA):
            path = self.path(kind, digest)
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            key = (str(path), st.st_size, st.st_mtime_ns)
            if key in self._verified:
                return path
            if file_sha256(path) == digest:
                self._verified.add(key)
                return path
            log.warning("cache entry %s is corrupted; fetching it again", path)
            path.unlink(missing_ok=True)
        return None

    def read(self, digest: str, *kinds: str) -> bytes | None:
        path = self.find(digest, *kinds)
        return path.read_bytes() if path is not None else None

    @contextmanager
    def writer(self, kind: str, digest: str) -> Iterator[BinaryIO]:
        """A file to write `digest`'s bytes to; verified and renamed into place on exit."""
        final = self.path(kind, digest)
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                yield f
            actual = file_sha256(Path(tmp))
            if actual != digest:
                raise DigestMismatchError(f"content for {digest} has digest {actual}")
            os.chmod(tmp, 0o644)
            os.replace(tmp, final)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put(self, kind: str, digest: str, data: bytes) -> Path:
        with self.writer(kind, digest) as f:
            f.write(data)
        return self.path(kind, digest)

    def put_file(self, kind: str, source: Path) -> tuple[str, Path]:
        """Copy `source` into the cache; returns its digest and cache path."""
        digest = file_sha256(source)
        existing = self.find(digest, kind)
        if existing is not None:
            return digest, existing
        with self.writer(kind, digest) as f, source.open("rb") as src:
            while chunk := src.read(1 << 20):
                f.write(chunk)
        return digest, self.path(kind, digest)

    def put_stream(self, kind: str, source: IO[bytes]) -> str:
        """Store what `source` yields under its own digest; returns the digest."""
        directory = self.root / kind / "sha256"
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
        try:
            h = hashlib.sha256()
            with os.fdopen(fd, "wb") as f:
                while chunk := source.read(1 << 20):
                    h.update(chunk)
                    f.write(chunk)
            digest = "sha256:" + h.hexdigest()
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.path(kind, digest))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return digest

    def app_home(self, ref: Reference) -> Path:
        registry = ref.registry.replace(":", "_")
        home = self.root / "apps" / registry / ref.repository
        home.mkdir(parents=True, exist_ok=True)
        return home
