"""Client interceptors on the bridge's channel to avatar_server: each call counted by its final status and, when
tracing is on, the W3C trace context (traceparent, tracestate) added to its metadata, so that the server's
spans for the call are children of the bridge's span for the request that made it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import grpc

from rest_bridge.observability.metrics import BridgeMetrics

Inject = Callable[[dict[str, str]], None]  # writes the current trace context into a carrier


class CallObserver:
    """What every interceptor does before and after a call; holds the tasks that wait for calls' statuses."""

    def __init__(self, metrics: BridgeMetrics, inject: Inject | None) -> None:
        self.metrics = metrics
        self.inject = inject
        self._watching: set[asyncio.Task[None]] = set()

    def details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        if self.inject is None:
            return details
        carrier: dict[str, str] = {}
        self.inject(carrier)
        if not carrier:  # no span is current (a call made outside any request)
            return details
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        for key, value in carrier.items():
            metadata[key] = value
        return grpc.aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )

    def watch(self, details: grpc.aio.ClientCallDetails, call: Any) -> Any:
        method = details.method.decode() if isinstance(details.method, bytes) else str(details.method)
        task = asyncio.get_running_loop().create_task(self._count(method, call))
        self._watching.add(task)
        task.add_done_callback(self._watching.discard)
        return call

    async def _count(self, method: str, call: Any) -> None:
        try:
            code: grpc.StatusCode = await call.code()
            name = code.name
        except asyncio.CancelledError:
            name = "CANCELLED"
        self.metrics.grpc_requests.labels(method, name).inc()


class _UnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]  # grpc stubs leave it Any
    def __init__(self, observer: CallObserver) -> None:
        self._o = observer

    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return self._o.watch(client_call_details, await continuation(self._o.details(client_call_details), request))


class _UnaryStream(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]  # grpc stubs leave it Any
    def __init__(self, observer: CallObserver) -> None:
        self._o = observer

    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return self._o.watch(client_call_details, await continuation(self._o.details(client_call_details), request))


class _StreamUnary(grpc.aio.StreamUnaryClientInterceptor):  # type: ignore[misc]  # grpc stubs leave it Any
    def __init__(self, observer: CallObserver) -> None:
        self._o = observer

    async def intercept_stream_unary(self, continuation: Any, client_call_details: Any, request_iterator: Any) -> Any:
        call = await continuation(self._o.details(client_call_details), request_iterator)
        return self._o.watch(client_call_details, call)


class _StreamStream(grpc.aio.StreamStreamClientInterceptor):  # type: ignore[misc]  # grpc stubs leave it Any
    def __init__(self, observer: CallObserver) -> None:
        self._o = observer

    async def intercept_stream_stream(self, continuation: Any, client_call_details: Any, request_iterator: Any) -> Any:
        call = await continuation(self._o.details(client_call_details), request_iterator)
        return self._o.watch(client_call_details, call)


def observing_interceptors(metrics: BridgeMetrics, inject: Inject | None) -> Sequence[grpc.aio.ClientInterceptor]:
    """One interceptor per call shape, sharing one observer."""
    observer = CallObserver(metrics, inject)
    return [_UnaryUnary(observer), _UnaryStream(observer), _StreamUnary(observer), _StreamStream(observer)]
