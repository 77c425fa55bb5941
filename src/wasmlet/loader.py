"""Locking: turn a manifest into a `LockedApp` (Spin's `crates/loader/src/local.rs`).

Every Wasm source and static file becomes a content reference: a `file://` URL plus its
`sha256:` digest. `files` entries are expanded here into one `ContentPath` per file, with the
absolute path the guest sees (files form one tree per component, mounted at `/`).
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .dirs import default_cache_dir
from .errors import ManifestError, NotSupportedError
from .locked import (
    ContentPath,
    LockedApp,
    LockedComponent,
    LockedComponentSource,
    LockedTrigger,
    LockedVariable,
    file_digest,
    path_to_url,
    sha256_digest,
)
from .manifest import (
    AppComponentDependency,
    AppManifest,
    Component,
    FilePlacement,
    HttpDependency,
    LocalDependency,
    RegistrySource,
    RemoteSource,
    join_key,
    load_manifest,
    manifest_file,
    parse_allowed_host,
    parse_template,
    quote,
)

SERVICE_CHAINING_KEY = "local_service_chaining"
SERVICE_CHAINING_SUFFIX = ".spin.internal"


def load_app(path: Path, *, cache_dir: Path | None = None) -> LockedApp:
    """Load the manifest at `path` (a file or its directory) and lock it."""
    file = manifest_file(path)
    return lock_app(load_manifest(file), file, cache_dir=cache_dir)


def lock_app(
    manifest: AppManifest, manifest_path: Path, *, cache_dir: Path | None = None
) -> LockedApp:
    """Resolve every source and file of `manifest` (read from `manifest_path`).

    Remote (`{url, digest}`) sources are downloaded into `cache_dir` (default: the user cache
    directory) and verified. Raises `ManifestError` for missing sources and files.
    """
    file = manifest_file(manifest_path)
    locker = _Locker(manifest, str(file), Path(os.path.abspath(file.parent)), cache_dir)
    return locker.lock(path_to_url(file))


@dataclass
class _Locker:
    manifest: AppManifest
    file: str  # as error messages name it
    app_root: Path
    cache_dir: Path | None

    def lock(self, origin: str) -> LockedApp:
        components = [self._component(cid, c) for cid, c in self.manifest.components.items()]
        needs_host_reqs = any(c.host_requirements for c in components)
        return LockedApp(
            must_understand=["component_host_requirements"] if needs_host_reqs else [],
            metadata=self._metadata(origin),
            variables={
                name: LockedVariable(description=v.description, default=v.default, secret=v.secret)
                for name, v in self.manifest.variables.items()
            },
            triggers=[
                LockedTrigger(id=t.id, trigger_type=trigger_type, trigger_config=t.config())
                for trigger_type, t in self.manifest.all_triggers()
            ],
            components=components,
        )

    def _metadata(self, origin: str) -> dict[str, Any]:
        app = self.manifest.application
        metadata: dict[str, Any] = {"name": app.name}
        if app.version:
            metadata["version"] = app.version
        if app.description:
            metadata["description"] = app.description
        metadata["authors"] = list(app.authors)
        types = self.manifest.trigger_types()
        if len(types) == 1:
            metadata["trigger"] = {**app.trigger.get(types[0], {}), "type": types[0]}
        metadata["triggers"] = {t: dict(app.trigger.get(t, {})) for t in types} | {
            t: dict(config) for t, config in app.trigger.items()
        }
        metadata["origin"] = origin
        return metadata

    # -- components ---------------------------------------------------------------------------

    def _component(self, component_id: str, component: Component) -> LockedComponent:
        source_path = self.manifest.component_path(component_id, "source")
        hosts = component.normalized_allowed_outbound_hosts()
        return LockedComponent(
            id=component_id,
            metadata=_component_metadata(component, hosts),
            source=self._source(component.source, source_path),
            env=dict(component.environment),
            files=self._files(component_id, component),
            config=dict(component.variables),
            dependencies=self._dependencies(component_id, component),
            host_requirements=(
                {SERVICE_CHAINING_KEY: "required"} if _uses_service_chaining(hosts) else {}
            ),
        )

    def _source(
        self, source: str | RemoteSource | RegistrySource, path: str
    ) -> LockedComponentSource:
        if isinstance(source, str):
            return self._local_wasm(source, path)
        if isinstance(source, RemoteSource):
            return self._remote_wasm(source.url, source.digest, path)
        registry = f" from {quote(source.registry)}" if source.registry else ""
        raise NotSupportedError(
            f"{self.file}: {path}: component sources from a registry are not supported "
            f"({source.package}@{source.version}{registry})"
        )

    def _local_wasm(self, relative: str, path: str) -> LockedComponentSource:
        wasm = self.app_root / relative
        try:
            if "\0" in relative:
                raise ManifestError(self.file, path, f"{quote(relative)} contains a NUL character")
            if not wasm.exists():
                raise ManifestError(self.file, path, f"file {quote(relative)} not found")
            if not wasm.is_file():
                raise ManifestError(self.file, path, f"{quote(relative)} is not a file")
            return LockedComponentSource(source=path_to_url(wasm), digest=file_digest(wasm))
        except OSError as e:  # a name too long, unreadable...
            raise ManifestError(
                self.file, path, f"cannot read {quote(relative)}: {e.strerror}"
            ) from None

    def _remote_wasm(self, url: str, digest: str, path: str) -> LockedComponentSource:
        cache_dir = self.cache_dir or default_cache_dir() / "wasm"
        try:
            local = fetch_verified(url, digest, cache_dir)
        except urllib.error.URLError as e:
            raise ManifestError(
                self.file, path, f"cannot download {quote(url)}: {e.reason}"
            ) from None
        except (OSError, ValueError) as e:
            raise ManifestError(self.file, path, f"cannot download {quote(url)}: {e}") from None
        return LockedComponentSource(source=path_to_url(local), digest=digest)

    # -- files --------------------------------------------------------------------------------

    def _files(self, component_id: str, component: Component) -> list[ContentPath]:
        files_path = self.manifest.component_path(component_id, "files")
        mounted: dict[str, tuple[Path, str]] = {}
        for index, mount in enumerate(component.files):
            key = f"{files_path}[{index}]"
            try:
                found = expand_mount(self.app_root, mount, component.exclude_files)
                for guest, host in found.items():
                    mounted[guest] = (host, file_digest(host))
            except ValueError as e:
                raise ManifestError(self.file, key, str(e)) from None
            except OSError as e:  # unreadable, a name too long, a loop of links...
                where = f" {quote(e.filename)}" if isinstance(e.filename, str) else ""
                raise ManifestError(self.file, key, f"cannot read{where}: {e.strerror}") from None
        return [
            ContentPath(source=path_to_url(host), digest=digest, path=guest)
            for guest, (host, digest) in sorted(mounted.items())
        ]

    # -- dependencies -------------------------------------------------------------------------

    def _dependencies(self, component_id: str, component: Component) -> dict[str, Any]:
        deps_path = self.manifest.component_path(component_id, "dependencies")
        locked: dict[str, Any] = {}
        for name, dependency in component.dependencies.items():
            path = join_key(deps_path, name)
            locked[name] = {
                "source": self._dependency_source(dependency, path).model_dump(exclude_none=True),
                "export": getattr(dependency, "export", None),
            }
            inherit = _inherit(component, dependency)
            if inherit is not None:
                locked[name]["inherit"] = inherit
        return locked

    def _dependency_source(self, dependency: object, path: str) -> LockedComponentSource:
        if isinstance(dependency, AppComponentDependency):
            target = self.manifest.components[dependency.component]
            return self._source(target.source, self.manifest.component_path(dependency.component))
        if isinstance(dependency, LocalDependency):
            return self._local_wasm(dependency.path, f"{path}.path")
        if isinstance(dependency, HttpDependency):
            return self._remote_wasm(dependency.url, dependency.digest, path)
        raise NotSupportedError(
            f"{self.file}: {path}: dependencies from a registry are not supported; "
            'use { path = "..." }, { url = "...", digest = "..." } or { component = "..." }'
        )


def _component_metadata(component: Component, hosts: list[str]) -> dict[str, Any]:
    metadata: dict[str, Any] = {}
    if component.description:
        metadata["description"] = component.description
    metadata["allowed_outbound_hosts"] = hosts
    metadata["key_value_stores"] = list(component.key_value_stores)
    metadata["databases"] = list(component.sqlite_databases)
    metadata["ai_models"] = list(component.ai_models)
    if component.build is not None:
        metadata["build"] = component.build.model_dump(exclude_unset=True)
    return metadata


def _uses_service_chaining(hosts: list[str]) -> bool:
    for host in hosts:
        if not parse_template(host).is_literal:
            continue
        name = parse_allowed_host(host).host
        if name.endswith(SERVICE_CHAINING_SUFFIX):
            return True
    return False


def _inherit(component: Component, dependency: object) -> Any:
    """Spin's locked `inherit`: "All", {"Some": [...]}, or None for nothing."""
    if component.dependencies_inherit_configuration:
        return "All"
    setting = getattr(dependency, "inherit_configuration", None)
    if setting is True:
        return "All"
    if isinstance(setting, list) and setting:
        return {"Some": list(setting)}
    return None


