"""`wasmlet registry pull` and `wasmlet up REF`: fetch an app into the cache and resolve it.

Reads both Spin formats: the current one (locked app in a
`application/vnd.fermyon.spin.application.v1+config` layer) and the old one (≤ Spin 2.0:
locked app as the OCI config). Wasm layers (`…layer.v1+wasm` or `application/wasm`) go to
`wasm/`, everything else to `data/`; archive layers are unpacked into `data/` by content
digest. A blob already in the cache (and still matching its digest) is not fetched again,
and a manifest pinned by digest and cached needs no request at all.
"""

from __future__ import annotations

import json
import tarfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import NotSupportedError
from ..locked import LockedApp, path_to_url
from . import mediatypes as mt
from .cache import DATA, MANIFESTS, WASM, BlobCache
from .client import RegistryClient, TransferStats
from .errors import RegistryError
from .lockjson import from_spin_json
from .progress import Progress
from .reference import Reference, parse_reference

PARALLEL_DOWNLOADS = 8


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int

    @property
    def kind(self) -> str:
        return WASM if self.media_type in mt.WASM_LAYERS else DATA


@dataclass(frozen=True)
class PullResult:
    reference: Reference  # with the manifest digest
    digest: str
    app: LockedApp  # content resolved to file:// URLs of cache entries
    home: Path
    legacy_format: bool
    stats: TransferStats


def pull_app(
    ref: str, insecure: bool = False, progress: Progress | None = None
) -> tuple[LockedApp, Path]:
    """Pull `ref` (using the cache) and return its locked app and home directory."""
    result = pull(ref, insecure=insecure, progress=progress)
    return result.app, result.home


def pull(
    ref: str,
    *,
    insecure: bool = False,
    cache_dir: Path | None = None,
    progress: Progress | None = None,
) -> PullResult:
    reference = parse_reference(ref)
    cache = BlobCache(cache_dir)
    stats = TransferStats()
    with RegistryClient(reference, insecure=insecure, stats=stats) as client:
        puller = _Puller(client, cache, reference, progress)
        digest, manifest = puller.manifest(reference.target)
        config = _descriptor(manifest.get("config"), "config")
        layers = [_descriptor(x, "layer") for x in manifest.get("layers") or []]
        puller.fetch([config, *layers])
        config_bytes = puller.cached(config)
        legacy = _is_locked_app(config_bytes)
        app_layers = [x for x in layers if x.media_type == mt.SPIN_APP_LAYER]
        if not legacy and not app_layers:
            raise NotSupportedError(
                f"{reference}: not a Spin application (no {mt.SPIN_APP_LAYER} layer and the "
                "config is not a locked app)"
            )
        locked_bytes = config_bytes if legacy else puller.cached(app_layers[-1])
        content = [x for x in layers if x.media_type != mt.SPIN_APP_LAYER]
    app = from_spin_json(locked_bytes, origin=f"{reference} locked app")
    archives = [x for x in content if x.media_type == mt.ARCHIVE_LAYER]
    resolved = _Resolver(cache, str(reference), archives).resolve(app)
    resolved.metadata["origin"] = f"{mt.ORIGIN_SCHEME}:{reference}"
    pinned = reference.with_digest(digest)
    return PullResult(pinned, digest, resolved, cache.app_home(reference), legacy, stats)


def _descriptor(value: Any, what: str) -> Descriptor:
    try:
        return Descriptor(str(value["mediaType"]), str(value["digest"]), int(value["size"]))
    except (TypeError, KeyError, ValueError):
        raise RegistryError(f"manifest {what} descriptor is invalid: {value!r}") from None


def _is_locked_app(data: bytes) -> bool:
    try:
        return isinstance(value := json.loads(data), dict) and "spin_lock_version" in value
    except (ValueError, UnicodeDecodeError):
        return False


