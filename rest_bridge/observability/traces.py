"""OpenTelemetry tracing for the bridge; imported only when tracing is on (the `otel` extra).

A SERVER span per HTTP request and per WebSocket session, child of an incoming `traceparent` (a browser or a
proxy may send one); its context goes to avatar_server in the gRPC metadata of the calls made under it.
The exporter follows the standard OTEL_* environment (OTLP over HTTP by default, `console` for stdout).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.routing import Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rest_bridge.observability.metrics import route_label

log = logging.getLogger(__name__)
SERVICE = "avatar-bridge"
_PROPAGATED = (b"traceparent", b"tracestate")


def _exporter(environ: Mapping[str, str]) -> SpanExporter:
    choice = environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")[0].strip().lower()
    if choice == "console":
        return ConsoleSpanExporter()
    if choice not in ("otlp", ""):
        log.warning("OTEL_TRACES_EXPORTER=%s is not supported by the bridge; exporting with OTLP/HTTP", choice)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()  # endpoint, headers and timeout from OTEL_EXPORTER_OTLP_*


class Tracing:
    """The bridge's own tracer provider (not the global one: several apps in one process stay apart)."""

    def __init__(self, exporter: SpanExporter | None = None, environ: Mapping[str, str] = os.environ) -> None:
        attributes = {} if environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: SERVICE}
        self.provider = TracerProvider(resource=Resource.create(attributes))
        self.provider.add_span_processor(BatchSpanProcessor(exporter or _exporter(environ)))
        self.tracer = self.provider.get_tracer("rest_bridge")
        self.propagator = TraceContextTextMapPropagator()

    def inject(self, carrier: dict[str, str]) -> None:
        """The current span's context as `traceparent` (and `tracestate`) entries."""
        self.propagator.inject(carrier)

    def shutdown(self) -> None:
        self.provider.shutdown()  # exports what is still buffered


class TracingMiddleware:
    """ASGI middleware: the request's (or WebSocket session's) span is current while the app serves it."""

    def __init__(self, app: ASGIApp, *, tracing: Tracing, router: Router) -> None:
        self.app = app
        self.tracing = tracing
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"] if k in _PROPAGATED}
        parent = self.tracing.propagator.extract(carrier) if carrier else None
        verb = scope["method"] if kind == "http" else "WS"
        status = 500 if kind == "http" else 0
        attributes: dict[str, Any] = {"url.path": scope["path"], "http.request.method": scope.get("method", "GET")}

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "websocket.close":
                status = int(message.get("code", 1000))
            elif message["type"] == "websocket.accept":
                status = 101
            await send(message)

        tracer = self.tracing.tracer
        with tracer.start_as_current_span(
            verb, context=parent, kind=SpanKind.SERVER, attributes=attributes, set_status_on_exception=False
        ) as span:
            try:
                await self.app(scope, receive, observed_send)
            finally:
                route = route_label(scope, self.router, status)
                span.update_name(f"{verb} {route}")
                span.set_attribute("http.route", route)
                if kind == "http":
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        span.set_status(Status(StatusCode.ERROR))
                elif status:
                    span.set_attribute("websocket.close_code", status)


class _TraceIdRecords:
    """A log record factory: while a span is current, the record's message ends with its trace id."""

    def __init__(self, previous: Any) -> None:
        self.previous = previous

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record: logging.LogRecord = self.previous(*args, **kwargs)
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            trace_id = format(context.trace_id, "032x")
            record.trace_id = trace_id
            if isinstance(record.msg, str):
                record.msg = f"{record.msg} trace_id={trace_id}"
        return record


def log_trace_ids() -> None:
    """Install the factory once per process."""
    current = logging.getLogRecordFactory()
    if not isinstance(current, _TraceIdRecords):
        logging.setLogRecordFactory(_TraceIdRecords(current))
