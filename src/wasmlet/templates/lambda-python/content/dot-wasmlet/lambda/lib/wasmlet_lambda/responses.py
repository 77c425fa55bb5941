"""A handler's return value as the HTTP response its trigger would send, and the responses of
failures (an exception, a malformed result, no route for the method).

The value is read as Lambda's runtime serializes it and the gateway reads it: a dict with
`statusCode` is a proxy response (`headers`, `multiValueHeaders` (merged; its values win for
a name in both), `cookies` (payload 2.0: one `Set-Cookie` each), `body`,
`isBase64Encoded`); for payload 2.0 and function URLs any other value is serialized as JSON
(`Decimal` as a number; what JSON cannot hold is a TypeError, Lambda's
`Runtime.MarshalError`) and is the body of a 200 `application/json` response (API
Gateway's inference). The proxy fields are checked as the gateway would read them (numbers
and `Decimal`s where a string or status goes, tuples as lists) without serializing the whole
value first: that JSON round trip cost as much as the rest of the adapter per request, and
only fields the gateway ignores escaped its check.
"""

from __future__ import annotations

import base64
import binascii
import decimal
import json
import traceback
from dataclasses import dataclass
from typing import Any

# The statuses and bodies the services answer when the function fails.
_FAILED: dict[str, tuple[int, str, bytes]] = {
    "http-api": (500, "application/json", b'{"message":"Internal Server Error"}'),
    "http-api-1.0": (500, "application/json", b'{"message":"Internal Server Error"}'),
    "function-url": (500, "application/json", b'{"message":"Internal Server Error"}'),
    "rest": (502, "application/json", b'{"message": "Internal server error"}'),
    "alb": (502, "text/html", b"<html><body><h1>502 Bad Gateway</h1></body></html>\n"),
    "alb-multi-value": (502, "text/html", b"<html><body><h1>502 Bad Gateway</h1></body></html>\n"),
}
# What a method the route does not have gets (REST's famous 403).
_NO_ROUTE: dict[str, tuple[int, bytes]] = {
    "http-api": (404, b'{"message":"Not Found"}'),
    "http-api-1.0": (404, b'{"message":"Not Found"}'),
    "function-url": (404, b'{"message":"Not Found"}'),
    "rest": (403, b'{"message":"Missing Authentication Token"}'),
    "alb": (404, b'{"message":"Not Found"}'),
    "alb-multi-value": (404, b'{"message":"Not Found"}'),
}
_REQUIRES_STATUS = ("rest", "http-api-1.0", "alb", "alb-multi-value")
_HOP_BY_HOP = {"content-length", "transfer-encoding", "connection", "keep-alive"}


@dataclass(slots=True)
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


class MalformedResult(Exception):
    """The handler returned something its trigger cannot turn into a response."""


def _decimal(value: object) -> object:
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _scalar(value: object, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    if isinstance(value, decimal.Decimal):
        return str(_decimal(value))
    raise MalformedResult(f"{where}: expected a string, got {type(value).__name__}")


def _status(value: object) -> int:
    whole = isinstance(value, decimal.Decimal) and value == value.to_integral_value()
    if whole or (isinstance(value, str) and value.isdigit()):
        value = int(value)  # type: ignore[call-overload]
    if not isinstance(value, int) or isinstance(value, bool) or not 100 <= value <= 599:
        raise MalformedResult(f"statusCode: expected an HTTP status (100-599), got {value!r}")
    return value


def to_response(kind: str, data: Any) -> Response:
    """The response for a handler's return value (TypeError: JSON cannot hold it)."""
    if isinstance(data, bytes | bytearray):
        raise MalformedResult("the handler returned bytes, which the runtime posts unparsed")
    if not isinstance(data, dict) or "statusCode" not in data:
        if kind in _REQUIRES_STATUS:
            raise MalformedResult(
                "the result has no statusCode: a "
                f"{'REST API' if kind == 'rest' else kind} proxy response is a dict with "
                "statusCode, headers, multiValueHeaders, body and isBase64Encoded"
            )
        body = json.dumps(data, ensure_ascii=False, default=_decimal).encode("utf-8")
        return Response(200, [("content-type", "application/json")], body)
    status = _status(data["statusCode"])
    headers: dict[str, list[str]] = {}
    single = data.get("headers") or {}
    multi = data.get("multiValueHeaders") or {}
    if not isinstance(single, dict) or not isinstance(multi, dict):
        raise MalformedResult("headers and multiValueHeaders must be objects")
    for name, value in single.items():
        headers[name.lower()] = [_scalar(value, f"headers.{name}")]
    for name, values in multi.items():
        if not isinstance(values, list | tuple):
            raise MalformedResult(f"multiValueHeaders.{name}: expected a list of strings")
        headers[name.lower()] = [_scalar(v, f"multiValueHeaders.{name}") for v in values]
    pairs = [(k, v) for k, values in headers.items() if k not in _HOP_BY_HOP for v in values]
    if kind in ("http-api", "function-url"):
        cookies = data.get("cookies") or []
        if not isinstance(cookies, list | tuple):
            raise MalformedResult("cookies: expected a list of strings")
        pairs += [("set-cookie", _scalar(c, "cookies[]")) for c in cookies]
    text = data.get("body")
    if text is None:
        raw = b""
    elif not isinstance(text, str):
        raise MalformedResult(f"body: expected a string, got {type(text).__name__}")
    elif data.get("isBase64Encoded") is True:
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise MalformedResult("body: isBase64Encoded is true but it is not base64") from None
    else:
        raw = text.encode("utf-8")
    return Response(status, pairs, raw)


def failed(kind: str) -> Response:
    """What the trigger answers when the function failed."""
    status, content_type, body = _FAILED[kind]
    return Response(status, [("content-type", content_type)], body)


def no_route(kind: str) -> Response:
    status, body = _NO_ROUTE[kind]
    return Response(status, [("content-type", "application/json")], body)


def error_document(error: BaseException, request_id: str) -> dict[str, Any]:
    """Lambda's error JSON for an exception raised by the handler."""
    frames = traceback.extract_tb(error.__traceback__)
    return {
        "errorMessage": str(error),
        "errorType": type(error).__name__,
        "requestId": request_id,
        "stackTrace": traceback.format_list(frames),
    }
