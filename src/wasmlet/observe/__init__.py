"""Seeing what the apps do: Prometheus metrics (`metrics`) and the endpoint that serves them
(`endpoint`). A base layer: it imports only the standard library, `errors` and (once metrics
are switched on) prometheus-client, so every layer above may report to it.

Off by default, and then free: nothing here imports prometheus-client, and the request path
checks one attribute that is None. `docs/observability.md` lists every metric.
"""
