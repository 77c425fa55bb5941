"""wasmlet's Azure Functions adapter for Python: runs an Azure Functions Python app (the v1
model, a folder with `__init__.py` and `function.json` per function, or the v2 model,
`function_app.py` with `app = func.FunctionApp()`) as a wasi:http component, with the real
`azure-functions` library bundled.

Vendored into each app by `wasmlet port azure-functions` (from wasmlet's azure-python
template) and bundled by componentize-py together with wasmlet's Lambda adapter, whose
wasi:http side (`wasmlet_lambda.runtime.serve`), request and response types and build step
(`deps.py`) it shares. `routes` is standard library only; `worker` is the part that uses the
azure-functions library.
"""

from .worker import App, AzureInitError, Function

__all__ = ["App", "AzureInitError", "Function"]