# -- remote content ----------------------------------------------------------------------------


def fetch_verified(url: str, digest: str, cache_dir: Path) -> Path:
    """The local copy of the content at `url`, which must have `digest` (cached by digest)."""
    target = cache_dir / digest.replace(":", "_")
    if target.is_file() and file_digest(target) == digest:
        return target
    with urllib.request.urlopen(url, timeout=60) as response:
        data = response.read()
    actual = sha256_digest(data)
    if actual != digest:
        raise ValueError(f"content digest {actual} does not match {digest}")
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    partial.write_bytes(data)
    partial.replace(target)
    return target


# -- files mounts ------------------------------------------------------------------------------

NAME_MAX = 255  # bytes in one file name (Linux): a longer destination cannot be laid out


def expand_mount(app_root: Path, mount: str | FilePlacement, exclude: list[str]) -> dict[str, Path]:
    """The files one `files` entry mounts: guest path → host file. Raises `ValueError`
    (`OSError` where the file system refuses)."""
    if isinstance(mount, FilePlacement):
        return _expand_placement(app_root, mount, exclude)
    return _expand_pattern(app_root, mount, exclude)


def _expand_pattern(app_root: Path, pattern: str, exclude: list[str]) -> dict[str, Path]:
    _check_text(pattern)
    relative = _inside_app(
        pattern, f"{quote(pattern)} matches files outside the application directory"
    )
    tree = _Tree(app_root)
    path = app_root / relative
    if path.is_file() or path.is_dir():
        tree.check(path)  # before reading or walking it: a link may lead anywhere
    if path.is_file():
        return {_guest_path(app_root, path, pattern): path}
    if path.is_dir():
        found = tree.files_under(path)
    elif any(ch in pattern for ch in "*?["):
        found = tree.glob(relative)
    elif os.path.lexists(path):
        raise ValueError(f"{quote(pattern)} is not a regular file or directory")
    else:
        raise ValueError(f"{quote(pattern)} does not exist and is not a glob pattern")
    return {
        _guest_path(app_root, f, pattern): f for f in found if not _excluded(app_root, f, exclude)
    }


