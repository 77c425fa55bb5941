"""The exceptions wasmlet raises. Every user-facing error is a `WasmletError`:
the CLI prints its message as one line and exits non-zero."""

from __future__ import annotations


class WasmletError(Exception):
    """Base class of every error wasmlet reports to a user."""


class ManifestError(WasmletError):
    """A `spin.toml` (or a file it names) is invalid.

    The message reads `<file>: <key path>: <what is wrong>`, e.g.
    `spin.toml: component.hello.source: file "hello.wasm" not found`.
    """

    def __init__(self, file: str, path: str, message: str) -> None:
        self.file = file
        self.path = path
        self.message = message
        where = f"{file}: {path}: " if path else f"{file}: "
        super().__init__(where + message)


class LockError(WasmletError):
    """A locked app (LockedApp JSON) is invalid or refers to missing content."""


class RuntimeConfigError(WasmletError):
    """A runtime config file (`--runtime-config-file`) is invalid."""


class VariableError(WasmletError):
    """An application variable is missing, undefined or has an invalid name."""


class EngineError(WasmletError):
    """A Wasm module could not be compiled, loaded or linked."""


class NotSupportedError(WasmletError):
    """The app asks for something wasmlet does not implement (yet)."""
