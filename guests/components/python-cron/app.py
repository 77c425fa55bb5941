"""The cron-triggered test component: the cron trigger plugin's world `spin-cron`
(wit/deps/spin-cron/cron.wit, package `fermyon:spin-cron@2.0.0`, a world-level
`handle-cron-event` export) plus Spin's key-value and variables (wit/world.wit), built with
componentize-py.

Each tick prints `tick <timestamp>` (guest stdout reaches wasmlet's log) and, if the handler
succeeds, stores `tick-<timestamp>` in the key-value store `default`. The component variable
`mode` is `ok` or `flaky`: a flaky component returns the interface's `error` on the ticks whose
timestamp is 1 modulo 3 and traps (raises) on those that are 2 modulo 3.
"""

from __future__ import annotations

import wit_world
from wit_world.imports import cron_types, key_value, variables
from wit_world.types import Err


class WitWorld(wit_world.WitWorld):
    def handle_cron_event(self, metadata: cron_types.Metadata) -> None:
        timestamp = metadata.timestamp
        print(f"tick {timestamp}", flush=True)
        if variables.get("mode") == "flaky":
            if timestamp % 3 == 1:
                raise Err(cron_types.Error_Other(f"asked to fail at {timestamp}"))
            if timestamp % 3 == 2:
                raise RuntimeError(f"asked to trap at {timestamp}")
        store = key_value.Store.open("default")
        store.set(f"tick-{timestamp}", str(timestamp).encode())
