"""One error family for the whole service, mapped once per transport (gRPC status, HTTP code)."""

from __future__ import annotations

import enum


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
