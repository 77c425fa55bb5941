"""Logging set-up shared by every entry point (the CLI, `up`'s workers, the shim's runner).

Two formats on stderr: `text` (`time level logger: message`) and `json` (`--log-format json`:
one JSON object per line, with the app, component, request id and trace id of the request
being handled, if any; see docs/observability.md). Guest stdout and stderr lines are log
records too (`wasi/io.py`, the Wagi executor), with a `guest` attribute: (component, stream,
line), which the JSON lines report as `component`, `stream` and `message`.
"""

from __future__ import annotations

import json
import logging
import sys
import time

from .observe import context

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: `time` (UTC, RFC 3339, milliseconds), `level`, `logger`,
    `message`; then `app`, `component`, `request_id`, `trace_id`, `span_id` inside a request,
    `stream` for a guest's output line, `exception` with a traceback."""

    def format(self, record: logging.LogRecord) -> str:
        seconds = time.gmtime(record.created)
        line: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", seconds) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        guest = getattr(record, "guest", None)
        if guest is not None:
            component, stream, text = guest
            line["message"] = text
        else:
            line["message"] = record.getMessage()
        ctx = context.current()
        if ctx is not None:
            line["app"] = ctx.app
            if ctx.component:
                line["component"] = ctx.component
            line["request_id"] = ctx.request_id
            if ctx.trace_id:
                line["trace_id"] = ctx.trace_id
            if ctx.span_id:
                line["span_id"] = ctx.span_id
        if guest is not None:
            line["component"] = component
            line["stream"] = stream
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line)


def configure_logging(level: str, fmt: str = "text") -> None:
    """Log to stderr at `level` (debug, info, …) in `fmt` (`text` or `json`)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r} (expected one of: {', '.join(FORMATS)})")
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
        context.enable()  # requests carry their context from now on
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), handlers=[handler])
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