def _expand_placement(app_root: Path, mount: FilePlacement, exclude: list[str]) -> dict[str, Path]:
    _check_text(mount.source)
    _check_text(mount.destination)
    relative = _inside_app(
        mount.source, f"source {quote(mount.source)} is outside the application directory"
    )
    source = app_root / relative
    destination = posixpath.normpath("/" + mount.destination.lstrip("/"))
    too_long = [n for n in destination.split("/") if len(n.encode()) > NAME_MAX]
    if too_long:
        raise ValueError(
            f"destination {quote(mount.destination)}: a file name longer than {NAME_MAX} bytes"
        )
    tree = _Tree(app_root)
    if source.is_dir():
        tree.check(source)
        return {
            posixpath.join(destination, f.relative_to(source).as_posix()): f
            for f in tree.files_under(source)
            if not _excluded(app_root, f, exclude)
        }
    if source.is_file():
        tree.check(source)
        if mount.destination.endswith(("/", ".")):
            raise ValueError(f"{quote(mount.destination)} is not a valid destination file name")
        return {destination: source}
    if os.path.lexists(source):
        raise ValueError(f"source {quote(mount.source)} is not a regular file or directory")
    raise ValueError(f"file or directory {quote(mount.source)} does not exist")


def _check_text(text: str) -> None:
    if "\0" in text:
        raise ValueError(f"{quote(text)} contains a NUL character")


