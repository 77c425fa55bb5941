"""wasmlet's Lambda adapter: runs an unchanged AWS Lambda Python handler
(`def handler(event, context)`) as a wasi:http component.

Vendored into each app by `wasmlet port aws-sam` and `wasmlet new lambda-python` (from
wasmlet's lambda-python template) and bundled into the component by componentize-py. The
component's entry module (`wasmlet_entry.py`) describes the functions and routes with
`App`, `Function` and `Route`, and makes its `IncomingHandler` with
`wasmlet_lambda.runtime.serve`. `events`, `responses`, `context` and `app` use only the
standard library; `runtime` is the part on the Spin Python SDK (wasi:http).
"""

from .app import App, Function, LambdaInitError, Route

__all__ = ["App", "Function", "LambdaInitError", "Route"]
