"""The default transport for outbound requests: httpx, on a thread pool, one client per app.

httpx's client is synchronous, so a request is sent on one of the sender's threads while the
guest polls its `future-incoming-response`; the future resolves when the response head has
arrived, and the guest then reads the body from the connection as it arrives (on the
guest's own thread). The outbound-http factor builds one `HttpxSender` per app and closes it
with the app; the client and threads are made when the app sends its first request, so an
app that sends none costs nothing.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from typing import TYPE_CHECKING

from ..io import IoError, IterInputStream, StreamFailed
from .body import IncomingBody
from .error import error_code
from .types import IncomingResponse, OutboundRequest, SendOutcome

if TYPE_CHECKING:  # imported at the first request: an app that sends none never loads httpx
    import httpx

log = logging.getLogger("wasmlet.http")

DEFAULT_TIMEOUT = 30.0  # seconds, for every phase the guest's request-options leave open
DEFAULT_THREADS = 32  # requests waiting for their response head at once, per app
CHUNK = 65536


class HttpxSender:
    """A `SendRequest` over one httpx client (connection pooling, keep-alive), closable."""

    def __init__(self, threads: int = DEFAULT_THREADS, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.timeout = timeout
        self._threads = threads
        self._lock = threading.Lock()
        self._client: httpx.Client | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._closed = False

    @property
    def client(self) -> httpx.Client | None:
        """The client, once the first request has made it."""
        return self._client

    def __call__(self, request: OutboundRequest) -> concurrent.futures.Future[SendOutcome]:
        with self._lock:  # one client and pool per sender, however many guests start at once
            if self._closed:
                done: concurrent.futures.Future[SendOutcome] = concurrent.futures.Future()
                done.set_result(("internal-error", "outbound HTTP is closed: the app is stopping"))
                return done
            if self._client is None or self._pool is None:
                import httpx

                self._client = httpx.Client(
                    follow_redirects=False, timeout=httpx.Timeout(self.timeout)
                )
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    self._threads, thread_name_prefix="wasmlet-outbound"
                )
            return self._pool.submit(self._send, self._client, request)

    def close(self) -> None:
        """Stop sending: queued requests are dropped, open connections closed. Idempotent."""
        with self._lock:
            self._closed = True
            client, pool = self._client, self._pool
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        if client is not None:
            client.close()

    def _timeout(self, request: OutboundRequest) -> httpx.Timeout:
        import httpx

        def pick(value: float | None) -> float:
            return self.timeout if value is None else value

        # httpx's read timeout bounds every read, the first byte's as the later ones.
        return httpx.Timeout(
            self.timeout,
            connect=pick(request.connect_timeout),
            read=pick(request.between_bytes_timeout),
        )

    def _send(self, client: httpx.Client, request: OutboundRequest) -> SendOutcome:
        import httpx

        try:
            built = client.build_request(
                request.method,
                request.url,
                headers=[(k.encode("latin-1"), v) for k, v in request.headers],
                content=request.body or None,  # bytes, or a BodyPipe the guest still fills
                timeout=self._timeout(request),
            )
            response = client.send(built, stream=True)
        except Exception as e:  # every failure is the guest's error-code, not a trap
            log.debug("outbound %s %s failed", request.method, request.url, exc_info=True)
            return error_code(e)
        chunks = response.iter_raw(CHUNK)

        def next_chunk() -> bytes | None:
            try:
                return next(chunks)
            except StopIteration:
                response.close()
                return None
            except httpx.HTTPError as e:
                response.close()
                raise StreamFailed(IoError(str(e), "HTTP-response-incomplete")) from e

        headers = [(k.decode("latin-1"), v) for k, v in response.headers.raw]
        body = IncomingBody(IterInputStream(next_chunk))
        return IncomingResponse(response.status_code, headers, body)
