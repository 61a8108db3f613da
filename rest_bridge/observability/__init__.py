"""The bridge's metrics (GET /metrics, Prometheus text) and optional OpenTelemetry tracing.

Metrics are always on: cheap counters in a registry of the app's own. Tracing is on when the standard OTEL_*
environment names an exporter or an OTLP endpoint, or AVATAR_TRACING=true (the same rule as avatar_server);
off, nothing of OpenTelemetry is imported and no tracing code runs per request.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import grpc
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from rest_bridge.guard import UNAUTHENTICATED_MESSAGE
from rest_bridge.observability.grpc_client import observing_interceptors
from rest_bridge.observability.metrics import BridgeMetrics, HttpMetrics
from rest_bridge.security import Security, bearer_token
from rest_bridge.settings import BridgeSettings

if TYPE_CHECKING:
    from rest_bridge.observability.traces import Tracing

log = logging.getLogger(__name__)
METRICS_PATH = "/metrics"
_OTEL_ON = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def tracing_wanted(settings: BridgeSettings, environ: Mapping[str, str] = os.environ) -> bool:
    """AVATAR_TRACING when set (true or false); otherwise on when OTEL_TRACES_EXPORTER names an exporter (not
    `none`) or an OTLP endpoint is set, unless OTEL_SDK_DISABLED=true. The same rule as avatar_server's."""
    if settings.tracing is not None:
        return settings.tracing
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return any(environ.get(name, "").strip() for name in _OTEL_ON)


class Observability:
    """What create_app wires in: the metrics, the tracing (None when off), the gRPC channel's interceptors."""

    def __init__(self, metrics: BridgeMetrics, tracing: Tracing | None) -> None:
        self.metrics = metrics
        self.tracing = tracing

    def grpc_interceptors(self) -> Sequence[grpc.aio.ClientInterceptor]:
        return observing_interceptors(self.metrics, self.tracing.inject if self.tracing else None)

    def close(self) -> None:
        if self.tracing is not None:
            self.tracing.shutdown()


def _start_tracing() -> Tracing | None:
    try:
        from rest_bridge.observability import traces
    except ImportError as exc:
        log.warning("Tracing is asked for but OpenTelemetry is missing (%s): pip install 'talking-avatar[otel]'", exc)
        return None
    traces.log_trace_ids()
    return traces.Tracing()


def install(app: FastAPI, settings: BridgeSettings, environ: Mapping[str, str] = os.environ) -> Observability:
    """Add the middleware (call it after every other add_middleware: it must be outermost) and GET /metrics."""
    tracing = _start_tracing() if tracing_wanted(settings, environ) else None
    obs = Observability(BridgeMetrics(), tracing)
    if tracing is not None:
        from rest_bridge.observability.traces import TracingMiddleware

        app.add_middleware(TracingMiddleware, tracing=tracing, router=app.router)
    app.add_middleware(HttpMetrics, metrics=obs.metrics, router=app.router)
    app.state.observability = obs
    app.include_router(router)
    return obs


router = APIRouter()


@router.get(METRICS_PATH, include_in_schema=False)  # documented in the README; Prometheus's text, not JSON
async def metrics(request: Request) -> Response:
    """The bridge's metrics; with AVATAR_API_KEYS set, only for a request with one of the keys."""
    security: Security = request.app.state.security
    if security.keys.enabled and not security.keys.accepts(bearer_token(request.headers.get("authorization"))):
        return JSONResponse(
            {"error": {"code": "UNAUTHENTICATED", "message": UNAUTHENTICATED_MESSAGE}},
            status_code=401,
            headers={"www-authenticate": 'Bearer realm="avatar"'},
        )
    obs: Observability = request.app.state.observability
    return Response(obs.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
