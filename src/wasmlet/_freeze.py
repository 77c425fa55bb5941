"""Imported last by the workers' fork server (`forkserver.PRELOAD`), for its side effect: what
the fork server imported leaves the garbage collector's sight, as the shim's template does
before it forks. A worker's collections then neither scan those objects (a full collection
of them took ~13 ms at each worker's start) nor write to them (marking an object writes to
its page, which the worker then no longer shares with the fork server)."""

import gc

gc.collect()
gc.freeze()
