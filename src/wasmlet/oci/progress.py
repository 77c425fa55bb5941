"""Transfer progress on stderr: a redrawn bar on a terminal, one line per blob otherwise."""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO


def human(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


class Progress:
    """Aggregate progress of one push or pull (all its blobs), thread-safe."""

    WIDTH = 30
    REDRAW_EVERY = 0.1  # seconds

    def __init__(
        self,
        verb: str,
        total_bytes: int,
        total_blobs: int,
        stream: TextIO | None = None,
        *,
        done: str = "",
    ) -> None:
        self.verb = verb  # "Pushing"
        self.done = done or verb  # "Pushed"
        self.total_bytes = max(total_bytes, 1)
        self.total_blobs = total_blobs
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.done_bytes = 0
        self.done_blobs = 0
        self._lock = threading.Lock()
        self._last_draw = 0.0
        self._drawn = False

    def advance(self, n: int) -> None:
        with self._lock:
            self.done_bytes += n
            if self.tty and time.monotonic() - self._last_draw >= self.REDRAW_EVERY:
                self._draw()

    def blob_done(self, digest: str, size: int) -> None:
        with self._lock:
            self.done_blobs += 1
            if self.tty:
                self._draw()
            else:
                print(f"{self.done} {digest} ({human(size)})", file=self.stream, flush=True)

    def close(self) -> None:
        with self._lock:
            if self.tty and self._drawn:
                self._draw()
                self.stream.write("\n")
                self.stream.flush()

    def _draw(self) -> None:
        fraction = min(self.done_bytes / self.total_bytes, 1.0)
        filled = int(fraction * self.WIDTH)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        self.stream.write(
            f"\r{self.verb} [{bar}] {fraction * 100:5.1f}%  {human(self.done_bytes)} / "
            f"{human(self.total_bytes)}  {self.done_blobs}/{self.total_blobs} blobs\x1b[K"
        )
        self.stream.flush()
        self._last_draw = time.monotonic()
        self._drawn = True


class Quiet(Progress):
    """No output (library use, tests, benchmarks)."""

    def __init__(self) -> None:
        super().__init__("", 0, 0)
        self.tty = False

    def blob_done(self, digest: str, size: int) -> None:
        with self._lock:
            self.done_blobs += 1

    def close(self) -> None:
        pass
