"""The bridge's channel to avatar_server: TLS when AVATAR_GRPC_CA_FILE is set, its key on every call.

The key goes as `authorization: Bearer <key>` metadata, added by a client interceptor rather than call
credentials: gRPC attaches call credentials only to secure channels, and the bridge often talks plaintext to a
server on loopback or a private network.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import grpc

from rest_bridge.security import SecurityConfigError, is_loopback
from rest_bridge.settings import BridgeSettings

log = logging.getLogger(__name__)

CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_receive_message_length", 64 << 20),
    ("grpc.max_send_message_length", 64 << 20),
    ("grpc.lb_policy_name", "round_robin"),  # several avatar_server replicas behind one DNS name
]


def _with_key(details: grpc.aio.ClientCallDetails, key: str) -> grpc.aio.ClientCallDetails:
    metadata = grpc.aio.Metadata(*(details.metadata or ()))
    metadata["authorization"] = f"Bearer {key}"
    return grpc.aio.ClientCallDetails(
        details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
    )


class _UnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]  # grpc stubs leave it Any
    def __init__(self, key: str) -> None:
        self._key = key

    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await continuation(_with_key(client_call_details, self._key), request)


class _UnaryStream(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]  # grpc stubs leave it Any
    def __init__(self, key: str) -> None:
        self._key = key

    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await continuation(_with_key(client_call_details, self._key), request)


class _StreamUnary(grpc.aio.StreamUnaryClientInterceptor):  # type: ignore[misc]  # grpc stubs leave it Any
    def __init__(self, key: str) -> None:
        self._key = key

    async def intercept_stream_unary(self, continuation: Any, client_call_details: Any, request_iterator: Any) -> Any:
        return await continuation(_with_key(client_call_details, self._key), request_iterator)


class _StreamStream(grpc.aio.StreamStreamClientInterceptor):  # type: ignore[misc]  # grpc stubs leave it Any
    def __init__(self, key: str) -> None:
        self._key = key

    async def intercept_stream_stream(self, continuation: Any, client_call_details: Any, request_iterator: Any) -> Any:
        return await continuation(_with_key(client_call_details, self._key), request_iterator)


def key_interceptors(key: str) -> Sequence[grpc.aio.ClientInterceptor]:
    return [_UnaryUnary(key), _UnaryStream(key), _StreamUnary(key), _StreamStream(key)]


def read_ca(settings: BridgeSettings) -> bytes | None:
    """The CA bundle of AVATAR_GRPC_CA_FILE (read at startup, so a wrong path stops the bridge with one line)."""
    if settings.grpc_ca_file is None:
        return None
    try:
        return settings.grpc_ca_file.read_bytes()
    except OSError as exc:
        raise SecurityConfigError(f"AVATAR_GRPC_CA_FILE: cannot read {settings.grpc_ca_file}: {exc.strerror}") from None


def open_channel(settings: BridgeSettings, ca: bytes | None) -> grpc.aio.Channel:
    """A grpc.aio channel to settings.grpc_target: TLS trusting `ca` when given, the bridge's key on every call."""
    key = settings.grpc_api_key.get_secret_value().strip()
    interceptors = key_interceptors(key) if key else None
    if ca is not None:
        credentials = grpc.ssl_channel_credentials(root_certificates=ca)
        return grpc.aio.secure_channel(settings.grpc_target, credentials, CHANNEL_OPTIONS, interceptors=interceptors)
    host = settings.grpc_target.rsplit(":", 1)[0].removeprefix("dns:///").removeprefix("ipv4:")
    if key and not is_loopback(host):
        log.warning("The bridge's key for %s travels in plaintext; set AVATAR_GRPC_CA_FILE for TLS", host)
    return grpc.aio.insecure_channel(settings.grpc_target, CHANNEL_OPTIONS, interceptors=interceptors)
