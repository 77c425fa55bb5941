"""`wasmlet build`: run each component's `[component.<id>.build]` command in its workdir."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import TextIO

from .errors import WasmletError
from .manifest import load_manifest, manifest_file


def build_app(path: Path, only: list[str] | None = None, out: TextIO = sys.stdout) -> None:
    """Build the components of the app at `path` (spin.toml or its directory).

    Commands run through the shell, in the component's `workdir` (relative to the manifest),
    with their output shown as it comes. The first failing command stops the build.
    """
    manifest = load_manifest(path)
    app_dir = manifest_file(path).parent
    wanted = only if only else list(manifest.components)
    unknown = [c for c in wanted if c not in manifest.components]
    if unknown:
        known = ", ".join(manifest.components) or "none"
        raise WasmletError(f"no component {unknown[0]!r} in the app (components: {known})")

    todo = [(cid, manifest.components[cid]) for cid in wanted]
    buildable = [(cid, c) for cid, c in todo if c.build is not None]
    for cid, c in todo:
        if c.build is None:
            print(f"{cid}: no build command, skipping", file=out)
    started = time.monotonic()
    for i, (cid, component) in enumerate(buildable, 1):
        assert component.build is not None
        commands = component.build.command
        commands = [commands] if isinstance(commands, str) else list(commands)
        workdir = app_dir / (component.build.workdir or ".")
        if not workdir.is_dir():
            raise WasmletError(
                f"component {cid!r}: build workdir {component.build.workdir!r} does not exist"
            )
        t0 = time.monotonic()
        for command in commands:
            print(f"[{i}/{len(buildable)}] Building component {cid} with `{command}`", file=out)
            out.flush()
            result = subprocess.run(command, shell=True, cwd=workdir, check=False)
            if result.returncode != 0:
                raise WasmletError(
                    f"build command for component {cid!r} failed with exit status "
                    f"{result.returncode}: {command}"
                )
        print(f"[{i}/{len(buildable)}] Finished {cid} in {time.monotonic() - t0:.1f}s", file=out)
    if buildable:
        print(f"Finished building all components in {time.monotonic() - started:.1f}s", file=out)
    else:
        print("Nothing to build: no component has a build command", file=out)
