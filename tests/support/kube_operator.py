"""The wasmlet operator running in a test, against an API server URL (kmock, usually)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from wasmlet.kube.operator import OperatorConfig, run


@asynccontextmanager
async def running_operator(server: str, **config: Any) -> AsyncIterator[OperatorConfig]:
    """Run the operator until the block ends; it is ready (watching) when the block starts."""
    settings = OperatorConfig(server=server, **config)
    # kopf's shutdown cancels every task started after it, so it gets its own thread/loop
    stop, ready = threading.Event(), threading.Event()
    thread = threading.Thread(
        target=lambda: asyncio.run(run(settings, stop_flag=stop, ready_flag=ready)), daemon=True
    )
    thread.start()
    try:
        assert await asyncio.to_thread(ready.wait, 10), "the operator did not start"
        yield settings
    finally:
        stop.set()
        await asyncio.to_thread(thread.join, 10)
    assert not thread.is_alive(), "the operator did not stop"
