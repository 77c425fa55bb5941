"""An app made ready to run: its components compiled and their files laid out.

`AppRuntime` turns a `LockedApp` into what executors need, once per process: a compiled
module per component (through the engine's compile cache) and a read-only directory per
component holding its `files`, materialised under the state directory by content hash so
that restarts and worker processes share it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import wasmtime
import wasmtime.component

from .engine import WasmEngine
from .errors import EngineError, LockError, NotSupportedError
from .factors import AppFactors
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
    component: LockedComponent
    kind: str  # "module" | "component"
    module: wasmtime.Module | None  # a core module (Wagi), or
    wasm_component: wasmtime.component.Component | None  # a component (wasi:http, Spin)
    files_root: Path | None


class AppRuntime:
    """A locked app bound to an engine and a state directory."""

    def __init__(
        self,
        app: LockedApp,
        engine: WasmEngine,
        state_dir: Path,
        factors: AppFactors | None = None,
    ) -> None:
        self.app = app
        self.engine = engine
        self.state_dir = state_dir
        self.factors = factors or AppFactors(app, state_dir)
        self._prepared: dict[str, PreparedComponent] = {}

    def prepare(self, component_id: str) -> PreparedComponent:
        """Compile (or load from cache) a component and lay out its files; memoised."""
        if component_id not in self._prepared:
            self._prepared[component_id] = self._prepare(self.app.component(component_id))
        return self._prepared[component_id]

    def _prepare(self, component: LockedComponent) -> PreparedComponent:
        what = f"component {component.id!r}"
        wasm = read_content(component.source, f"{what} source")
        kind = wasm_kind(wasm)
        if kind == "unknown":
            raise LockError(f"{what}: source is not a WebAssembly binary")
        digest = component.source.digest or "sha256:" + hashlib.sha256(wasm).hexdigest()
        module = comp = None
        if kind == "module":
            module = self.engine.load_module(wasm, digest, name=what)
        else:
            comp = self.engine.load_component(wasm, digest, name=what)
        files_root = self._materialize_files(component) if component.files else None
        return PreparedComponent(component, kind, module, comp, files_root)

    def http_executor(self, component_id: str, trigger_id: str) -> Any:
        """The executor for a Spin/wasi:http trigger, chosen by what the component exports."""
        from .executors.spin_inbound import SpinInboundHttpExecutor
        from .executors.wasi_http import INBOUND_HTTP, WasiHttpExecutor, handler_exports

        prepared = self.prepare(component_id)
        comp = prepared.wasm_component
        if comp is None:
            raise NotSupportedError(
                f"trigger {trigger_id!r}: component {component_id!r} is a core module; "
                'core modules run with executor = { type = "wagi" }'
            )
        exports = list(comp.type.exports(self.engine.engine))
        handlers = handler_exports(exports)
        if not handlers:
            raise EngineError(
                f"component {component_id!r} exports no HTTP handler (expected "
                "wasi:http/incoming-handler@0.2.x or fermyon:spin/inbound-http)"
            )
        if len(handlers) > 1:
            raise EngineError(
                f"component {component_id!r} exports more than one HTTP handler: "
                + ", ".join(handlers)
            )
        export = handlers[0]
        executor_class: type[WasiHttpExecutor] | type[SpinInboundHttpExecutor]
        if export.startswith("wasi:http/incoming-handler@"):
            executor_class = WasiHttpExecutor
        elif export == INBOUND_HTTP:
            executor_class = SpinInboundHttpExecutor
        else:
            raise NotSupportedError(
                f"component {component_id!r}: the {export} handler is not supported yet"
            )
        return executor_class(
            self.engine,
            comp,
            component_id,
            export,
            prepared.component.env,
            prepared.files_root,
            lambda: self.capabilities(component_id),
            self.factors.enable(comp.type.imports(self.engine.engine)),
        )

    def capabilities(self, component_id: str) -> dict[str, Any]:
        """Per-instance capability state for one component (policy decided per app)."""
        return self.factors.instance(component_id)

    def require_module(self, component_id: str) -> PreparedComponent:
        prepared = self.prepare(component_id)
        if prepared.module is None:
            raise EngineError(
                f"component {component_id!r} is a Wasm component, but the Wagi executor "
                'runs WASI preview1 command modules; drop `executor = { type = "wagi" }` '
                "to run it with the component executor"
            )
        return prepared

    # -- files --------------------------------------------------------------------------
    def _materialize_files(self, component: LockedComponent) -> Path:
        """Lay out the component's files under `<state_dir>/files/<hash>`, atomically."""
        key = hashlib.sha256()
        for f in sorted(component.files, key=lambda f: f.path):
            key.update(f"{f.path}\0{f.digest or f.source or ''}\0".encode())
        root = self.state_dir / "files" / f"{component.id}-{key.hexdigest()[:16]}"
        if root.is_dir():
            return root
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=".tmp-"))
        try:
            for entry in component.files:
                self._place(entry, tmp, component.id)
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
