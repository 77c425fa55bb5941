#!/usr/bin/env python3
"""OCI benchmark: push and pull an app with a 12 MB component and 200 small files.

Starts Debian's `docker-registry` (CNCF Distribution) on loopback with a tmp storage dir,
generates the app (a valid 12 MB Wasm module: a WAT module with a 12 MB data segment,
compiled with `wasmtime.wat2wasm`, plus 200 files of 0.5-4 KB), then measures, median of
`--runs`:

  * push to an empty repository, and again when every blob is already there,
  * pull into an empty cache, again with the cache warm (same tag), and by digest,
  * the same push/pull with archive layers (`--archive-layers`).

For each it prints wall time, HTTP requests, and blobs/bytes moved, so the warm pulls show
that the cache makes them transfer no blob.

    .venv/bin/python bench/oci.py [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import wasmtime

ROOT = Path(__file__).resolve().parent.parent
# bench/http.py would shadow the standard library's `http` package: drop bench/ from the path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT / "tests"))

from fixtures.oci.registry import REGISTRY_BIN, start_registry  # noqa: E402

from wasmlet.loader import load_app  # noqa: E402
from wasmlet.locked import LockedApp  # noqa: E402
from wasmlet.oci import pull, push_app  # noqa: E402
from wasmlet.oci.client import TransferStats  # noqa: E402
from wasmlet.oci.progress import Quiet  # noqa: E402

COMPONENT_MB = 12
FILES = 200


def make_wasm(size: int) -> bytes:
    """A valid module whose data segment is `size` bytes of random letters."""
    rng = random.Random(12)
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    data = "".join(rng.choices(letters, k=size))
    pages = size // 65536 + 1
    wat = f'(module (memory {pages}) (data (i32.const 0) "{data}") (func (export "_start")))'
    wasm = wasmtime.wat2wasm(wat)
    wasmtime.Module(wasmtime.Engine(), wasm)  # it validates and compiles
    return wasm


def make_app(directory: Path) -> Path:
    rng = random.Random(200)
    directory.mkdir(parents=True)
    (directory / "big.wasm").write_bytes(make_wasm(COMPONENT_MB * 1_000_000))
    for i in range(FILES):
        path = directory / "static" / f"d{i % 10}" / f"file{i:03}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(rng.randint(512, 4096)))
    (directory / "spin.toml").write_text(
        """spin_manifest_version = 2
[application]
name = "bench-oci"
version = "1.0.0"
[[trigger.http]]
route = "/..."
component = "big"
executor = { type = "wagi" }
[component.big]
source = "big.wasm"
files = ["static/**/*"]
"""
    )
    return directory


class Scenario:
    """One app pushed to fresh repositories of one registry, in one layer mode."""

    def __init__(self, app: LockedApp, repo: str, cache: Path, archive: bool) -> None:
        self.app = app
        self.repo = repo
        self.cache = cache
        self.archive = archive
        self.ref = ""
        self.digest = ""
        self.count = 0

    def fresh_repo(self) -> None:
        self.count += 1
        self.ref = f"{self.repo}{self.count}:v1"

    def drop_cache(self) -> None:
        shutil.rmtree(self.cache, ignore_errors=True)

    def push(self) -> TransferStats:
        result = push_app(self.app, self.ref, insecure=True, archive=self.archive, progress=Quiet())
        self.digest = result.digest
        return result.stats

    def pull(self) -> TransferStats:
        return pull(self.ref, insecure=True, progress=Quiet()).stats

    def pull_digest(self) -> TransferStats:
        return pull(f"{self.ref}@{self.digest}", insecure=True, progress=Quiet()).stats


def measure(
    name: str, runs: int, setup: Callable[[], None], action: Callable[[], TransferStats]
) -> None:
    times: list[float] = []
    stats = TransferStats()
    for _ in range(runs):
        setup()
        start = time.perf_counter()
        stats = action()
        times.append(time.perf_counter() - start)
    print(
        f"{name:<44} {statistics.median(times) * 1000:7.0f} ms  {stats.requests:4} req  "
        f"{stats.blobs_uploaded + stats.blobs_downloaded:4} blobs  "
        f"{(stats.bytes_uploaded + stats.bytes_downloaded) / 1e6:6.2f} MB"
    )


def nothing() -> None:
    pass


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if not Path(REGISTRY_BIN).exists():
        print(f"{REGISTRY_BIN} not found: apt-get install docker-registry", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="wasmlet-bench-oci-"))
    registry = start_registry(work / "registry")
    cache = work / "cache"
    os.environ["WASMLET_CACHE_DIR"] = str(cache)
    try:
        app = load_app(make_app(work / "app"))
        size = (work / "app/big.wasm").stat().st_size
        print(f"app: {size / 1e6:.1f} MB component + {FILES} files; registry {registry.host}")
        print(f"median of {args.runs} runs; requests/blobs/bytes of the last run\n")
        for archive in (False, True):
            mode = " (archive layers)" if archive else ""
            name = "archive" if archive else "layers"
            s = Scenario(app, registry.ref(f"bench/{name}"), cache, archive)
            measure(f"push, empty repository{mode}", args.runs, s.fresh_repo, s.push)
            measure(f"push, blobs already there{mode}", args.runs, nothing, s.push)
            measure(f"pull, empty cache{mode}", args.runs, s.drop_cache, s.pull)
            measure(f"pull, warm cache (tag){mode}", args.runs, nothing, s.pull)
            measure(f"pull, warm cache (digest){mode}", args.runs, nothing, s.pull_digest)
            print()
    finally:
        registry.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
