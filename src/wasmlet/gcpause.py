"""The garbage collector during a server's startup: off, then everything startup made frozen.

Startup makes ~10^5 objects (modules, the engine, the app) that live as long as the process
and almost no garbage (~1,700 objects for hello). Collections while it runs scan that growing
heap again and again (~40 ms of a fresh `wasmlet up` here), and a full collection before
serving took another ~20 ms. So a command that serves calls `pause` first and `settle` once it
is about to serve: what startup made leaves the collector's sight (`gc.freeze`, as the shim's
template does before it forks), so a full collection scans only what requests make (each one
took 0.1-0.3 s before, and the growth of 1,000 connections triggers them: bench/soak.py), and
a forked worker neither scans its parent's objects nor writes to their shared pages.
"""

import gc


def pause() -> None:
    """No collections until `settle`."""
    gc.disable()


def settle() -> None:
    """Freeze what exists now and collect again from here on."""
    gc.freeze()
    gc.enable()