class _Puller:
    def __init__(
        self,
        client: RegistryClient,
        cache: BlobCache,
        reference: Reference,
        progress: Progress | None,
    ) -> None:
        self.client = client
        self.cache = cache
        self.reference = reference
        self.progress = progress

    def manifest(self, target: str, depth: int = 0) -> tuple[str, dict[str, Any]]:
        """The image manifest `target` names (following an index to its wasm entry)."""
        digest = target if target.startswith("sha256:") else self.client.head_manifest(target)
        data = self.cache.read(digest, MANIFESTS) if digest else None
        if data is None:
            fetched = self.client.get_manifest(target)
            digest, data = fetched.digest, fetched.data
            self.cache.put(MANIFESTS, digest, data)
        assert digest is not None
        try:
            manifest = json.loads(data)
        except ValueError:
            raise RegistryError(f"{self.reference}: manifest {digest} is not JSON") from None
        if not isinstance(manifest, dict) or manifest.get("schemaVersion") != 2:
            raise NotSupportedError(
                f"{self.reference}: unsupported manifest: only schema version 2 is supported"
            )
        if manifest.get("mediaType") in mt.INDEXES or "manifests" in manifest:
            if depth > 0:
                raise NotSupportedError(f"{self.reference}: nested image indexes")
            return self.manifest(self._pick(manifest), depth + 1)
        return digest, manifest

    def _pick(self, index: dict[str, Any]) -> str:
        entries = [e for e in index.get("manifests") or [] if isinstance(e, dict)]
        for e in entries:
            platform = e.get("platform") or {}
            if platform.get("architecture") == mt.ARCHITECTURE and str(
                platform.get("os", "")
            ).startswith("wasi"):
                return str(e["digest"])
        if len(entries) == 1:
            return str(entries[0]["digest"])
        raise NotSupportedError(
            f"{self.reference}: image index with {len(entries)} manifests and none for "
            f"{mt.ARCHITECTURE}/{mt.OS}"
        )

    def cached(self, d: Descriptor) -> bytes:
        data = self.cache.read(d.digest, d.kind)
        if data is None:  # removed since `fetch` (another process cleaning the cache)
            self.fetch([d])
            data = self.cache.read(d.digest, d.kind)
        assert data is not None
        return data

    def fetch(self, layers: list[Descriptor]) -> None:
        unique = {d.digest: d for d in layers}.values()
        needed = [d for d in unique if self.cache.find(d.digest, d.kind) is None]
        if not needed:
            return
        total = sum(d.size for d in needed)
        bar = self.progress or Progress("Pulling", total, len(needed), done="Pulled")

        def one(d: Descriptor) -> None:
            with self.cache.writer(d.kind, d.digest) as sink:
                self.client.download_blob(d.digest, sink, bar.advance)
            bar.blob_done(d.digest, d.size)

        try:
            with ThreadPoolExecutor(PARALLEL_DOWNLOADS) as pool:
                for future in [pool.submit(one, d) for d in sorted(needed, key=lambda d: -d.size)]:
                    future.result()
        finally:
            bar.close()


class _Resolver:
    """Point every digest reference of a locked app at its cache file."""

    def __init__(self, cache: BlobCache, where: str, archives: list[Descriptor]) -> None:
        self.cache = cache
        self.where = where
        self.archives = archives
        self.unpacked = False

    def resolve(self, app: LockedApp) -> LockedApp:
        data = app.model_dump()
        for c in data["components"]:
            what = f"component {c['id']!r}"
            c["source"] = self._ref(c["source"], f"{what} source", WASM, DATA)
            for name, dep in (c.get("dependencies") or {}).items():
                if isinstance(dep, dict) and isinstance(dep.get("source"), dict):
                    dep["source"] = self._ref(dep["source"], f"{what} dependency {name}", WASM)
            c["files"] = [self._ref(f, f"{what} file {f['path']}", DATA) for f in c["files"]]
        return LockedApp.model_validate(data)

    def _ref(self, ref: dict[str, Any], what: str, *kinds: str) -> dict[str, Any]:
        if ref.get("inline") is not None:
            return ref
        digest = ref.get("digest")
        if not digest:
            raise RegistryError(f"{self.where}: {what} has neither inline content nor a digest")
        path = self.cache.find(digest, *kinds)
        if path is None and self.archives and not self.unpacked:
            self._unpack_archives()
            path = self.cache.find(digest, *kinds)
        if path is None:
            raise RegistryError(f"{self.where}: {what}: content {digest} is not in the artifact")
        return {**ref, "source": path_to_url(path)}

    def _unpack_archives(self) -> None:
        """Store each regular file of the archive layers in `data/` under its digest."""
        self.unpacked = True
        for archive in self.archives:
            path = self.cache.find(archive.digest, DATA)
            if path is None:
                raise RegistryError(f"{self.where}: archive layer {archive.digest} is missing")
            try:
                with tarfile.open(path, mode="r:gz") as tar:
                    for member in tar:
                        if member.isfile():
                            source = tar.extractfile(member)
                            assert source is not None
                            self.cache.put_stream(DATA, source)
            except (tarfile.TarError, OSError, EOFError) as e:
                raise RegistryError(
                    f"{self.where}: archive layer {archive.digest} is not a tar+gzip: {e}"
                ) from None
