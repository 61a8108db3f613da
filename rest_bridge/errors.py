"""One JSON error shape, {"error": {"code", "message", "error_id"}}, and the gRPC status → HTTP mapping.

Every error a client gets carries an error_id; the bridge's log line with the same id holds the details
(exception text, upstream status and details, addresses) that the client is not shown.
"""

from __future__ import annotations

import logging
import math
import secrets

import grpc
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)
UNAVAILABLE_MESSAGE = "The avatar service is unavailable; try again shortly."
INTERNAL_MESSAGE = "The request failed inside the avatar service; the error id identifies it in the logs."
# Codes whose details the server writes for people (which input, which limit); others get a plain message.
_DETAILS_SHOWN = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.UNIMPLEMENTED,
}
_MAX_MESSAGE_CHARS = 500

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
        detail: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers
        self.retry_after_ms = retry_after_ms
        self.detail = detail  # for the log only
        self.error_id = new_error_id()


def new_error_id() -> str:
    """A correlation id: 12 hex digits, in the client's error and in the bridge's log line."""
    return secrets.token_hex(6)


def log_error(
    error_id: str, status: int | str, code: str, message: str, detail: str | None = None, *, failure: bool = False
) -> None:
    """The log line that goes with an error answer; failures (5xx) at WARNING, refusals at INFO."""
    level = logging.WARNING if failure or (isinstance(status, int) and status >= 500) else logging.INFO
    log.log(level, "error_id=%s %s %s: %s%s", error_id, status, code, message, f" [{detail}]" if detail else "")


def error_response(
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
    retry_after_ms: int | None = None,
    *,
    error_id: str | None = None,
    detail: str | None = None,
) -> JSONResponse:
    """The JSON error answer, logged with its error id."""
    error_id = error_id or new_error_id()
    log_error(error_id, status, code, message, detail)
    error: dict[str, str | int] = {"code": code, "message": message, "error_id": error_id}
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
    detail = f"upstream {code.name}: {exc.details()}; {exc.debug_error_string()}"
    if code in _DETAILS_SHOWN:
        message = (exc.details() or code.name)[:_MAX_MESSAGE_CHARS]
    elif code == grpc.StatusCode.UNAVAILABLE:
        # gRPC core's details name addresses ("failed to connect to all addresses; ... ipv4:10.0.0.5:50051").
        return BridgeError(503, code.name, UNAVAILABLE_MESSAGE, detail=detail)
    else:
        message = INTERNAL_MESSAGE
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        retry_ms = retry_after_ms(exc)
        if retry_ms is None:
            return BridgeError(413, "PAYLOAD_TOO_LARGE", message, detail=detail)
        # Retry-After takes whole seconds; round up (and to at least 1) so clients never come back early.
        headers = {"Retry-After": str(max(1, math.ceil(retry_ms / 1000)))}
        return BridgeError(429, code.name, message, headers=headers, retry_after_ms=retry_ms, detail=detail)
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        # The bridge's own key (AVATAR_GRPC_API_KEY) is missing or wrong: the operator's setup, not the caller's.
        return BridgeError(502, "BAD_GATEWAY", "The bridge is not authorized by the avatar service.", detail=detail)
    return BridgeError(HTTP_FROM_GRPC.get(code, 502), code.name, message, detail=detail)


async def handle_bridge_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, BridgeError)
    return error_response(
        exc.status, exc.code, exc.message, exc.headers, exc.retry_after_ms, error_id=exc.error_id, detail=exc.detail
    )


async def handle_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return error_response(exc.status_code, HTTP_CODE_NAMES.get(exc.status_code, "HTTP_ERROR"), str(exc.detail))


async def handle_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    parts = [f"{'.'.join(str(p) for p in e['loc'] if p != 'body')}: {e['msg']}" for e in exc.errors()]
    return error_response(422, "INVALID_ARGUMENT", "; ".join(parts) or "invalid request")


async def handle_unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    """Last resort (Starlette's ServerErrorMiddleware): JSON, never plain text. rest_bridge.catch_all is first."""
    error_id = new_error_id()
    log.error("error_id=%s unhandled %s on %s", error_id, type(exc).__name__, request.url.path, exc_info=exc)
    return error_response(500, "INTERNAL", BRIDGE_INTERNAL_MESSAGE, error_id=error_id)


BRIDGE_INTERNAL_MESSAGE = "The bridge failed to answer; the error id identifies it in its log."
