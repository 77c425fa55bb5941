"""Logging set-up shared by every entry point (the CLI, `up`'s workers, the shim's runner)."""

from __future__ import annotations

import logging
import sys


def configure_logging(level: str) -> None:
    """Log lines `time level logger: message` on stderr at `level` (debug, info, …)."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
