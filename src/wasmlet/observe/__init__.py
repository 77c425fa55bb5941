"""Seeing what the apps do: Prometheus metrics (`metrics`), the endpoint that serves them
(`endpoint`) and, beside them, the status page (`status`: apps and guest failures pushed in
by the layers above; `status_page`: the page and its JSON); OpenTelemetry traces and OTLP
metrics (`tracing`: set up from the OTEL_* variables; `spans`: what the request path calls)
and the request context of JSON log lines (`context`). A base layer: it imports only the
standard library, `errors` and (once switched on) prometheus-client or OpenTelemetry, so
every layer above may report to it.

Off by default, and then free: nothing here imports prometheus-client or OpenTelemetry, and
the request path checks one attribute that is None. `docs/observability.md` lists every
metric and span.
"""