def _inside_app(path: str, problem: str) -> str:
    """`path` (relative to the app directory, as written) normalised; `problem` if it leaves
    the directory (Spin refuses such files too, once it has looked for them)."""
    relative = posixpath.normpath(path) if path else "."
    if relative.startswith("/") or relative == ".." or relative.startswith("../"):
        raise ValueError(problem)
    return relative


class _Tree:
    """The app directory as `files` sees it. Symbolic links are followed where they stay in
    the directory (a directory once, so a loop ends) and refused where they leave it: Spin
    checks only the path as written and copies whatever a link points to, so a link could
    serve `/etc/passwd`."""

    def __init__(self, app_root: Path) -> None:
        self.root = app_root
        self.real_root = os.path.realpath(app_root)

    def check(self, path: Path) -> None:
        """Refuse `path` if it, or a link on the way to it, leads out of the app directory."""
        real = os.path.realpath(path)
        if real != self.real_root and not real.startswith(self.real_root.rstrip("/") + "/"):
            shown = _relative(self.root, path) or str(path)
            raise ValueError(
                f"{quote(shown)} is a symbolic link to {quote(real)}, outside the application "
                "directory (links must stay inside it)"
            )

    def _entries(self, directory: Path) -> list[Path]:
        """The entries of `directory` worth following: links checked, dangling ones and
        loops dropped."""
        entries = []
        for entry in sorted(os.scandir(directory), key=lambda e: e.name):
            path = directory / entry.name
            if entry.is_symlink():
                if not os.path.exists(path):  # dangling, or a loop: nothing to serve
                    continue
                self.check(path)
            entries.append(path)
        return entries

    def files_under(self, directory: Path) -> list[Path]:
        """Every regular file under `directory`."""
        found: list[Path] = []
        seen: set[str] = set()

        def walk(d: Path) -> None:
            real = os.path.realpath(d)
            if real in seen:
                return
            seen.add(real)
            for path in self._entries(d):
                if path.is_dir():
                    walk(path)
                elif path.is_file():
                    found.append(path)

        walk(directory)
        return found

    def glob(self, pattern: str) -> list[Path]:
        """Regular files matching `pattern` (relative, normalised), as Spin's glob matches:
        `*`, `?` and `[...]` within a name (dot files too), `**` any number of directories."""
        parts = [p for p in pattern.split("/") if p not in ("", ".")]
        found: dict[Path, None] = {}
        seen: set[tuple[str, int]] = set()

        def walk(d: Path, index: int) -> None:
            if index == len(parts):
                if d.is_file():
                    found[d] = None
                return
            key = (os.path.realpath(d), index)
            if key in seen or not d.is_dir():
                return
            seen.add(key)
            part = parts[index]
            if part == "**":
                walk(d, index + 1)
                for sub in self._entries(d):
                    if sub.is_dir():
                        walk(sub, index)
                return
            if not any(ch in part for ch in "*?["):
                path = d / part
                if os.path.islink(path) and os.path.exists(path):
                    self.check(path)
                walk(path, index + 1)
                return
            match = re.compile(fnmatch.translate(part)).match
            for path in self._entries(d):
                if match(path.name):
                    walk(path, index + 1)

        walk(self.root, 0)
        return sorted(found)


def _relative(app_root: Path, file: Path) -> str | None:
    """`file` relative to the app root (posix), or None if it is outside."""
    relative = os.path.relpath(os.path.normpath(file), app_root)
    if relative == ".." or relative.startswith("../"):
        return None
    return Path(relative).as_posix()


def _guest_path(app_root: Path, file: Path, pattern: str) -> str:
    relative = _relative(app_root, file)
    if relative is None:
        raise ValueError(f"{quote(pattern)} matches files outside the application directory")
    return "/" + relative


def _excluded(app_root: Path, file: Path, exclude: list[str]) -> bool:
    """Whether an `exclude_files` glob matches `file` (relative to the app root).

    As in Spin (Rust `glob::Pattern`), `*` also matches `/`.
    """
    relative = _relative(app_root, file)
    return relative is not None and any(fnmatch.fnmatchcase(relative, p) for p in exclude)
