"""`wasmlet registry build-image`: the app's artifact as an OCI image layout, no registry.

Writes `oci-layout`, `index.json` and `blobs/sha256/<hex>` (the same manifest, config and
layers a push uploads) to a directory, or the same tree as a tar archive — the form
`ctr images import` (containerd) and `skopeo copy oci-archive:…` read. The index entry is
annotated with the image name (`io.containerd.image.name`) and tag
(`org.opencontainers.image.ref.name`).
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Literal

from ..errors import WasmletError
from ..locked import LockedApp
from . import mediatypes as mt
from .assemble import Artifact, assemble
from .blobs import Blob, compact_json
from .reference import parse_reference

Format = Literal["oci-dir", "oci-archive"]
LAYOUT_VERSION = {"imageLayoutVersion": "1.0.0"}


def default_format(output: Path) -> Format:
    return "oci-archive" if output.suffix == ".tar" else "oci-dir"


def build_image(
    app: LockedApp,
    output: Path,
    *,
    name: str | None = None,
    fmt: Format | None = None,
    archive: bool | None = None,
) -> Artifact:
    """Write `app` as an OCI image layout at `output`; returns the artifact."""
    fmt = fmt or default_format(output)
    image = name or f"{app.name or 'app'}:{app.version or 'latest'}"
    ref = parse_reference(image if "/" in image else f"localhost/{image}")
    with tempfile.TemporaryDirectory(prefix="wasmlet-image-") as tmp:
        artifact = assemble(app, Path(tmp), archive=archive)
        index = {
            "schemaVersion": 2,
            "mediaType": mt.OCI_INDEX,
            "manifests": [
                {
                    "mediaType": mt.OCI_MANIFEST,
                    "digest": artifact.digest,
                    "size": len(artifact.manifest),
                    "annotations": {
                        mt.CONTAINERD_IMAGE_NAME: str(ref),
                        mt.ANNOTATION_REF_NAME: ref.tag or "latest",
                    },
                }
            ],
        }
        files: list[tuple[str, Blob]] = [
            ("oci-layout", Blob.of_bytes("", compact_json(LAYOUT_VERSION))),
            ("index.json", Blob.of_bytes("", compact_json(index))),
            (_blob_path(artifact.digest), Blob.of_bytes(mt.OCI_MANIFEST, artifact.manifest)),
            *((_blob_path(b.digest), b) for b in artifact.blobs()),
        ]
        if fmt == "oci-dir":
            _write_dir(output, files)
        elif fmt == "oci-archive":
            _write_tar(output, files)
        else:
            raise WasmletError(f"unknown image format {fmt!r} (oci-dir or oci-archive)")
    return artifact


def _blob_path(digest: str) -> str:
    algorithm, _, hexdigest = digest.partition(":")
    return f"blobs/{algorithm}/{hexdigest}"


def _write_dir(output: Path, files: list[tuple[str, Blob]]) -> None:
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise WasmletError(f"{output}: exists and is not an empty directory")
    for rel, blob in files:
        dest = output / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if blob.path is not None:
            shutil.copyfile(blob.path, dest)
        else:
            dest.write_bytes(blob.read())


def _write_tar(output: Path, files: list[tuple[str, Blob]]) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=output.parent, prefix=".image-")
    try:
        with os.fdopen(fd, "wb") as f, tarfile.open(fileobj=f, mode="w") as tar:
            for directory in ("blobs", "blobs/sha256"):
                info = tarfile.TarInfo(directory)
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            for rel, blob in files:
                info = tarfile.TarInfo(rel)
                info.size = blob.size
                info.mode = 0o644
                with blob.open() as src:
                    tar.addfile(info, src)
        os.replace(tmp, output)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
