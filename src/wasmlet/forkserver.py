"""Where a server's worker processes (`--workers N`) start: multiprocessing's fork server.

A spawned worker is a new interpreter that imports the whole HTTP and Wasm stack before it
can build its app (~0.3 s here, on every start and every restart). The fork server imports
it once (`PRELOAD`) and forks each worker from there: a worker starts with everything
imported and only builds its app. The fork server never builds anything, makes no engine
and no threads, so nothing of the kind crosses a fork (wasmtime's engine must not).

`start_early` starts the fork server at once, so that its imports run beside the
supervisor's own on another core instead of after them; `context` is what the supervisor
starts its workers with (it starts the fork server itself if `start_early` did not). A
worker is the fork server's child, not the supervisor's; the fork server exits when the
supervisor does, and its workers then (their parent-death signal, `trigger/http/server.py`).

Only the standard library here: `wasmlet up` calls `start_early` before its heavy imports.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterable
from multiprocessing.context import ForkServerContext

# What uvicorn imports only when a server starts (its config's loop, protocols, lifespan).
UVICORN_LAZY = (
    "uvicorn.lifespan.on",
    "uvicorn.loops.auto",
    "uvicorn.loops.uvloop",
    "uvicorn.protocols.http.auto",
    "uvicorn.protocols.http.httptools_impl",
)  # no WebSocket protocol: the servers run with ws="none" (trigger/http/server.py)
# What every worker imports before it serves: the HTTP server and, through it, the runtime,
# the host capabilities and uvicorn.
PRELOAD = ("wasmlet.trigger.http.server", *UVICORN_LAZY)
FREEZE = "wasmlet._freeze"  # imported after everything else (see _freeze.py)


def context(preload: Iterable[str] = ()) -> ForkServerContext:
    """The workers' start method; `preload`: modules to import in the fork server besides
    PRELOAD (e.g. the module of what the workers serve). Too late once it runs: then each
    worker imports them itself."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(list(dict.fromkeys([*PRELOAD, *preload, FREEZE])))
    return ctx


def start_early(workers: int) -> None:
    """Start the fork server now if there will be workers (`workers` > 1)."""
    if workers > 1:
        from multiprocessing import forkserver

        context()
        forkserver.ensure_running()
