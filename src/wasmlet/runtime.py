"""An app made ready to run: its components compiled, their files laid out, their factors
prepared.

`AppRuntime` turns a `LockedApp` into what executors need, once per process: a compiled
module per component (through the engine's compile cache), a read-only directory per
component holding its `files`, materialised under the state directory by content hash so
that restarts and worker processes share it, and each component's share of the app's
factors (the host capabilities it imports).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import wasmtime
import wasmtime.component

from .engine import DEFAULT_LIMITS, Limits, WasmEngine
from .errors import EngineError, LockError
from .factors import AppFactors, ComponentFactors
from .locked import ContentPath, LockedApp, LockedComponent, read_content, url_to_path

log = logging.getLogger("wasmlet.runtime")

WASM_MAGIC = b"\0asm"
MODULE_VERSION = b"\x01\x00\x00\x00"


def wasm_kind(data: bytes) -> str:
    """`module`, `component`, or `unknown` from the binary header."""
    if data[:4] != WASM_MAGIC:
        return "unknown"
    return "module" if data[4:8] == MODULE_VERSION else "component"


@dataclass
class PreparedComponent:
    locked: LockedComponent
    module: wasmtime.Module | None  # a core module (Wagi), or
    component: wasmtime.component.Component | None  # a component (wasi:http, Spin)
    files_root: Path | None
    factors: ComponentFactors  # what its imports use (none for a core module)
    app: str = ""  # the app's name (metrics label it with it)

    @property
    def id(self) -> str:
        return self.locked.id

    def require_module(self) -> wasmtime.Module:
        if self.module is None:
            raise EngineError(
                f"component {self.id!r} is a Wasm component, but the Wagi executor "
                'runs WASI preview1 command modules; drop `executor = { type = "wagi" }` '
                "to run it with the component executor"
            )
        return self.module

    def require_component(self) -> wasmtime.component.Component:
        if self.component is None:
            raise EngineError(
                f"component {self.id!r} is a core module; core modules run with "
                'executor = { type = "wagi" }'
            )
        return self.component


class AppRuntime:
    """A locked app bound to an engine, a state directory and its configured factors."""

    def __init__(
        self,
        app: LockedApp,
        engine: WasmEngine,
        state_dir: Path,
        factors: AppFactors,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self.app = app
        self.engine = engine
        self.limits = limits  # what each of the app's instances may use
        self.state_dir = state_dir
        self.factors = factors
        self._prepared: dict[str, PreparedComponent] = {}

    def prepare(self, component_id: str) -> PreparedComponent:
        """Compile (or load from cache) a component, lay out its files, prepare its
        factors; memoised."""
        if component_id not in self._prepared:
            self._prepared[component_id] = self._prepare(self.app.component(component_id))
        return self._prepared[component_id]

    def _prepare(self, component: LockedComponent) -> PreparedComponent:
        # The manifest key in the message: the user finds what to fix in spin.toml.
        what = f"component {component.id!r} (component.{component.id}.source)"
        wasm = read_content(component.source, f"{what} source")
        kind = wasm_kind(wasm)
        if kind == "unknown":
            raise LockError(f"{what}: source is not a WebAssembly binary")
        digest = component.source.digest or "sha256:" + hashlib.sha256(wasm).hexdigest()
        files_root = self._materialize_files(component) if component.files else None
        if kind == "module":
            module = self.engine.load_module(wasm, digest, name=what)
            return PreparedComponent(
                component, module, None, files_root, ComponentFactors([], {}), self.app.name
            )
        comp = self.engine.load_component(wasm, digest, name=what)
        imports = comp.type.imports(self.engine.engine)
        factors = self.factors.prepare(component, imports, files_root)
        return PreparedComponent(component, None, comp, files_root, factors, self.app.name)

    def exports(self, prepared: PreparedComponent) -> list[str]:
        """The names a component exports (empty for a core module)."""
        if prepared.component is None:
            return []
        return list(prepared.component.type.exports(self.engine.engine))

    # -- files --------------------------------------------------------------------------
    def _materialize_files(self, component: LockedComponent) -> Path:
        """Lay out the component's files under `<state_dir>/files/<hash>`, atomically."""
        key = hashlib.sha256()
        for f in sorted(component.files, key=lambda f: f.path):
            key.update(f"{f.path}\0{f.digest or f.source or ''}\0".encode())
        # The id shortened: a name has at most 255 bytes (a v1 id may be longer); the hash
        # keeps it unique.
        root = self.state_dir / "files" / f"{component.id[:64]}-{key.hexdigest()[:16]}"
        if root.is_dir():
            return root
        try:
            root.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=".tmp-"))
        except OSError as e:  # the state directory is not writable, or not a directory
            raise LockError(
                f"component {component.id!r}: cannot lay out its files in {root.parent}: "
                f"{e.strerror}"
            ) from None
        try:
            for entry in component.files:
                try:
                    self._place(entry, tmp, component.id)
                except (OSError, ValueError) as e:  # a name too long, a NUL, no space...
                    reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
                    raise LockError(
                        f"component {component.id!r}: cannot lay out file {entry.path!r}: {reason}"
                    ) from None
            os.chmod(tmp, 0o755)
            try:
                os.rename(tmp, root)
            except OSError:
                if not root.is_dir():  # another worker may have won the race
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return root

    @staticmethod
    def _place(entry: ContentPath, root: Path, component_id: str) -> None:
        rel = PurePosixPath(entry.path)
        if rel.is_absolute():
            rel = rel.relative_to("/")
        if ".." in rel.parts:
            raise LockError(
                f"component {component_id!r}: file path {entry.path!r} escapes its root"
            )
        dest = root / rel
        if entry.source is not None and entry.inline is None:
            src = url_to_path(entry.source)
            if src.is_dir():
                shutil.copytree(src, dest, dirs_exist_ok=True)
                return
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(read_content(entry, f"component {component_id!r} file {entry.path}"))
