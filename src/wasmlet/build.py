"""`wasmlet build`: run each component's `[component.<id>.build]` command in its workdir.

Before a component's commands run, `toolchains.prepare` checks for (or installs) what they
need: the Python component tools, npm dependencies, Node.js, clang, … A component is skipped
when nothing it is built from changed since its last successful build: its build table, the
files its `watch` globs match (relative to its workdir; `node_modules` and `.spin` excluded),
its `requirements.txt`, `package.json` and `package-lock.json`, and its output (`source`) as
that build left it. The record is `.spin/build/<component>.json` next to spin.toml. A component
without `watch` globs is always built: nothing says what it is built from.

A whole-app build that ends with every component current also writes `.spin/build/app.json`:
the sha256 of spin.toml and, per component, its build table and output path. The next build
of the whole app checks that summary first; if spin.toml is byte for byte the same and every
record is still current, it is done without parsing the manifest (pydantic takes a third of
a second to import, most of a no-change build).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from .dirs import default_cache_dir
from .errors import WasmletError
from .toolchains import debian_hint, prepare, program_of, run_step

if TYPE_CHECKING:  # imported when a build needs the manifest: see `_nothing_to_do`
    from .manifest import Component

# Files that decide what a build installs: part of every fingerprint when present.
DEPENDENCY_FILES = ("requirements.txt", "package.json", "package-lock.json")
_SKIPPED_DIRS = {"node_modules", ".spin", "__pycache__", ".git"}


class BuildError(WasmletError):
    """A build command failed."""


@dataclass(frozen=True)
class BuildResult:
    built: list[str]
    """The components whose commands ran."""
    skipped: list[str]
    """The components that were up to date."""


def build_app(
    path: Path,
    only: list[str] | None = None,
    out: TextIO = sys.stdout,
    *,
    force: bool = False,
    cache_dir: Path | None = None,
) -> BuildResult:
    """Build the components of the app at `path` (spin.toml or its directory).

    Commands run through the shell, in the component's `workdir` (relative to the manifest),
    with their output passed to `out` as it comes. The first failing command stops the build.
    `force` builds components that are up to date too.
    """
    if not force and not only and (done := _nothing_to_do(path, out)) is not None:
        return done
    from .manifest import load_manifest, manifest_file

    file = manifest_file(path)
    manifest_digest = _digest(file)
    manifest = load_manifest(path)
    app_dir = file.parent
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
    built: list[str] = []
    skipped: list[str] = []
    for i, (cid, component) in enumerate(buildable, 1):
        step = f"[{i}/{len(buildable)}]"
        record = BuildRecord(app_dir, cid, component)
        if not force and record.is_current():
            print(f"{step} {cid} is up to date (its sources did not change)", file=out)
            skipped.append(cid)
            continue
        t0 = time.monotonic()
        _build_component(cid, component, app_dir, step, out, cache_dir or default_cache_dir())
        record.save()
        built.append(cid)
        print(f"{step} Finished {cid} in {time.monotonic() - t0:.1f}s", file=out)
    if not only and manifest_digest is not None:
        _save_summary(app_dir, manifest_digest, todo)
    _finish(out, built, len(buildable), time.monotonic() - started)
    return BuildResult(built, skipped)


def _finish(out: TextIO, built: list[str], buildable: int, seconds: float) -> None:
    if built:
        print(f"Finished building all components in {seconds:.1f}s", file=out)
    elif buildable:
        print("Nothing to build: every component is up to date (--force builds anyway)", file=out)
    else:
        print("Nothing to build: no component has a build command", file=out)
    out.flush()


def _digest(file: Path) -> str | None:
    try:
        return hashlib.sha256(file.read_bytes()).hexdigest()
    except OSError:
        return None


def _summary_path(app_dir: Path) -> Path:
    return app_dir / ".spin" / "build" / "app.json"


def _save_summary(app_dir: Path, manifest_digest: str, todo: list[tuple[str, Component]]) -> None:
    """What `_nothing_to_do` checks: written after a whole-app build left all current."""
    components = []
    for cid, component in todo:
        build = component.build.model_dump(mode="json") if component.build else None
        components.append({"id": cid, "build": build, "source": component.local_source()})
    path = _summary_path(app_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"manifest": manifest_digest, "components": components}))
    tmp.replace(path)


def _nothing_to_do(path: Path, out: TextIO) -> BuildResult | None:
    """The result of a whole-app build with nothing to do, found without loading the
    manifest; None when that cannot be told this way (then the manifest is loaded)."""
    file = path / "spin.toml" if path.is_dir() else path
    app_dir = file.parent
    try:
        summary = json.loads(_summary_path(app_dir).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(summary, dict) or summary.get("manifest") != _digest(file):
        return None
    lines: list[str] = []
    skipped: list[str] = []
    try:
        buildable = [c for c in summary["components"] if c["build"] is not None]
        for c in summary["components"]:
            if c["build"] is None:
                lines.append(f"{c['id']}: no build command, skipping")
        for i, c in enumerate(buildable, 1):
            build, cid = c["build"], c["id"]
            if not build.get("watch"):
                return None
            inputs = {
                "build": build,
                "files": source_digests(app_dir / (build.get("workdir") or "."), build["watch"]),
            }
            output = _output_state(app_dir / c["source"] if c["source"] is not None else None)
            saved = json.loads((app_dir / ".spin" / "build" / f"{cid}.json").read_text())
            if output is None or saved != {"inputs": inputs, "output": output}:
                return None
            lines.append(f"[{i}/{len(buildable)}] {cid} is up to date (its sources did not change)")
            skipped.append(cid)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    for line in lines:
        print(line, file=out)
    _finish(out, [], len(buildable), 0.0)
    return BuildResult([], skipped)


def _output_state(output: Path | None) -> list[int] | None:
    """(size, mtime) of a component's output; [] when it is not a local file; None if
    it does not exist."""
    if output is None:
        return []  # not a local file: nothing to compare
    try:
        stat = output.stat()
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns]


def _build_component(
    cid: str, component: Component, app_dir: Path, step: str, out: TextIO, cache_dir: Path
) -> None:
    assert component.build is not None
    commands = component.build.commands()
    workdir = app_dir / (component.build.workdir or ".")
    if not workdir.is_dir():
        raise WasmletError(
            f"component {cid!r}: build workdir {component.build.workdir!r} does not exist"
        )
    BuildRecord(app_dir, cid, component).forget()  # a failed build must not look current
    build_env = prepare(cid, commands, workdir, cache_dir, out)
    for note in build_env.notes:
        print(f"{step} {cid}: using {note}", file=out)
    for command in commands:
        print(f"{step} Building component {cid} with `{command}`", file=out)
        out.flush()
        status = run_step(command, cwd=workdir, env=build_env.env, out=out, label=cid)
        if status != 0:
            raise BuildError(
                f"build command for component {cid!r} failed with exit status {status}: "
                f"{command}{_failure_hint(command, status)}"
            )


def _failure_hint(command: str, status: int) -> str:
    """What a failure usually means, for the toolchains wasmlet's templates use."""
    program = program_of(command) or ""
    if status == 127:
        hint = debian_hint(program)
        return f" (a program was not found{'; ' + hint if hint else ''})"
    wasm_c = "clang" in Path(program).name and "wasm32-wasi" in command
    if wasm_c and not Path("/usr/include/wasm32-wasi").is_dir():
        return (
            " (the WASI C library is not installed; on Debian: "
            "sudo apt-get install wasi-libc libclang-rt-19-dev-wasm32)"
        )
    return ""


