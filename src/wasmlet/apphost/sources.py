"""Where a multi-app host's apps come from: one sub-directory of the apps directory per app.

`DIR/<name>/` holds one of (first found wins):
- `spin.toml` — a Spin app, locked when loaded (sources hashed, files resolved);
- a locked-app JSON file (`*.json`, e.g. `app.lock.json` from `wasmlet lock`);
- `reference` — a text file naming an OCI reference (`registry/app:tag`), pulled when loaded.
Beside it, optionally: `runtime-config.toml` (the app's stores, databases, variables
providers, memory limit) and `.env` (its variables). The host's own environment is not an
app's: `SPIN_VARIABLE_*` of the host process reach no hosted app.

`<name>` is the first label of the Host a request names (`shop` for `shop.example.com`), so it
must be a DNS label: lower-case letters, digits and `-`, not starting or ending with `-`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import WasmletError
from ..loader import load_app
from ..locked import LockedApp, url_to_path
from ..manifest import MANIFEST_FILE
from ..oci import pull_app
from ..oci.progress import Quiet

REFERENCE_FILE = "reference"
RUNTIME_CONFIG_FILE = "runtime-config.toml"
_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")

Stamp = tuple[tuple[str, int, int], ...]  # (path, mtime_ns, size) of each file it depends on


@dataclass(frozen=True)
class AppSource:
    """An app's definition in the apps directory."""

    name: str
    directory: Path
    kind: str  # "manifest" | "locked" | "reference"
    path: Path  # the file that defines it


def name_error(name: str) -> str | None:
    """Why `name` cannot be a hosted app's name (None if it can)."""
    if _LABEL.fullmatch(name) is None:
        return (
            "an app's directory name must be a DNS label (lower-case letters, digits and '-', "
            "at most 63, not starting or ending with '-'): requests pick the app by it"
        )
    return None


def scan(apps_dir: Path) -> tuple[dict[str, AppSource], dict[str, str]]:
    """Every app under `apps_dir` by name, and the sub-directories that are not apps (with
    why). Hidden entries and plain files are skipped."""
    apps: dict[str, AppSource] = {}
    problems: dict[str, str] = {}
    try:
        entries = list(os.scandir(apps_dir))
    except OSError as e:
        raise WasmletError(f"cannot read the apps directory {apps_dir}: {e.strerror}") from None
    for entry in entries:
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        found = scan_one(apps_dir, entry.name)
        if isinstance(found, AppSource):
            apps[entry.name] = found
        elif found is not None:
            problems[entry.name] = found
    return apps, problems


def scan_one(apps_dir: Path, name: str) -> AppSource | str | None:
    """The app `name` under `apps_dir`, why that directory is no app, or None if it is gone
    (or hidden: `.state` and the like are no apps)."""
    directory = apps_dir / name
    if name.startswith(".") or not directory.is_dir():
        return None
    if (why := name_error(name)) is not None:
        return why
    source = _definition(name, directory)
    if source is None:
        return f"no {MANIFEST_FILE}, locked-app JSON or {REFERENCE_FILE} file in {directory}"
    return source


def _definition(name: str, directory: Path) -> AppSource | None:
    manifest = directory / MANIFEST_FILE
    if manifest.is_file():
        return AppSource(name, directory, "manifest", manifest)
    locked = sorted(p for p in directory.glob("*.json") if p.is_file())
    if locked:
        return AppSource(name, directory, "locked", locked[0])
    reference = directory / REFERENCE_FILE
    if reference.is_file():
        return AppSource(name, directory, "reference", reference)
    return None


def load(source: AppSource, insecure: bool = False) -> LockedApp:
    """The locked app a source defines. Raises WasmletError naming what is wrong."""
    if source.kind == "manifest":
        return load_app(source.path)
    if source.kind == "locked":
        return LockedApp.read(source.path)
    reference = source.path.read_text().strip()
    if not reference:
        raise WasmletError(f"{source.path}: empty: it should name an OCI reference")
    app, _home = pull_app(reference, insecure, Quiet())  # (a server: no progress bars)
    return app


def watched_files(source: AppSource, app: LockedApp | None) -> list[Path]:
    """The files whose change changes the app: its definition, runtime config and `.env`,
    and the local files the locked app is made of (component sources, mounted files)."""
    paths = [source.path, source.directory / RUNTIME_CONFIG_FILE, source.directory / ".env"]
    if app is not None and source.kind != "reference":  # pulled content is immutable
        for component in app.components:
            for ref in [component.source, *component.files]:
                if ref.source is not None and ref.source.startswith("file://"):
                    paths.append(url_to_path(ref.source))
    return paths


def stamp(paths: list[Path]) -> Stamp:
    """What changes when any of `paths` changes (a missing file counts as one state)."""
    out = []
    for path in paths:
        try:
            st = path.stat()
        except OSError:
            out.append((str(path), -1, -1))
            continue
        out.append((str(path), st.st_mtime_ns, st.st_size))
    return tuple(out)
