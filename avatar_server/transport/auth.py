"""API keys for the gRPC server: `authorization: Bearer <key>` metadata, checked by a server interceptor.

Keys are compared as sha256 digests with `hmac.compare_digest` (a `sha256:<hex>` entry is the digest itself),
so the server never needs the plain key when the operator gives only its hash. A key is never logged: at
most its key id, the first 8 hex digits of its sha256.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import grpc
from pydantic import SecretStr

from avatar_server.session_ids import bearer_token, caller_id

__all__ = ["ApiKeyInterceptor", "KeyRing", "bearer_token", "caller_id", "key_id"]

log = logging.getLogger(__name__)

MISSING_KEY = "Missing API key: send 'authorization: Bearer <key>'"
INVALID_KEY = "Invalid API key"
HEALTH_PREFIX = "/grpc.health.v1.Health/"

Metadata = Iterable[tuple[str, str | bytes]] | None


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def key_id(token: str) -> str:
    """What the log may say about a key: the first 8 hex digits of its sha256."""
    return _digest(token).hex()[:8]


class KeyRing:
    """The accepted keys, held as sha256 digests."""

    def __init__(self, entries: Sequence[SecretStr | str]) -> None:
        digests = []
        for entry in entries:
            text = entry.get_secret_value() if isinstance(entry, SecretStr) else entry
            if text.startswith("sha256:"):
                digests.append(bytes.fromhex(text[len("sha256:") :]))
            elif text:
                digests.append(_digest(text))
        self._digests = tuple(digests)

    def __bool__(self) -> bool:
        return bool(self._digests)

    def __len__(self) -> int:
        return len(self._digests)

    def __repr__(self) -> str:
        return f"KeyRing({len(self._digests)} keys)"

    def accepts(self, token: str | None) -> bool:
        """Whether `token` is one of the keys (every entry is compared, in constant time each)."""
        if token is None:
            return False
        presented = _digest(token)
        matched = False
        for digest in self._digests:
            matched |= hmac.compare_digest(presented, digest)
        return matched


def _denial(handler: grpc.RpcMethodHandler, message: str) -> grpc.RpcMethodHandler:
    """A handler of the same kind as `handler` that ends the call with UNAUTHENTICATED."""

    async def deny(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    kinds: dict[tuple[bool, bool], Callable[..., grpc.RpcMethodHandler]] = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }
    make = kinds[(bool(handler.request_streaming), bool(handler.response_streaming))]
    return make(
        deny, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
    )


class ApiKeyInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Every call but the health service's needs an accepted key; others end with UNAUTHENTICATED."""

    def __init__(self, keys: KeyRing, open_prefixes: tuple[str, ...] = (HEALTH_PREFIX,)) -> None:
        if not keys:
            raise ValueError("ApiKeyInterceptor needs at least one key")
        self._keys = keys
        self._open = open_prefixes

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method: str = handler_call_details.method
        handler = await continuation(handler_call_details)
        if handler is None or method.startswith(self._open):
            return handler
        token = bearer_token(handler_call_details.invocation_metadata)
        if self._keys.accepts(token):
            return handler
        if token is None:
            log.info("refused %s: no API key", method)
            return _denial(handler, MISSING_KEY)
        log.warning("refused %s: invalid API key (key id %s)", method, key_id(token))
        return _denial(handler, INVALID_KEY)
