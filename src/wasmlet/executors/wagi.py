"""The Wagi executor: CGI over WASI preview1, with Spin's exact semantics.

The request becomes argv, CGI environment variables and stdin; the guest's stdout is a CGI
response (headers, a blank line, the body). See the reference in `docs/wagi.md`.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl, unquote

from ..observe import spans
from ._output import STDERR_CAP
from ._wasi_command import RunOutcome, WasiCommand
from .headers import client_addr, forwarded_headers, full_url
from .types import HttpRequest, HttpResponse, ResponseSink, RouteMatch

log = logging.getLogger("wasmlet.wagi")

DEFAULT_ARGV = "${SCRIPT_NAME} ${ARGS}"
MISSING_HEADERS_BODY = b"Exactly one of 'location' or 'content-type' must be specified"


class WagiError(Exception):
    """A guest's CGI output that cannot be turned into a response; carries the status."""

    def __init__(self, status: int, message: str, body: bytes = b"") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


def build_argv(request: HttpRequest, match: RouteMatch, template: str = DEFAULT_ARGV) -> list[str]:
    """argv: the path, then each decoded query key and its value when non-empty."""
    args: list[str] = []
    for key, value in parse_qsl(request.query, keep_blank_values=True):
        args.append(key)
        if value:
            args.append(value)
    if template.strip() == DEFAULT_ARGV:
        return [request.path, *args]
    # An explicit (older Wagi) template: substitute, then split on whitespace.
    script = match.script_name or "/"
    out: list[str] = []
    for word in template.split():
        if word == "${ARGS}":
            out.extend(args)
        else:
            out.append(word.replace("${SCRIPT_NAME}", script).replace("${ARGS}", " ".join(args)))
    return out


def _server_name_port(host: str | None) -> tuple[str, str]:
    if not host:
        return "localhost", "80"
    if host.startswith("["):  # [v6]:port
        end = host.find("]")
        name, rest = host[: end + 1], host[end + 1 :]
        return name, rest[1:] if rest.startswith(":") else "80"
    name, _, port = host.partition(":")
    return name, port or "80"


def build_env(
    request: HttpRequest, match: RouteMatch, component_env: dict[str, str]
) -> list[tuple[str, str]]:
    """The CGI environment Spin gives a Wagi guest (component `environment` first)."""
    env: dict[str, str] = dict(component_env)
    server_name, server_port = _server_name_port(request.host)
    client_ip = request.client[0]
    env.update(
        {
            "AUTH_TYPE": "",
            "CONTENT_LENGTH": str(len(request.body)),
            "CONTENT_TYPE": "",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "QUERY_STRING": request.query,
            "REMOTE_ADDR": client_ip,
            "REMOTE_HOST": client_ip,
            "REMOTE_USER": "",
            "REQUEST_METHOD": request.method,
            "SCRIPT_NAME": match.script_name,
            "X_RAW_PATH_INFO": match.path_info,
            "PATH_TRANSLATED": unquote(match.path_info),
            "SERVER_NAME": server_name,
            "SERVER_PORT": server_port,
            "SERVER_PROTOCOL": f"HTTP/{request.http_version}",
            "SERVER_SOFTWARE": "WAGI/1",
        }
    )
    for name, value in forwarded_headers(request):
        if name in ("authorization", "connection"):
            continue
        env["HTTP_" + name.upper().replace("-", "_")] = value
    env.update(
        {
            "X_FULL_URL": full_url(request),
            "PATH_INFO": match.path_info,
            "X_MATCHED_ROUTE": match.based_route,
            "X_COMPONENT_ROUTE": match.component_route,
            "X_RAW_COMPONENT_ROUTE": match.route,
            "X_BASE_PATH": "/",
            "X_CLIENT_ADDR": client_addr(request),
        }
    )
    for name, value in match.params:
        env["X_PATH_MATCH_" + name.upper()] = value
    return list(env.items())


def parse_cgi_output(stdout: bytes) -> HttpResponse:
    """Turn CGI output into a response, by Spin's rules (raises WagiError)."""
    head, sep, body = _split_head(stdout)
    if not sep:
        head, body = stdout, b""
    headers: dict[str, tuple[str, str]] = {}  # lower-case name -> (name, value); last wins
    for raw in head.split(b"\n"):
        line = raw.replace(b"\r", b"").decode("latin-1")
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        if not colon:
            continue  # Spin skips lines without a colon
        headers[name.strip().lower()] = (name.strip(), value.strip())

    status = 200
    status_header = headers.pop("status", None)
    if status_header is not None:
        code = status_header[1].split(" ", 1)[0]
        if not code.isdigit() or not 100 <= int(code) <= 999:
            raise WagiError(502, f"invalid Status header {status_header[1]!r}")
        status = int(code)
    if "location" in headers and status_header is None:
        status = 302
    if status_header is None and "location" not in headers and "content-type" not in headers:
        raise WagiError(
            500, "response has none of Content-Type, Status, Location", MISSING_HEADERS_BODY
        )
    return HttpResponse(status, list(headers.values()), body)


