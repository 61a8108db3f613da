"""Observability of the server: Prometheus metrics (metrics.py, served by http.py), OpenTelemetry traces
(tracing.py, optional: the `otel` extra) and the gRPC interceptor that feeds both at the edge (grpc.py).

Nothing here imports the core: the core calls in (a turn's span, a stage's span), the transport reports
turns and calls, and the metrics read the core's counters only when scraped.
"""
