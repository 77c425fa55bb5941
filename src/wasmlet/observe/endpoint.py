"""The metrics endpoint: `GET /metrics` on a listener of its own (`--metrics-listen ADDR`).

One process serves it, on a thread: the supervisor with `--workers N`, else the server
process itself. With several workers, each writes its values to files in a directory made
for the run (prometheus-client's multiprocess mode: `PROMETHEUS_MULTIPROC_DIR`, inherited by
the spawned workers) and a scrape sums them; the directory is removed when the run ends. A
dead worker's counters and histograms still count (they only grow; a restarted worker has a
new pid and its own files), its in-flight gauge does not (`metrics.worker_exited`).

The text format is Prometheus' (OpenMetrics when the scraper asks for it). Beside it, when
the runtime's metrics are served, the status page (`status_page.py`: `/`, `/status.js`,
`/status.json`); anything else is 404.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

from ..errors import WasmletError
from . import metrics, status_page
from .status_page import StatusPage

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

log = logging.getLogger("wasmlet.metrics")

FLAG = "--metrics-listen"
EXAMPLE = "127.0.0.1:9090"
PATH = "/metrics"


def parse_address(addr: str, name: str = FLAG) -> tuple[str, int]:
    """`127.0.0.1:9090`, `[::1]:9090`, `localhost:9090`, `0.0.0.0:9090` → (host, port).
    `name`: where the address came from, for the error (a flag, or an environment variable)."""
    host, sep, port = addr.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise WasmletError(f"{name}: invalid address {addr!r}: expected HOST:PORT, e.g. {EXAMPLE}")
    return host, int(port)


def _bind_family(addr: str, name: str) -> tuple[socket.AddressFamily, tuple[str, int]]:
    host, port = parse_address(addr, name)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise WasmletError(f"{name}: cannot resolve {host!r}: {e.strerror}") from None
    family, _, _, _, sockaddr = infos[0]
    return family, (str(sockaddr[0]), int(sockaddr[1]))


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a scrape in progress does not hold up the exit

    def __init__(self, family: socket.AddressFamily, address: tuple[str, int]) -> None:
        self.address_family = family
        self.registry: CollectorRegistry | None = None
        self.status: StatusPage | None = None  # the runtime's metrics only (not the operator)
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        registry = self.server.registry
        path = self.path.split("?", 1)[0]
        if self.server.status is not None and path != PATH:
            self._status(self.server.status, path)
            return
        if path != PATH or registry is None:
            self._reply(404, "text/plain; charset=utf-8", b"not found: metrics are at /metrics\n")
            return
        from prometheus_client.exposition import choose_encoder

        encode, content_type = choose_encoder(self.headers.get("Accept", ""))
        try:
            body = encode(registry)
        except Exception:  # e.g. a worker's file half written: the next scrape will do
            log.exception("collecting metrics")
            self._reply(500, "text/plain; charset=utf-8", b"metrics collection failed\n")
            return
        self._reply(200, content_type, body)

    def _status(self, page: StatusPage, path: str) -> None:
        """The status page (status_page.py); guest text on it is untrusted, hence the CSP."""
        if path in status_page.PATHS:
            self._reply(200, "text/html; charset=utf-8", page.html(), status_page.CSP)
        elif path == status_page.SCRIPT_PATH:
            self._reply(200, "text/javascript; charset=utf-8", page.script())
        elif path == status_page.JSON_PATH:
            try:
                body = page.json()
            except Exception:  # as for a scrape: the next poll will do
                log.exception("collecting the status")
                self._reply(500, "text/plain; charset=utf-8", b"status collection failed\n")
                return
            self._reply(200, "application/json", body)
        else:
            text = b"not found: metrics are at /metrics, the status page at /\n"
            self._reply(404, "text/plain; charset=utf-8", text)

    def _reply(self, status: int, content_type: str, body: bytes, csp: str = "") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Cache-Control", "no-store")
        if csp:
            self.send_header("Content-Security-Policy", csp)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # scrapes every few seconds would flood the log


class MetricsEndpoint:
    """The listener (bound at once, so a bad address fails before anything is built) and,
    from `start`, the thread serving it.

    `registry`: serve these metrics instead of switching on the runtime's (a process that
    runs no app, such as the operator); `name`: where `addr` came from, for errors."""

    def __init__(
        self,
        addr: str,
        workers: int = 1,
        registry: CollectorRegistry | None = None,
        name: str = FLAG,
    ) -> None:
        family, address = _bind_family(addr, name)
        try:
            self._server = _Server(family, address)
        except OSError as e:
            raise WasmletError(f"{name}: cannot listen on {addr}: {e.strerror or e}") from None
        self._own = registry
        self._dir: str | None = None
        if workers > 1:  # private to the run: another run's files would be summed too
            self._dir = tempfile.mkdtemp(prefix="wasmlet-metrics-")
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        shown = f"[{host!s}]" if ":" in str(host) else str(host)
        return f"http://{shown}:{port}{PATH}"

    def start(self) -> None:
        """Switch metrics on in this process (and its workers) and serve them."""
        if self._own is not None:
            self._server.registry = self._own
        else:
            metrics.enable(self._dir)
            self._server.registry = self._collecting()
            self._server.status = status_page.StatusPage(self._server.registry)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="wasmlet-metrics", daemon=True
        )
        self._thread.start()

    def _collecting(self) -> CollectorRegistry:
        own = metrics.registry()
        if own is not None:
            return own
        from prometheus_client import CollectorRegistry
        from prometheus_client.multiprocess import MultiProcessCollector

        summed = CollectorRegistry()
        MultiProcessCollector(summed, path=self._dir)  # type: ignore[no-untyped-call]
        return summed

    def close(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            if os.environ.get("PROMETHEUS_MULTIPROC_DIR") == self._dir:
                del os.environ["PROMETHEUS_MULTIPROC_DIR"]


@contextlib.contextmanager
def serving(
    addr: str | None, workers: int = 1, registry: CollectorRegistry | None = None
) -> Iterator[MetricsEndpoint | None]:
    """Serve metrics on `addr` for as long as the block runs (nothing when `addr` is None),
    saying where on stdout (`Metrics: URL`); `registry` as for `MetricsEndpoint`."""
    if addr is None:
        yield None
        return
    endpoint = MetricsEndpoint(addr, workers, registry)
    try:
        endpoint.start()
        print(f"Metrics: {endpoint.url}", flush=True)
        yield endpoint
    finally:
        endpoint.close()
