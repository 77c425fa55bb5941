"""Task events forwarded to containerd (`/tasks/create|start|exit|delete|oom`).

Events go through containerd's ttrpc Events service (`$TTRPC_ADDRESS`), in order, from a
queue: while containerd is down (a restart) they wait and are retried, so an exit that
happens then is still reported once containerd is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from google.protobuf import empty_pb2, timestamp_pb2
from google.protobuf.message import Message

from .proto import events_ttrpc_pb2
from .ttrpc import Client, TtrpcError
from .typeurl import pack

log = logging.getLogger("wasmlet.shim.events")

SERVICE = "containerd.services.events.ttrpc.v1.Events"
TOPICS = {
    "TaskCreate": "/tasks/create",
    "TaskStart": "/tasks/start",
    "TaskExit": "/tasks/exit",
    "TaskDelete": "/tasks/delete",
    "TaskOOM": "/tasks/oom",
}
RETRY_FOR = 300.0  # seconds an event is retried before it is dropped


def now() -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.GetCurrentTime()
    return ts


class Publisher:
    def __init__(self, ttrpc_address: str, namespace: str) -> None:
        self.address = ttrpc_address.removeprefix("unix://")
        self.namespace = namespace
        self.queue: asyncio.Queue[events_ttrpc_pb2.Envelope] = asyncio.Queue()
        self._client: Client | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def publish(self, event: Message) -> None:
        topic = TOPICS[event.DESCRIPTOR.name]
        envelope = events_ttrpc_pb2.Envelope(
            timestamp=now(), namespace=self.namespace, topic=topic, event=pack(event)
        )
        self.queue.put_nowait(envelope)

    async def _run(self) -> None:
        while True:
            envelope = await self.queue.get()
            try:
                await self._forward(envelope)
            finally:
                self.queue.task_done()

    async def _forward(self, envelope: events_ttrpc_pb2.Envelope) -> None:
        deadline = time.monotonic() + RETRY_FOR
        delay = 0.05
        while True:
            try:
                if self._client is None:
                    self._client = Client(self.address)
                await self._client.call(
                    SERVICE,
                    "Forward",
                    events_ttrpc_pb2.ForwardRequest(envelope=envelope),
                    empty_pb2.Empty,
                    timeout=10,
                )
                log.debug("forwarded %s", envelope.topic)
                return
            except (OSError, TtrpcError, TimeoutError) as e:
                if self._client is not None:
                    await self._client.close()
                    self._client = None
                if time.monotonic() > deadline:
                    log.error("dropping event %s: %s", envelope.topic, e)
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def drain(self, timeout: float = 10.0) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.queue.join(), timeout)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._client is not None:
            await self._client.close()
