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
from avatar_client.channel import DEFAULT_OPTIONS

from rest_bridge.security import SecurityConfigError, is_loopback
from rest_bridge.settings import BridgeSettings

log = logging.getLogger(__name__)

# Several replicas (AVATAR_GRPC_TARGET=dns:///name or ipv4:a:p,b:q): the Python client's channel options, so
# both spread calls the same way: round robin over the replicas whose gRPC health says SERVING, and a unary
# call that fails UNAVAILABLE (the turn never started) tried again on another. Converse is a stream and is
# never retried: the WebSocket gets an error event and the widget reconnects.
CHANNEL_OPTIONS: list[tuple[str, Any]] = list(DEFAULT_OPTIONS)


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


def open_channel(
    settings: BridgeSettings, ca: bytes | None, observers: Sequence[grpc.aio.ClientInterceptor] = ()
) -> grpc.aio.Channel:
    """A grpc.aio channel to settings.grpc_target: TLS trusting `ca` when given, the bridge's key on every call.

    `observers`: further interceptors (rest_bridge.observability: the calls' metrics and, when tracing is on,
    the W3C `traceparent` in each call's metadata)."""
    key = settings.grpc_api_key.get_secret_value().strip()
    interceptors = [*(key_interceptors(key) if key else ()), *observers] or None
    if ca is not None:
        credentials = grpc.ssl_channel_credentials(root_certificates=ca)
        return grpc.aio.secure_channel(settings.grpc_target, credentials, CHANNEL_OPTIONS, interceptors=interceptors)
    addresses = settings.grpc_target.removeprefix("dns:///").removeprefix("ipv4:").split(",")  # a list: replicas
    hosts = [address.rsplit(":", 1)[0] for address in addresses]
    if key and not all(is_loopback(host) for host in hosts):
        log.warning("The bridge's key for %s travels in plaintext; set AVATAR_GRPC_CA_FILE for TLS", ",".join(hosts))
    return grpc.aio.insecure_channel(settings.grpc_target, CHANNEL_OPTIONS, interceptors=interceptors)
