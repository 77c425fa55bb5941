"""An HTTP request as the Lambda event of its trigger.

Kinds (`Route.kind`): `http-api` (API Gateway HTTP API, payload 2.0, the default),
`http-api-1.0` (HTTP API with payload 1.0), `rest` (API Gateway REST API proxy, 1.0),
`function-url` (Lambda function URL, the 2.0 shape), `alb` and `alb-multi-value` (an
Application Load Balancer target group, without or with multi-value headers).

Standard library only: this runs inside the component (CPython 3.12, componentize-py) and on
the host in wasmlet's tests. Choices where AWS services differ or wasmlet knows less:

- paths are passed as the client sent them (percent-encoded), in every kind; path parameters
  and (except for ALB, which does not decode) query parameters are decoded;
- a body is text when its content type is text-like and it is valid UTF-8, else base64 with
  `isBase64Encoded: true` (API Gateway's binary media types are not configured per API);
- header names are lower-case (HTTP/2 style) except in REST events, where they are written
  `Title-Case` as HTTP/1.1 clients send them; handlers should compare names case-insensitively.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

KINDS = ("http-api", "http-api-1.0", "rest", "function-url", "alb", "alb-multi-value")
DEFAULT_STAGE = "$default"
ACCOUNT_ID = "000000000000"  # no AWS account behind wasmlet: a fixed, obviously fake one

# Content types whose bodies are passed as text (mangum's list, plus the +json/+xml suffixes).
_TEXT_TYPES = (
    "text/",
    "application/json",
    "application/javascript",
    "application/xml",
    "application/vnd.api+json",
    "application/vnd.oai.openapi",
)


# Plain (not frozen) slotted dataclasses: a frozen one's __init__ costs a call per field,
# which shows in a component's per-request time (CPython in Wasm).
@dataclass(slots=True)
class Request:
    """What the adapter knows of an HTTP request."""

    method: str
    path: str  # as sent: percent-encoded, without the query
    query: str  # the raw query string, without "?"
    headers: tuple[tuple[str, str], ...]  # lower-case names, in arrival order, repeats kept
    body: bytes
    source_ip: str
    scheme: str = "http"
    last: dict[str, str] = field(init=False)  # each header's last value

    def __post_init__(self) -> None:
        self.last = dict(self.headers)

    def header(self, name: str) -> str | None:
        """The last value of a header, or None."""
        return self.last.get(name)


@dataclass(slots=True)
class Target:
    """Where a request goes: the event kind and what its route says."""

    kind: str
    route_key: str  # HTTP API: "GET /items/{id}", "ANY /{proxy+}" or "$default"
    resource: str  # REST: the resource path, "/items/{id}"
    path_parameters: dict[str, str] | None
    stage: str = DEFAULT_STAGE
    path: str | None = None  # the path the function sees, when not the request's own


def is_text(content_type: str | None) -> bool:
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media.startswith(_TEXT_TYPES) or media.endswith(("+json", "+xml"))


def body_field(request: Request) -> tuple[str | None, bool]:
    """The event's `body` (None when empty) and `isBase64Encoded`."""
    if not request.body:
        return None, False
    if is_text(request.header("content-type")):
        try:
            return request.body.decode("utf-8"), False
        except UnicodeDecodeError:
            pass
    return base64.b64encode(request.body).decode("ascii"), True


def _title(name: str) -> str:
    return "-".join(part[:1].upper() + part[1:] for part in name.split("-"))


