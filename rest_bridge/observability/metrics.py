"""The bridge's Prometheus metrics: HTTP and WebSocket traffic at the edge, its gRPC calls to avatar_server.

One CollectorRegistry per app (never the global one), so several apps in one process (tests) do not collide.
Names are part of the bridge's interface (the README lists them; the Grafana dashboard uses them):

- avatar_http_requests_total{method, route, code} and avatar_http_request_seconds{method, route}: `route` is the
  route's template (/static/{kind}/{name}), never the raw path, and "other" for paths no route serves.
- avatar_bridge_websockets_active, avatar_bridge_ws_messages_total{direction="in"|"out"}.
- avatar_bridge_grpc_requests_total{method, code}: every call to avatar_server by its final status.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from starlette.routing import BaseRoute, Mount, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Fine below a second (media, health, refusals), then up to the minute a long turn may take.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
OTHER = "other"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class BridgeMetrics:
    """The bridge's metrics in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        self.http_requests = Counter(
            "avatar_http_requests",
            "HTTP requests answered by the bridge, by method, route template and status code",
            ["method", "route", "code"],
            registry=self.registry,
        )
        self.http_seconds = Histogram(
            "avatar_http_request_seconds",
            "Time from a request's arrival to the end of its answer, by method and route template",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.websockets_active = Gauge(
            "avatar_bridge_websockets_active", "WebSocket conversations open now", registry=self.registry
        )
        ws_messages = Counter(
            "avatar_bridge_ws_messages",
            "WebSocket messages: in = from browsers, out = to browsers",
            ["direction"],
            registry=self.registry,
        )
        self.ws_in = ws_messages.labels(direction="in")
        self.ws_out = ws_messages.labels(direction="out")
        self.grpc_requests = Counter(
            "avatar_bridge_grpc_requests",
            "The bridge's calls to avatar_server, by method and final gRPC status",
            ["method", "code"],
            registry=self.registry,
        )

    def exposition(self) -> bytes:
        """The Prometheus text format of everything in the registry."""
        return generate_latest(self.registry)

    def names(self) -> set[str]:
        """The sample names the registry exposes, observed or not (counters with _total, histograms with
        _bucket, _sum and _count)."""
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
        return {
            family.name + suffix for family in self.registry.collect() for suffix in suffixes.get(family.type, ("",))
        }


def route_label(scope: Scope, router: Router, status: int) -> str:
    """The template of the route that served (or would have served) this request; "other" when none does."""
    route: BaseRoute | None = scope.get("route")
    if route is None:  # answered before routing (the access guard, the body cap): find the route it was for
        route = _match(scope["path"], router.routes)
    if route is None:
        return OTHER
    if isinstance(route, Mount):  # the widget's static files at /: a miss there is an unknown path
        return OTHER if status == 404 else f"{route.path}/{{path}}"
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else OTHER


def _match(path: str, routes: Iterable[BaseRoute]) -> BaseRoute | None:
    """The first route whose pattern takes this path, whatever the method (a label, not a dispatch)."""
    for route in routes:
        nested = getattr(route, "effective_candidates", None)  # FastAPI's included routers
        if callable(nested):
            if (found := _match(path, nested())) is not None:
                return found
            continue
        regex = getattr(route, "path_regex", None)
        if not isinstance(route, Mount) and isinstance(regex, re.Pattern) and regex.match(path):
            return route
    return None


class HttpMetrics:
    """ASGI middleware (outermost): counts and times HTTP requests, counts WebSocket sessions and messages.

    The route is read after the answer, from what the router recorded, so the hot path costs a clock read,
    a wrapped send and two label look-ups.
    """

    def __init__(self, app: ASGIApp, *, metrics: BridgeMetrics, router: Router) -> None:
        self.app = app
        self.metrics = metrics
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets when the app fails before answering

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            method = scope["method"] if scope["method"] in _METHODS else OTHER
            route = route_label(scope, self.router, status)
            self.metrics.http_requests.labels(method, route, str(status)).inc()
            self.metrics.http_seconds.labels(method, route).observe(time.perf_counter() - started)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        metrics = self.metrics
        accepted = False

        async def observed_receive() -> Message:
            message = await receive()
            if message["type"] == "websocket.receive":
                metrics.ws_in.inc()
            return message

        async def observed_send(message: Message) -> None:
            nonlocal accepted
            kind = message["type"]
            if kind == "websocket.send":
                metrics.ws_out.inc()
            elif kind == "websocket.accept" and not accepted:
                accepted = True
                metrics.websockets_active.inc()
            await send(message)

        try:
            await self.app(scope, observed_receive, observed_send)
        finally:
            if accepted:
                metrics.websockets_active.dec()
