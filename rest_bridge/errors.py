"""One JSON error shape, {"error": {"code", "message"}}, and the gRPC status → HTTP mapping."""

from __future__ import annotations

import math

import grpc
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

HTTP_FROM_GRPC = {
    grpc.StatusCode.INVALID_ARGUMENT: 422,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
}
HTTP_CODE_NAMES = {
    400: "BAD_REQUEST",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    416: "RANGE_NOT_SATISFIABLE",
    422: "INVALID_ARGUMENT",
    503: "UNAVAILABLE",
}


# The server marks a load refusal (come back later) with this trailing metadata; a size-cap refusal,
# the same RESOURCE_EXHAUSTED status, goes without it (retrying the same input would not help).
RETRY_AFTER_MS_KEY = "retry-after-ms"


class BridgeError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        retry_after_ms: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers
        self.retry_after_ms = retry_after_ms


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, retry_after_ms: int | None = None
) -> JSONResponse:
    error: dict[str, str | int] = {"code": code, "message": message}
    if retry_after_ms is not None:
        error["retry_after_ms"] = retry_after_ms
    return JSONResponse({"error": error}, status_code=status, headers=headers)


def retry_after_ms(exc: grpc.aio.AioRpcError) -> int | None:
    """The server's back-off hint in milliseconds, or None when the refusal carries none."""
    for key, value in exc.trailing_metadata() or ():
        if key == RETRY_AFTER_MS_KEY:
            try:
                return max(0, int(value))
            except (TypeError, ValueError):
                return 1000  # still a load refusal; a garbled hint should not turn it into a size refusal
    return None


def from_grpc(exc: grpc.aio.AioRpcError) -> BridgeError:
    code = exc.code()
    message = exc.details() or code.name
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        retry_ms = retry_after_ms(exc)
        if retry_ms is None:
            return BridgeError(413, "PAYLOAD_TOO_LARGE", message)
        # Retry-After takes whole seconds; round up (and to at least 1) so clients never come back early.
        headers = {"Retry-After": str(max(1, math.ceil(retry_ms / 1000)))}
        return BridgeError(429, code.name, message, headers=headers, retry_after_ms=retry_ms)
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        # The bridge's own key (AVATAR_GRPC_API_KEY) is missing or wrong: the operator's setup, not the caller's.
        return BridgeError(502, "BAD_GATEWAY", "The bridge is not authorized by the avatar service.")
    if code == grpc.StatusCode.UNAVAILABLE:
        message = f"The avatar service is unavailable: {message}"
    return BridgeError(HTTP_FROM_GRPC.get(code, 502), code.name, message)


async def handle_bridge_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, BridgeError)
    return error_response(exc.status, exc.code, exc.message, exc.headers, exc.retry_after_ms)


async def handle_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return error_response(exc.status_code, HTTP_CODE_NAMES.get(exc.status_code, "HTTP_ERROR"), str(exc.detail))


async def handle_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    parts = [f"{'.'.join(str(p) for p in e['loc'] if p != 'body')}: {e['msg']}" for e in exc.errors()]
    return error_response(422, "INVALID_ARGUMENT", "; ".join(parts) or "invalid request")