def _grouped(pairs: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in pairs:
        out.setdefault(key, []).append(value)
    return out


_FORWARDED = ("x-forwarded-for", "x-forwarded-port", "x-forwarded-proto")


def _forwarded(request: Request, trace_id: str) -> list[tuple[str, str]]:
    """The client's headers plus those API Gateway and ALB add (X-Forwarded-*, a trace id)."""
    last = request.last
    if "x-forwarded-for" in last or "x-forwarded-port" in last or "x-forwarded-proto" in last:
        # the gateway's own replace the client's
        headers = [(k, v) for k, v in request.headers if k not in _FORWARDED]
    else:
        headers = list(request.headers)
    prior = last.get("x-forwarded-for")
    host = last.get("host", "")
    port = host.rsplit(":", 1)[1] if ":" in host and not host.endswith("]") else None
    headers += (
        ("x-forwarded-for", f"{prior}, {request.source_ip}" if prior else request.source_ip),
        ("x-forwarded-port", port or ("443" if request.scheme == "https" else "80")),
        ("x-forwarded-proto", request.scheme),
    )
    if "x-amzn-trace-id" not in last:
        headers.append(("x-amzn-trace-id", trace_id))
    return headers


def trace_id(request_id: str, now: float) -> str:
    """An X-Ray trace header (`Root=1-<epoch hex>-<24 hex>`) for a request."""
    return f"Root=1-{int(now):08x}-{request_id.replace('-', '')[:24]}"


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def gateway_time(now: float) -> str:
    """API Gateway's request time: `12/Mar/2024:19:03:58 +0000` (English month names, as
    strftime's %b would give them only in the C locale)."""
    t = time.gmtime(now)
    return (
        f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:"
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"
    )


def _query(query: str) -> list[tuple[str, str]]:
    return parse_qsl(query, keep_blank_values=True) if query else []


def _function_path(request: Request, target: Target) -> str:
    path = target.path if target.path is not None else request.path
    return path or "/"


def build_event(
    request: Request,
    target: Target,
    *,
    request_id: str,
    now: float,
    api_id: str,
    region: str,
) -> dict[str, Any]:
    """The Lambda event for `request` as the trigger of `target.kind` would send it."""
    headers = _forwarded(request, trace_id(request_id, now))
    if target.kind in ("http-api", "function-url"):
        return _v2(request, target, headers, request_id, now, api_id, region)
    if target.kind in ("rest", "http-api-1.0"):
        return _v1(request, target, headers, request_id, now, api_id, region)
    if target.kind in ("alb", "alb-multi-value"):
        return _alb(request, target, headers, region)
    raise ValueError(f"unknown event kind {target.kind!r} (kinds: {', '.join(KINDS)})")


def _domain(request: Request, api_id: str, region: str, kind: str) -> tuple[str, str]:
    host = request.header("host")
    if host:
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    elif kind == "function-url":
        name = f"{api_id}.lambda-url.{region}.on.aws"
    else:
        name = f"{api_id}.execute-api.{region}.amazonaws.com"
    return name, name.split(".", 1)[0]


def _staged(path: str, stage: str) -> str:
    return path if stage == DEFAULT_STAGE else f"/{stage}{path}"


def _v2(
    request: Request,
    target: Target,
    headers: list[tuple[str, str]],
    request_id: str,
    now: float,
    api_id: str,
    region: str,
) -> dict[str, Any]:
    """HTTP API payload 2.0 (and a function URL's event, the same shape)."""
    cookies: list[str] = []
    joined: dict[str, str] = {}  # repeats joined with ","
    for key, value in headers:
        if key == "cookie":  # cookies move out of the headers, one entry per cookie
            cookies += [c.strip() for c in value.split(";") if c.strip()]
        elif key in joined:
            joined[key] += "," + value
        else:
            joined[key] = value
    path = _function_path(request, target)
    if target.kind == "http-api":
        path = _staged(path, target.stage)
    domain, prefix = _domain(request, api_id, region, target.kind)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": target.route_key,
        "rawPath": path,
        "rawQueryString": request.query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = joined
    query = _grouped(_query(request.query))
    if query:
        event["queryStringParameters"] = {k: ",".join(v) for k, v in query.items()}
    context: dict[str, Any] = {
        "accountId": "anonymous" if target.kind == "function-url" else ACCOUNT_ID,
        "apiId": prefix if target.kind == "function-url" else api_id,
        "domainName": domain,
        "domainPrefix": prefix,
        "http": {
            "method": request.method,
            "path": path,
            "protocol": "HTTP/1.1",
            "sourceIp": request.source_ip,
            "userAgent": request.header("user-agent") or "",
        },
        "requestId": request_id,
        "routeKey": target.route_key,
        "stage": target.stage,
        "time": gateway_time(now),
        "timeEpoch": int(now * 1000),
    }
    event["requestContext"] = context
    if target.path_parameters:
        event["pathParameters"] = dict(target.path_parameters)
    body, encoded = body_field(request)
    if body is not None:
        event["body"] = body
    event["isBase64Encoded"] = encoded
    return event


def _v1(
    request: Request,
    target: Target,
    headers: list[tuple[str, str]],
    request_id: str,
    now: float,
    api_id: str,
    region: str,
) -> dict[str, Any]:
    """REST API proxy integration (payload 1.0); HTTP API's payload 1.0 is the same shape
    with `version` "1.0"."""
    rest = target.kind == "rest"
    names = _title if rest else (lambda name: name)
    multi = _grouped((names(k), v) for k, v in headers)
    query = _grouped(_query(request.query))
    path = _function_path(request, target)
    if not rest:
        path = _staged(path, target.stage)
    domain, prefix = _domain(request, api_id, region, target.kind)
    body, encoded = body_field(request)
    event: dict[str, Any] = {}
    if not rest:
        event["version"] = "1.0"
    event |= {
        "resource": target.resource,
        "path": path,
        "httpMethod": request.method,
        "headers": {k: v[-1] for k, v in multi.items()},
        "multiValueHeaders": multi,
        "queryStringParameters": {k: v[-1] for k, v in query.items()} or None,
        "multiValueQueryStringParameters": query or None,
        "pathParameters": dict(target.path_parameters) if target.path_parameters else None,
        "stageVariables": None,
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": api_id,
            "domainName": domain,
            "domainPrefix": prefix,
            "extendedRequestId": request_id,
            "httpMethod": request.method,
            "identity": {
                "accessKey": None,
                "accountId": None,
                "caller": None,
                "cognitoAuthenticationProvider": None,
                "cognitoAuthenticationType": None,
                "cognitoIdentityId": None,
                "cognitoIdentityPoolId": None,
                "principalOrgId": None,
                "sourceIp": request.source_ip,
                "user": None,
                "userAgent": request.header("user-agent") or "",
                "userArn": None,
            },
            # REST: `path` has no stage, the context's path has it (the execute-api URL's)
            "path": _staged(path, target.stage) if rest else path,
            "protocol": "HTTP/1.1",
            "requestId": request_id,
            "requestTime": gateway_time(now),
            "requestTimeEpoch": int(now * 1000),
            "resourceId": None,
            "resourcePath": target.resource,
            "stage": target.stage,
        },
        "body": body,
        "isBase64Encoded": encoded,
    }
    return event


