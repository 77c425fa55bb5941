"""Files: a component's `files`, read-only at `/`, through wasi:filesystem.

The files are laid out under the app's state directory when the component is prepared
(`runtime.py`); this factor hands each instance that directory, which wasi:filesystem's
`get-directories` offers as `/`.
"""

from __future__ import annotations

from ..wasi.filesystem import FILES_ROOT
from ..wasi.filesystem import INTERFACES as FILESYSTEM
from ._factor import ComponentContext, StatelessFactor


class FilesFactor(StatelessFactor[str | None]):
    key = FILES_ROOT
    interfaces = tuple(FILESYSTEM)

    def prepare(self, state: None, ctx: ComponentContext) -> str | None:
        return str(ctx.files_root) if ctx.files_root is not None else None


FACTOR = FilesFactor()
