"""The gRPC edge: every call counted by method and status code and timed, and, with tracing on, run under the
trace context its metadata carries (W3C traceparent), so the caller's span is the parent of the turn's.

Put it first among the server's interceptors: calls refused by the key check are counted too.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from avatar_server.observability import tracing
from avatar_server.observability.metrics import Metrics


def _code_name(context: grpc.aio.ServicerContext[Any, Any], default: str) -> str:
    code: object = context.code()
    if isinstance(code, grpc.StatusCode):
        return str(code.name)
    if isinstance(code, int):  # grpc.aio may keep the raw number
        for status in grpc.StatusCode:
            if status.value[0] == code:
                return str(status.name)
    return default


class ObservabilityInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:  # an unknown method: gRPC answers UNIMPLEMENTED (not counted: names are unbounded)
            return handler
        method: str = handler_call_details.method
        parent = tracing.extract(handler_call_details.invocation_metadata)
        for kind in ("unary_unary", "unary_stream", "stream_unary", "stream_stream"):
            behavior = getattr(handler, kind)
            if behavior is not None:
                return handler._replace(**{kind: self._wrap(behavior, method, parent)})
        return handler

    def _wrap(self, behavior: Callable[..., Any], method: str, parent: Any) -> Callable[..., Any]:
        done = self.metrics.call_ended

        if inspect.isasyncgenfunction(behavior):  # a streaming response written by yielding

            async def stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
                start, code = time.perf_counter(), "OK"
                try:
                    with tracing.attached(parent):
                        async for response in behavior(request, context):
                            yield response
                    code = _code_name(context, "OK")
                except asyncio.CancelledError:
                    code = "CANCELLED"
                    raise
                except grpc.aio.AbortError:
                    code = _code_name(context, "UNKNOWN")
                    raise
                except Exception:
                    code = "UNKNOWN"
                    raise
                finally:
                    done(method, code, time.perf_counter() - start)

            return stream

        async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            start, code = time.perf_counter(), "OK"
            try:
                with tracing.attached(parent):
                    result = await behavior(request, context)
                code = _code_name(context, "OK")
                return result
            except asyncio.CancelledError:
                code = "CANCELLED"
                raise
            except grpc.aio.AbortError:
                code = _code_name(context, "UNKNOWN")
                raise
            except Exception:
                code = "UNKNOWN"
                raise
            finally:
                done(method, code, time.perf_counter() - start)

        return call
