"""Precompiled Wasm: compiled once per node, kept in containerd's content store, mapped by
every start.

The node's artifacts live in one directory (`<state>/compile-cache`, wasmlet's engine cache
layout: `compiled/<wasm hex>-<engine fingerprint>.cwasm` plus a `.sha256`), which every task
maps from: the code pages of a component are shared by all its tasks. Before a task builds
its app, artifacts recorded on the image's Wasm layers are copied there from containerd's
content store (`materialize`, once per node); what is still missing is compiled by a child
of the node's template (`compile_to_cache`, once per digest however many tasks ask, outside
any task's cgroup, like unpacking an image); new artifacts are then written to the content
store under a lease and recorded on the layer with two labels (`harvest`):

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

from ..engine import EngineSettings, WasmEngine
from .containerd import Containerd

log = logging.getLogger("wasmlet.shim.precompile")

LABEL_PREFIX = "wasmlet.dev/precompiled/"
GC_REF_PREFIX = "containerd.io/gc.ref.content.wasmlet."
LEASE_SECONDS = 3600


def artifact_path(cache_dir: Path, layer: str, fingerprint: str) -> Path:
    return cache_dir / "compiled" / f"{layer.removeprefix('sha256:')}-{fingerprint}.cwasm"


async def materialize(
    containerd: Containerd, layers: Iterable[str], cache_dir: Path
) -> tuple[int, list[str]]:
    """Copy the artifacts recorded on `layers` into `cache_dir`: how many were copied, and
    the layers with no artifact recorded for this node's engine (to `harvest` later)."""
    copied = 0
    unlabelled = []
    fingerprint = EngineSettings().fingerprint()
    ours = LABEL_PREFIX + fingerprint
    for layer in layers:
        if artifact_path(cache_dir, layer, fingerprint).exists():
            continue  # compiled or copied here before: mapped as it is
        info = await containerd.info(layer)
        if info is None:
            continue
        if ours not in info.labels:
            unlabelled.append(layer)
        for key, digest in info.labels.items():
            if not key.startswith(LABEL_PREFIX):
                continue
            target = artifact_path(cache_dir, layer, key.removeprefix(LABEL_PREFIX))
            if target.exists():
                continue
            if await _copy_out(containerd, digest, target):
                copied += 1
    return copied, unlabelled


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


async def harvest_layers(containerd: Containerd, layers: Iterable[str], cache_dir: Path) -> int:
    """Store the artifacts compiled for `layers` that the content store lacks; returns how
    many were stored."""
    fingerprint = EngineSettings().fingerprint()
    stored = 0
    for layer in layers:
        path = artifact_path(cache_dir, layer, fingerprint)
        if not path.is_file():
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


def compile_to_cache(
    digest: str, wasm: str, cache_dir: str, harvest: tuple[str, str, list[str]] | None = None
) -> int:
    """In a child of the template: compile `wasm` (whose sha256 is `digest`) into the node's
    `cache_dir` with this node's engine settings, then record it in containerd's content
    store when `harvest` (socket, namespace, layers) names its layer. Exit status 0 when the
    artifact is there; on any failure the task compiles it itself, and reports the error if
    it is one."""
    import asyncio
    import hashlib

    data = Path(wasm).read_bytes()
    if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
        log.warning("%s does not match its digest %s; not compiling it", wasm, digest)
        return 1
    engine = WasmEngine(EngineSettings(cache_dir=Path(cache_dir)))
    try:
        if data[4:8] == b"\x01\x00\x00\x00":  # a core module's version; components differ
            engine.load_module(data, digest, Path(wasm).name)
        else:
            engine.load_component(data, digest, Path(wasm).name)
    except Exception as e:
        log.warning("cannot compile %s: %s", wasm, e)
        return 1
    if harvest is not None and digest in harvest[2]:

        async def record() -> None:
            containerd = Containerd(harvest[0], harvest[1])
            try:
                await harvest_layers(containerd, [digest], Path(cache_dir))
            finally:
                containerd.close()

        try:
            asyncio.run(record())
        except Exception as e:
            log.warning("cannot store precompiled artifacts: %s", e)
    return 0
