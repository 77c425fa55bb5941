"""`wasmlet registry push`: assemble an app's artifact and upload it."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ..locked import LockedApp
from .assemble import Artifact, assemble
from .blobs import Blob
from .client import RegistryClient, TransferStats
from .errors import InvalidReferenceError
from .mediatypes import OCI_MANIFEST
from .progress import Progress
from .reference import Reference, parse_reference

PARALLEL_UPLOADS = 8


@dataclass(frozen=True)
class PushResult:
    reference: Reference
    digest: str
    stats: TransferStats
    artifact: Artifact


def push_app(
    app: LockedApp,
    ref: str,
    *,
    insecure: bool = False,
    archive: bool | None = None,
    annotations: Mapping[str, str] | None = None,
    progress: Progress | None = None,
) -> PushResult:
    """Push `app` (sources as `file://` URLs or inline) to `ref`; returns the digest."""
    reference = parse_reference(ref)
    if reference.digest is not None:
        raise InvalidReferenceError(f"{ref!r}: push to a tag, not a digest")
    assert reference.tag is not None
    stats = TransferStats()
    with tempfile.TemporaryDirectory(prefix="wasmlet-push-") as tmp:
        artifact = assemble(app, Path(tmp), archive=archive, annotations=annotations)
        with RegistryClient(reference, insecure=insecure, push=True, stats=stats) as client:
            client.login()
            blobs = artifact.blobs()
            missing = _missing(client, blobs)
            bar = progress or Progress(
                "Pushing", sum(b.size for b in missing), len(missing), done="Pushed"
            )
            try:
                _upload(client, missing, bar)
            finally:
                bar.close()
            digest = client.put_manifest(reference.tag, artifact.manifest, OCI_MANIFEST)
    return PushResult(reference.with_digest(digest), digest, stats, artifact)


def _missing(client: RegistryClient, blobs: list[Blob]) -> list[Blob]:
    with ThreadPoolExecutor(PARALLEL_UPLOADS) as pool:
        exists = list(pool.map(lambda b: client.blob_exists(b.digest), blobs))
    return [b for b, present in zip(blobs, exists, strict=True) if not present]


def _upload(client: RegistryClient, blobs: list[Blob], bar: Progress) -> None:
    def one(blob: Blob) -> None:
        client.upload_blob(blob.digest, blob.size, blob.open, bar.advance)
        bar.blob_done(blob.digest, blob.size)

    # Big blobs first, so one large layer does not finish last on its own.
    ordered = sorted(blobs, key=lambda b: -b.size)
    with ThreadPoolExecutor(PARALLEL_UPLOADS) as pool:
        for future in [pool.submit(one, b) for b in ordered]:
            future.result()