def _alb(
    request: Request, target: Target, headers: list[tuple[str, str]], region: str
) -> dict[str, Any]:
    """An ALB target group's event: the query string is not decoded."""
    raw_query = [
        (key, value) for key, _, value in (p.partition("=") for p in request.query.split("&") if p)
    ]
    body, encoded = body_field(request)
    event: dict[str, Any] = {
        "requestContext": {
            "elb": {
                "targetGroupArn": f"arn:aws:elasticloadbalancing:{region}:{ACCOUNT_ID}:"
                "targetgroup/wasmlet/0000000000000000"
            }
        },
        "httpMethod": request.method,
        "path": _function_path(request, target),
    }
    if target.kind == "alb-multi-value":
        event["multiValueQueryStringParameters"] = _grouped(raw_query)
        event["multiValueHeaders"] = _grouped(headers)
    else:
        event["queryStringParameters"] = dict(raw_query)
        event["headers"] = {k: v[-1] for k, v in _grouped(headers).items()}
    event["body"] = body or ""
    event["isBase64Encoded"] = encoded
    return event


def path_parameters(
    pattern: str, names: tuple[str, ...], path: str
) -> tuple[dict[str, str] | None, str]:
    """Match a Spin route (`/items/:id/...`) against a request path: the decoded values of
    its parameters, by the event's names (`names`, in order; the wildcard's is the last),
    and the path the wildcard matched ("" when none)."""
    segments = [s for s in pattern.split("/") if s]
    wildcard = bool(segments) and segments[-1] in ("...", "*")
    if wildcard:
        segments = segments[:-1]
    parts = path.split("/")[1:] if path.startswith("/") else path.split("/")
    values: list[str] = []
    for i, segment in enumerate(segments):
        if segment.startswith(":") and i < len(parts):
            values.append(unquote(parts[i]))
    rest = "/".join(parts[len(segments) :]) if wildcard else ""
    if wildcard and rest:
        values.append(unquote(rest))
    params = dict(zip(names, values, strict=False))
    return (params or None), ("/" + rest if wildcard else "")
