"""wasi:filesystem 0.2 (types, preopens) in Python: a component's `files`, read-only, at `/`.

wasmtime's native wasi:filesystem hands out native wasi:io streams (`read-via-stream`), which
cannot meet wasmlet's Python ones, so the whole interface is here. The files factor gives
each instance its component's files root (a host directory) under the key `FILES_ROOT`;
`get-directories` offers it as `/`, or nothing when the component has no files.

Behaviour follows wasmtime's for a preopen with read-only directory and file permissions (as
Spin mounts `files`): every change (open for writing, create, truncate, mkdir, unlink, rename,
link, symlink, set-size, set-times, write) is `not-permitted`; `write-via-stream` and
`append-via-stream` are `bad-descriptor`.

Paths resolve one component at a time, relative to the descriptor's directory, with
`O_NOFOLLOW` opens and `*at` calls on directory fds; symbolic links are expanded here (at most
40). An absolute path, an absolute link target, or a `..` that would leave the descriptor's
directory is `not-permitted`, as the WASI spec says: nothing outside the files root is reached.
"""

from .paths import FsError, resolve
from .types_impl import DESCRIPTOR_FLAGS, FILES_ROOT, INTERFACES

__all__ = ["DESCRIPTOR_FLAGS", "FILES_ROOT", "INTERFACES", "FsError", "resolve"]