def _split_head(stdout: bytes) -> tuple[bytes, bytes, bytes]:
    """Split at the first blank line (LF or CRLF line endings)."""
    idx_lf = stdout.find(b"\n\n")
    idx_crlf = stdout.find(b"\r\n\r\n")
    if idx_crlf != -1 and (idx_lf == -1 or idx_crlf < idx_lf):
        return stdout[:idx_crlf], b"\r\n\r\n", stdout[idx_crlf + 4 :]
    if idx_lf != -1:
        return stdout[:idx_lf], b"\n\n", stdout[idx_lf + 2 :]
    if stdout.startswith((b"\n", b"\r\n")):
        return b"", b"\n", stdout[stdout.find(b"\n") + 1 :]
    return stdout, b"", b""


def failure_kind(outcome: RunOutcome) -> str | None:
    """How a run failed, as `wasmlet_guest_failures_total` counts it (None: it did not)."""
    if outcome.overflowed:
        return "output_limit"
    if outcome.exit_code is None:
        if outcome.timed_out:
            return "timeout"
        limited = outcome.memory_full or "exceeds memory limits" in (outcome.trap or "")
        return "memory_limit" if limited else "trap"
    if outcome.exit_code != 0:
        return "memory_limit" if outcome.memory_full else "exit"
    return None


class WagiExecutor:
    """Serves requests with a WASI command module, one fresh instance per request."""

    streaming = False  # CGI: the whole body on stdin, the whole response from stdout

    def __init__(
        self,
        command: WasiCommand,
        component_id: str,
        environment: dict[str, str],
        argv_template: str = DEFAULT_ARGV,
    ) -> None:
        self.command = command
        self.component_id = component_id
        self.environment = environment
        self.argv_template = argv_template
        self.metrics = getattr(command, "metrics", None)  # None: metrics are off

    def handle(self, request: HttpRequest, match: RouteMatch, sink: ResponseSink) -> None:
        argv = build_argv(request, match, self.argv_template)
        env = build_env(request, match, self.environment)
        outcome = self.command.run(
            [a.encode("utf-8", "surrogateescape") for a in argv],
            [(k.encode(), v.encode("utf-8", "surrogateescape")) for k, v in env],
            request.body,
        )
        self._log_stderr(outcome)
        sink.respond(self.to_response(outcome))

    def to_response(self, outcome: RunOutcome) -> HttpResponse:
        cid = self.component_id
        kind = failure_kind(outcome)
        if kind is not None:
            if self.metrics is not None:
                self.metrics.failed(kind, self._failure_text(outcome), outcome.stderr)
            spans.failed(kind)  # the guest's span, with traces on
        if outcome.overflowed:
            limit = self.command.limits.max_output
            log.error("component %s wrote more than %d bytes to stdout", cid, limit)
            return HttpResponse(500)
        if outcome.exit_code is None:
            what = "timed out" if outcome.timed_out else f"trapped: {outcome.trap}"
            log.error("component %s %s", cid, what)
            return HttpResponse(500)
        if outcome.exit_code != 0:
            log.error("component %s exited with status %d", cid, outcome.exit_code)
            return HttpResponse(500)
        if not outcome.stdout:
            log.error("component %s wrote no response", cid)
            return HttpResponse(500)
        try:
            return parse_cgi_output(outcome.stdout)
        except WagiError as e:
            log.error("component %s: %s", cid, e)
            return HttpResponse(e.status, body=e.body)

    def _failure_text(self, outcome: RunOutcome) -> str:
        """What went wrong (a trap: wasmtime's error, with its backtrace), for the status page."""
        if outcome.overflowed:
            return f"wrote more than {self.command.limits.max_output} bytes to stdout"
        if outcome.trap is not None:
            return outcome.trap
        return f"exited with status {outcome.exit_code}"

    def _log_stderr(self, outcome: RunOutcome) -> None:
        if outcome.stderr:
            cid = self.component_id
            for line in outcome.stderr.decode("utf-8", "replace").splitlines():
                log.info("[%s] %s", cid, line, extra={"guest": (cid, "stderr", line)})
        if outcome.stderr_cut:
            log.warning("component %s: stderr past %d bytes dropped", self.component_id, STDERR_CAP)
