"""Where a Wagi guest's stdout and stderr go: per-thread memfds, capped and emptied.

wasmtime writes a guest's output to a file it opens by path (`/proc/self/fd/N` of a memfd),
in native code, with no Python in the way: the cheapest path (a custom output callback
costs ~37 µs per write). The memfd grows with whatever the guest writes, so a guard thread
checks the files of running guests every `CHECK_SECONDS` while any run, and seals
(`F_SEAL_WRITE`) and empties a file past its cap: the guest's further writes fail, and the
run ends with `overflowed` set. A guest can therefore write its cap plus what it writes in
one check interval (measured: 0.3-0.5 GB/s, so a few MB) before its writes fail. Each file is
emptied when its run ends (`finish`), so nothing a guest wrote outlives its request; a sealed
file cannot be unsealed, so its thread gets new ones.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time

CHECK_SECONDS = 0.01
LINGER_SECONDS = 1.0  # the guard keeps checking this long after the last run (then parks)
STDERR_CAP = 1 << 20  # bytes of a guest's stderr kept for the log


class OutputFiles:
    """One thread's memfds for a guest's stdout and stderr (`thread_files()`)."""

    def __init__(self) -> None:
        self.out = self.err = -1
        self.overflowed = False  # stdout passed its cap (this run)
        self.err_overflowed = False  # stderr passed STDERR_CAP (this run)
        self.cap = 0
        self._open()

    def _open(self) -> None:
        flags = os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING
        self.out = os.memfd_create("wasmlet-stdout", flags)
        self.err = os.memfd_create("wasmlet-stderr", flags)
        self.out_path = f"/proc/self/fd/{self.out}".encode()
        self.err_path = f"/proc/self/fd/{self.err}".encode()
        self.sealed = False  # a file was sealed: this thread needs new ones

    def _close(self) -> None:
        for fd in (self.out, self.err):
            if fd >= 0:
                os.close(fd)
        self.out = self.err = -1

    def __del__(self) -> None:  # its thread has ended (pool threads come and go)
        self._close()

    def start(self, cap: int) -> None:
        """A run begins: watch its files."""
        self.cap = cap
        self.overflowed = self.err_overflowed = False
        _guard.watch(self)

    def finish(self) -> tuple[bytes, bytes]:
        """The run has ended (the guest's own descriptors are closed): what it wrote, with
        both files emptied (or replaced, if sealed). A guest that wrote past a cap between
        two checks is caught here."""
        _guard.unwatch(self)
        try:
            out_size, err_size = os.fstat(self.out).st_size, os.fstat(self.err).st_size
            self.overflowed = self.overflowed or out_size > self.cap
            self.err_overflowed = self.err_overflowed or err_size > STDERR_CAP
            stdout = b"" if self.overflowed or not out_size else os.pread(self.out, out_size, 0)
            stderr = os.pread(self.err, min(err_size, STDERR_CAP), 0) if err_size else b""
            return stdout, stderr
        finally:
            if self.sealed:
                self._close()
                self._open()
            else:
                os.ftruncate(self.out, 0)
                os.ftruncate(self.err, 0)

    def check(self) -> None:
        """Seal a file past its cap (the guard's lock held): the guest's next write fails.
        stdout is emptied at once (it will not be a response); the first STDERR_CAP bytes
        of stderr are kept for the log."""
        if not self.overflowed and os.fstat(self.out).st_size > self.cap:
            self.overflowed = self.sealed = True
            fcntl.fcntl(self.out, fcntl.F_ADD_SEALS, fcntl.F_SEAL_WRITE)
            os.ftruncate(self.out, 0)  # free the memory now, not when the run ends
        if not self.err_overflowed and os.fstat(self.err).st_size > STDERR_CAP:
            self.err_overflowed = self.sealed = True
            fcntl.fcntl(self.err, fcntl.F_ADD_SEALS, fcntl.F_SEAL_WRITE)


class _Guard:
    """The thread that checks running guests' output files."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: set[OutputFiles] = set()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._last = 0.0

    def watch(self, files: OutputFiles) -> None:
        with self._lock:
            self._runs.add(files)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="wasmlet-output-guard", daemon=True
                )
                self._thread.start()
        if not self._wake.is_set():
            self._wake.set()

    def unwatch(self, files: OutputFiles) -> None:
        with self._lock:
            self._runs.discard(files)
            self._last = time.monotonic()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            time.sleep(CHECK_SECONDS)
            with self._lock:
                for files in self._runs:
                    files.check()
                if not self._runs and time.monotonic() - self._last > LINGER_SECONDS:
                    self._wake.clear()  # park until the next run


_guard = _Guard()


class _PerThread(threading.local):
    files: OutputFiles | None = None


_per_thread = _PerThread()


def thread_files() -> OutputFiles:
    """This thread's output files, made on first use."""
    files = _per_thread.files
    if files is None:
        files = _per_thread.files = OutputFiles()
    return files
