"""Precompiled Wasm in containerd's content store, so a second start skips compilation.

Each task gets its own compile-cache directory (wasmlet's engine cache layout:
`compiled/<wasm hex>-<engine fingerprint>.cwasm` plus a `.sha256`). Before the runner starts,
artifacts recorded on the image's Wasm layers are copied into it; after the runner has
compiled, new artifacts are written to the content store under a lease and recorded on the
layer with two labels:

    wasmlet.dev/precompiled/<fingerprint>             = sha256:<artifact>
    containerd.io/gc.ref.content.wasmlet.<fingerprint> = sha256:<artifact>

The second one is a GC reference: the artifact lives as long as the layer (and so the image)
does, and goes away with it. The lease only protects the artifact between its commit and the
labelling.
"""

from __future__ import annotations

import datetime
import logging
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from .containerd import Containerd

log = logging.getLogger("wasmlet.shim.precompile")

LABEL_PREFIX = "wasmlet.dev/precompiled/"
GC_REF_PREFIX = "containerd.io/gc.ref.content.wasmlet."
LEASE_SECONDS = 3600


def _artifact_path(cache_dir: Path, layer: str, fingerprint: str) -> Path:
    return cache_dir / "compiled" / f"{layer.removeprefix('sha256:')}-{fingerprint}.cwasm"


async def materialize(containerd: Containerd, layers: Iterable[str], cache_dir: Path) -> int:
    """Copy the artifacts recorded on `layers` into `cache_dir`; returns how many."""
    copied = 0
    for layer in layers:
        info = await containerd.info(layer)
        if info is None:
            continue
        for key, digest in info.labels.items():
            if not key.startswith(LABEL_PREFIX):
                continue
            target = _artifact_path(cache_dir, layer, key.removeprefix(LABEL_PREFIX))
            if target.exists():
                continue
            if await _copy_out(containerd, digest, target):
                copied += 1
    return copied


async def _copy_out(containerd: Containerd, digest: str, target: Path) -> bool:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            written = await containerd.read_into(digest, f)
        if written != digest:
            log.warning("precompiled artifact %s does not match its digest; ignoring it", digest)
            return False
        target.with_suffix(".sha256").write_text(written.removeprefix("sha256:"))
        os.replace(tmp, target)
        return True
    except Exception as e:
        log.warning("cannot read precompiled artifact %s: %s", digest, e)
        return False
    finally:
        Path(tmp).unlink(missing_ok=True)


async def harvest(containerd: Containerd, layers: Iterable[str], cache_dir: Path) -> int:
    """Store the artifacts compiled for `layers` that the content store lacks; returns how
    many were stored."""
    wanted = {layer.removeprefix("sha256:"): layer for layer in layers}
    stored = 0
    for path in sorted((cache_dir / "compiled").glob("*.cwasm")):
        hexdigest, _, fingerprint = path.stem.partition("-")
        layer = wanted.get(hexdigest)
        if layer is None or not fingerprint:
            continue
        info = await containerd.info(layer)
        if info is None or LABEL_PREFIX + fingerprint in info.labels:
            continue
        try:
            digest = "sha256:" + path.with_suffix(".sha256").read_text().strip()
        except OSError:
            continue
        expire = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=LEASE_SECONDS)
        lease = await containerd.create_lease(expire.strftime("%Y-%m-%dT%H:%M:%SZ"))
        try:
            await containerd.write(path, digest, {}, lease=lease)
            await containerd.set_labels(
                layer, {LABEL_PREFIX + fingerprint: digest, GC_REF_PREFIX + fingerprint: digest}
            )
        finally:
            await containerd.delete_lease(lease)
        log.info("stored precompiled %s for layer %s", digest, layer)
        stored += 1
    return stored