# --- is a component up to date? ------------------------------------------------------------


class BuildRecord:
    """What a component's last successful build was made from, and what it left."""

    def __init__(self, app_dir: Path, cid: str, component: Component) -> None:
        self.app_dir = app_dir
        self.cid = cid
        self.component = component
        self.path = app_dir / ".spin" / "build" / f"{cid}.json"

    def _output(self) -> Path | None:
        source = self.component.local_source()
        return self.app_dir / source if source is not None else None

    def inputs(self) -> dict[str, Any] | None:
        """The fingerprint of what the component is built from; None if unknown (no globs)."""
        build = self.component.build
        if build is None or not build.watch:
            return None
        workdir = self.app_dir / (build.workdir or ".")
        return {
            "build": build.model_dump(mode="json"),
            "files": source_digests(workdir, build.watch),
        }

    def _output_state(self) -> list[int] | None:
        return _output_state(self._output())

    def is_current(self) -> bool:
        inputs = self.inputs()
        if inputs is None:
            return False
        try:
            saved = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return False
        output = self._output_state()
        return output is not None and saved == {"inputs": inputs, "output": output}

    def save(self) -> None:
        inputs = self.inputs()
        output = self._output_state()
        if inputs is None or output is None:
            self.forget()
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"inputs": inputs, "output": output}, sort_keys=True))
        tmp.replace(self.path)

    def forget(self) -> None:
        self.path.unlink(missing_ok=True)


def watched_files(workdir: Path, patterns: list[str]) -> list[Path]:
    """The files `patterns` (globs relative to `workdir`, `**` for any depth) match, plus the
    dependency files present in `workdir`; sorted, without node_modules, .spin, .git."""
    found: set[Path] = set()
    for pattern in [*patterns, *DEPENDENCY_FILES]:
        for name in glob.glob(pattern, root_dir=workdir, recursive=True):
            if _SKIPPED_DIRS.intersection(Path(name).parts):
                continue
            # normalised: `../src/*.py` globs must name files as the watcher sees them
            path = Path(os.path.normpath(workdir / name))
            if path.is_file():
                found.add(path)
    return sorted(found)


def source_digests(workdir: Path, patterns: list[str]) -> dict[str, str]:
    """sha256 of each watched file, by its path relative to `workdir`."""
    return {
        os.path.relpath(path, workdir): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in watched_files(workdir, patterns)
    }
