"""Find what a container runs: a Spin app (from the image's Wasm layers in containerd's content
store, or `/spin.toml` in the root filesystem) or an ordinary Linux program (handed to runc).

The order follows runwasi: an image whose manifest has Spin/Wasm layers is a Wasm app; else an
ELF or `#!` entrypoint is a Linux container; else `/spin.toml` — or an entrypoint naming a
spin.toml, a directory holding one, or a `.wasm` module (served Wagi-style) — in the root
filesystem.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .image import ImageApp
from .spec import Spec

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class AppNotFoundError(Exception):
    pass


@dataclass(frozen=True)
class WasmApp:
    """A Spin app: from the image's layers, a spin.toml, or a single Wasm module."""

    image: ImageApp | None = None
    manifest: Path | None = None
    wasm: Path | None = None

    @property
    def wasm_layers(self) -> tuple[str, ...]:
        return self.image.wasm_layers if self.image is not None else ()


@dataclass(frozen=True)
class LinuxProgram:
    """An ELF or `#!` entrypoint: an ordinary container, run by runc."""

    path: str


AppKind = WasmApp | LinuxProgram


async def find_app(spec: Spec, rootfs: Path, image: ImageApp | None) -> AppKind:
    """`image`: the container's image as a Wasm app (`find_image_app`), if it is one; else
    the root filesystem decides."""
    if image is not None:
        return WasmApp(image=image)
    return find_in_rootfs(spec, rootfs)  # a few stats and a 4-byte read: no thread for that


def find_in_rootfs(spec: Spec, rootfs: Path) -> AppKind:
    """What the root filesystem runs: an ELF or `#!` entrypoint, else a spin.toml or module."""
    program = _entrypoint(spec, rootfs)
    if program is not None and _is_linux_executable(program):
        return LinuxProgram(str(PurePosixPath("/") / program.relative_to(rootfs)))
    candidates: list[Path] = []
    if program is not None:
        candidates.append(program / "spin.toml" if program.is_dir() else program)
    candidates.append(rootfs / "spin.toml")
    for c in candidates:
        if c.is_file() and c.suffix == ".toml":
            return WasmApp(manifest=c)
        if c.is_file() and c.suffix == ".wasm":
            return WasmApp(wasm=c)
    shown = " ".join(spec.args) or "(none)"
    raise AppNotFoundError(
        "no app found: the image has no Spin/Wasm layers, the entrypoint "
        f"({shown}) is not an ELF or #! program, and there is no /spin.toml in the root "
        "filesystem"
    )


def _entrypoint(spec: Spec, rootfs: Path) -> Path | None:
    """`args[0]` as a path inside `rootfs` (searched on the container's PATH when bare)."""
    if not spec.args or not spec.args[0]:
        return None
    arg = spec.args[0].split("#", 1)[0]
    if "/" in arg:
        candidates = [PurePosixPath(spec.cwd) / arg]
    else:
        dirs = spec.env.get("PATH", DEFAULT_PATH).split(":")
        candidates = [PurePosixPath(d or "/") / arg for d in dirs]
    for c in candidates:
        path = _inside(rootfs, c)
        if path is not None and path.exists():
            return path
    return None


def _inside(rootfs: Path, path: PurePosixPath) -> Path | None:
    """`path` resolved inside `rootfs`, following symlinks without leaving it."""
    current = rootfs
    parts = [p for p in path.parts if p not in ("/", "", ".")]
    for _ in range(64):
        if not parts:
            return current
        part = parts.pop(0)
        if part == "..":
            current = current.parent if current != rootfs else rootfs
            continue
        candidate = current / part
        if candidate.is_symlink():
            target = PurePosixPath(str(candidate.readlink()))
            if target.is_absolute():
                current = rootfs
            parts = [p for p in target.parts if p not in ("/", "", ".")] + parts
            continue
        current = candidate
    return None


def _is_linux_executable(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return path.is_file() and (head == b"\x7fELF" or head[:2] == b"#!")


def describe(app: AppKind) -> str:
    if isinstance(app, LinuxProgram):
        return f"Linux program {app.path} (runc)"
    if app.image is not None:
        return f"Spin app from image {app.image.name} ({len(app.wasm_layers)} Wasm layers)"
    return f"Spin app {app.manifest or app.wasm}"
