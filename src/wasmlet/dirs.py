"""Where wasmlet keeps what it can rebuild: one cache directory for everything.

`WASMLET_CACHE_DIR`, else `$XDG_CACHE_HOME/wasmlet`, else `~/.cache/wasmlet`. Inside it:
`compiled/` (the compile cache), `registry/` (pulled OCI content), `wasm/` (downloaded
component sources).
"""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    env = os.environ.get("WASMLET_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "wasmlet"
