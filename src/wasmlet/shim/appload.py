"""In the runner: the locked app a task runs, from what the shim found (`appsource`)."""

from __future__ import annotations

from pathlib import Path

from ..errors import WasmletError
from ..loader import load_app
from ..locked import (
    LockedApp,
    LockedComponent,
    LockedComponentSource,
    LockedTrigger,
    file_digest,
    path_to_url,
)
from ..oci import mediatypes as mt
from ..oci.cache import BlobCache
from ..oci.lockjson import from_spin_json
from ..oci.pull import Descriptor
from ..oci.pull import _Resolver as ContentResolver
from .image import Blob
from .runnerconfig import RunnerConfig


def load(config: RunnerConfig) -> LockedApp:
    if config.image is not None:
        return from_image(config.image, Blob.from_json(config.image_config or []),
                          [Blob.from_json(b) for b in config.image_layers],
                          Path(config.blobs))  # fmt: skip
    if config.manifest is not None:
        return load_app(Path(config.manifest), cache_dir=Path(config.cache_dir))
    if config.wasm is not None:
        path = Path(config.wasm)
        return wagi_app(path, file_digest(path), path.stem)
    raise WasmletError("the runner was given no app")


def from_image(name: str, config: Blob, layers: list[Blob], blobs: Path) -> LockedApp:
    cache = BlobCache(blobs)
    where = f"image {name}"
    locked = [b for b in layers if b.media_type == mt.SPIN_APP_LAYER]
    wasm = [b for b in layers if b.media_type in mt.WASM_LAYERS]
    if config.media_type == mt.SPIN_APP_LAYER or locked:
        source = config if config.media_type == mt.SPIN_APP_LAYER else locked[-1]
        data = cache.read(source.digest, source.kind)
        if data is None:
            raise WasmletError(f"{where}: the locked app {source.digest} is missing")
        app = from_spin_json(data, origin=f"{where} locked app")
        archives = [
            Descriptor(b.media_type, b.digest, b.size)
            for b in layers
            if b.media_type == mt.ARCHIVE_LAYER
        ]
        app = ContentResolver(cache, where, archives).resolve(app)
    elif len(wasm) == 1:
        path = cache.find(wasm[0].digest, wasm[0].kind)
        if path is None:
            raise WasmletError(f"{where}: Wasm layer {wasm[0].digest} is missing")
        app = wagi_app(path, wasm[0].digest, name)
    else:
        raise WasmletError(
            f"{where}: {len(wasm)} Wasm layers and no Spin application layer "
            f"({mt.SPIN_APP_LAYER}): cannot tell which component serves HTTP"
        )
    app.metadata["origin"] = f"{mt.ORIGIN_SCHEME}:{name}"
    return app


def wagi_app(wasm: Path, digest: str, name: str) -> LockedApp:
    """A single Wasm module served Wagi-style (CGI) on every route."""
    return LockedApp(
        metadata={"name": name},
        triggers=[
            LockedTrigger(
                id="trigger-main",
                trigger_type="http",
                trigger_config={"component": "main", "route": "/...", "executor": {"type": "wagi"}},
            )
        ],
        components=[
            LockedComponent(
                id="main", source=LockedComponentSource(source=path_to_url(wasm), digest=digest)
            )
        ],
    )
