"""One error family for the whole service, mapped once per transport (gRPC status, HTTP code)."""

from __future__ import annotations

import enum
import logging
import secrets


class ErrorCode(enum.Enum):
    """Transport-neutral error kinds; names follow gRPC status codes."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    NOT_FOUND = "NOT_FOUND"
    UNAVAILABLE = "UNAVAILABLE"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    INTERNAL = "INTERNAL"


class AvatarError(Exception):
    """An error with a code and a message meant for a person."""

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, message: str, code: ErrorCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class InvalidInput(AvatarError):
    """The request cannot be served as sent."""

    code = ErrorCode.INVALID_ARGUMENT


class TooLarge(AvatarError):
    """The request is over a configured cap (a payload limit: no retry will help, so no retry hint)."""

    code = ErrorCode.RESOURCE_EXHAUSTED


class Overloaded(AvatarError):
    """The server is at a configured load limit now; the same request may succeed after `retry_after_ms`."""

    code = ErrorCode.RESOURCE_EXHAUSTED

    def __init__(self, message: str, retry_after_ms: int) -> None:
        super().__init__(message)
        self.retry_after_ms = max(1, int(retry_after_ms))


class StageTimeout(AvatarError):
    """A stage of a turn took longer than its configured limit."""

    code = ErrorCode.DEADLINE_EXCEEDED


class ShuttingDown(AvatarError):
    """The server is draining for shutdown and takes no new work."""

    code = ErrorCode.UNAVAILABLE


class EngineFailure(AvatarError):
    """An engine failed while serving a valid request."""

    code = ErrorCode.INTERNAL


_log = logging.getLogger("avatar_server.errors")


def new_error_id() -> str:
    """A correlation id: the client's message and the log line that holds the details share it."""
    return secrets.token_hex(6)


def internal_message(error_id: str) -> str:
    return f"The server failed to process this turn (error id {error_id})."


def for_client(exc: BaseException) -> AvatarError:
    """What a client may be told about `exc`. Errors meant for a person (bad input, limits, timeouts, load)
    go out as they are; anything else (an engine's crash, a bug, upstream bodies, subprocess output,
    addresses) goes to the log with its traceback under a fresh error id, and the client gets only that id."""
    if isinstance(exc, AvatarError) and exc.code is not ErrorCode.INTERNAL:
        return exc
    error_id = new_error_id()
    detail = exc.message if isinstance(exc, AvatarError) else f"{type(exc).__name__}: {exc}"
    cause = exc.__cause__ or exc.__context__ or exc
    _log.error("error id %s: %s", error_id, detail, exc_info=(type(cause), cause, cause.__traceback__))
    return AvatarError(internal_message(error_id), ErrorCode.INTERNAL)
