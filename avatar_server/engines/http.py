"""Shared HTTP plumbing for cloud backends: one client per engine, retries with tenacity.

Retried: connection errors, timeouts, 429 (honouring Retry-After) and 5xx. Not retried: other 4xx, which
are the caller's mistake (a 401 means the key is wrong and says so).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

T = TypeVar("T")


class CloudError(RuntimeError):
    """A cloud API refused or failed a request; the message says which and why."""


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, httpx.TransportError):  # connect errors, timeouts, dropped connections
        return True
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code == 429 or exc.response.status_code >= 500
    return False


def _wait(max_wait: float) -> Callable[[RetryCallState], float]:
    backoff = wait_exponential_jitter(initial=0.2, max=max_wait)

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, httpx.HTTPStatusError):
            retry_after = exc.response.headers.get("retry-after", "")
            if retry_after.replace(".", "", 1).isdigit():
                return min(float(retry_after), max_wait)
        return float(backoff(state))

    return wait


def with_retries(service: str, attempts: int, call: Callable[[], T], *, max_wait: float = 8.0) -> T:
    """Run `call` (which raises httpx errors) with retries; turn the final failure into a CloudError."""
    try:
        for attempt in Retrying(
            retry=retry_if_exception(_retryable),
            stop=stop_after_attempt(max(1, attempts)),
            wait=_wait(max_wait),
            reraise=True,
        ):
            with attempt:
                return call()
    except httpx.HTTPStatusError as exc:
        raise CloudError(describe(service, exc.response)) from None
    except httpx.TimeoutException:
        raise CloudError(f"{service} did not answer in time") from None
    except httpx.TransportError as exc:
        raise CloudError(f"{service} cannot be reached: {exc}") from None
    raise AssertionError("unreachable")  # pragma: no cover


def describe(service: str, response: httpx.Response) -> str:
    code = response.status_code
    detail = ""
    try:
        body = response.json()
        if isinstance(body, dict):
            err = body.get("error") or body.get("detail") or body
            detail = str(err.get("message") if isinstance(err, dict) and "message" in err else err)[:300]
    except (ValueError, httpx.ResponseNotRead):
        detail = response.text[:300]
    if code == 401:
        return f"{service} rejected the API key (401): check the key in the settings. {detail}".strip()
    if code == 429:
        return f"{service} is rate limiting (429) and retries ran out. {detail}".strip()
    return f"{service} answered {code}. {detail}".strip()


def check_status(response: httpx.Response) -> httpx.Response:
    if response.status_code >= 400:
        response.read()
        response.raise_for_status()
    return response
