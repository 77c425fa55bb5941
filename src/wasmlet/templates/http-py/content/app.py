"""{{project-name}}: an HTTP component written with the Spin Python SDK.

`handle_request` gets each request (method, path and query, headers, body) and returns the
response. The SDK also reaches Spin's host APIs: `spin_sdk.key_value`, `spin_sdk.variables`,
`spin_sdk.http.send` (outbound HTTP), `spin_sdk.sqlite`, `spin_sdk.redis`, …
"""

from spin_sdk import http
from spin_sdk.http import Request, Response


class IncomingHandler(http.IncomingHandler):
    def handle_request(self, request: Request) -> Response:
        body = f"Hello from {{project-name}}!\n{request.method} {request.uri}\n"
        return Response(200, {"content-type": "text/plain"}, body.encode("utf-8"))
