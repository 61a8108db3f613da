"""Channels to the avatar server with its API key and TLS: `make_channel` (blocking) and `make_aio_channel`.

TLS is used when a CA file is given (the server's CA; with a client certificate and key: mutual TLS). The key
travels as `authorization: Bearer <key>` metadata on every call, over TLS or (on loopback) plaintext.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc

_MAX_MESSAGE = 64 * 1024 * 1024
_SERVICE = "avatar.v1.AvatarService"
# Several replicas ("dns:///avatar-engine:7860" resolving to each, or "ipv4:10.0.0.1:7860,10.0.0.2:7860"):
# round_robin over the replicas whose gRPC health says SERVING (a draining or stalled one gets no new calls);
# a unary call that fails UNAVAILABLE (its replica died or refused it before answering: the turn never
# started) is tried again, on another replica. Converse, a stream, is not: open a new one with the last
# session_id (see AsyncAvatarClient.converse). With one address none of this changes anything.
SERVICE_CONFIG: dict[str, Any] = {
    "loadBalancingConfig": [{"round_robin": {}}],
    "healthCheckConfig": {"serviceName": _SERVICE},
    "methodConfig": [
        {
            "name": [{"service": _SERVICE, "method": m} for m in ("Interact", "GetCapabilities", "GetAvatarFace")],
            "retryPolicy": {
                "maxAttempts": 4,
                "initialBackoff": "0.1s",
                "maxBackoff": "1s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ],
}
DEFAULT_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.max_receive_message_length", _MAX_MESSAGE),
    ("grpc.max_send_message_length", _MAX_MESSAGE),
    ("grpc.service_config", json.dumps(SERVICE_CONFIG)),
    ("grpc.enable_retries", 1),
    ("grpc.per_rpc_retry_buffer_size", _MAX_MESSAGE),  # a request up to this size can be sent again
    ("grpc.max_reconnect_backoff_ms", 5000),  # a restarted replica rejoins within seconds
)
# For health questions (AvatarClient.health): the same, without client-side health checking, so the
# answer of a replica that is not SERVING can be read.
HEALTH_OPTIONS: tuple[tuple[str, Any], ...] = tuple(
    (k, json.dumps({"loadBalancingConfig": SERVICE_CONFIG["loadBalancingConfig"]}) if k == "grpc.service_config" else v)
    for k, v in DEFAULT_OPTIONS
)
PathLike = str | os.PathLike[str]


def _read(path: PathLike, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read the {what} {path}: {exc.strerror or exc}") from None


def channel_credentials(
    ca_file: PathLike | None = None, cert_file: PathLike | None = None, key_file: PathLike | None = None
) -> grpc.ChannelCredentials | None:
    """TLS credentials (None: plaintext). A client certificate needs its key and the CA, and the other way round."""
    if (cert_file is None) != (key_file is None):
        raise ValueError("mutual TLS needs both a client certificate and its key")
    if ca_file is None:
        if cert_file is not None:
            raise ValueError("a client certificate needs the server's CA file too (TLS)")
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=_read(ca_file, "CA file"),
        private_key=None if key_file is None else _read(key_file, "client key file"),
        certificate_chain=None if cert_file is None else _read(cert_file, "client certificate file"),
    )


def secure_options(
    server_name: str | None = None, options: Sequence[tuple[str, Any]] = DEFAULT_OPTIONS
) -> list[tuple[str, Any]]:
    """Channel options; `server_name` checks the server's certificate against that name instead of the
    target's host (e.g. `--target 127.0.0.1:7860` inside a container whose certificate names its service)."""
    out = list(options)
    if server_name:
        out.append(("grpc.ssl_target_name_override", server_name))
    return out


def _with_key(details: Any, api_key: str) -> Any:
    metadata = [(k, v) for k, v in (details.metadata or ()) if k.lower() != "authorization"]
    metadata.append(("authorization", f"Bearer {api_key}"))
    return details._replace(metadata=tuple(metadata))


class _SyncKey(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[misc]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[misc]
    grpc.StreamUnaryClientInterceptor,  # type: ignore[misc]
    grpc.StreamStreamClientInterceptor,  # type: ignore[misc]
):
    def __init__(self, api_key: str) -> None:
        self._key = api_key

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(_with_key(details, self._key), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(_with_key(details, self._key), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
        return continuation(_with_key(details, self._key), request_iterator)

    def intercept_stream_stream(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
        return continuation(_with_key(details, self._key), request_iterator)


class _AioKeyBase:
    def __init__(self, api_key: str) -> None:
        self._key = api_key


class _AioUnaryUnary(_AioKeyBase, grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_with_key(details, self._key), request)


class _AioUnaryStream(_AioKeyBase, grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_with_key(details, self._key), request)


class _AioStreamUnary(_AioKeyBase, grpc.aio.StreamUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_stream_unary(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
        return await continuation(_with_key(details, self._key), request_iterator)


class _AioStreamStream(_AioKeyBase, grpc.aio.StreamStreamClientInterceptor):  # type: ignore[misc]
    async def intercept_stream_stream(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
        return await continuation(_with_key(details, self._key), request_iterator)


def make_channel(
    target: str,
    *,
    api_key: str | None = None,
    ca_file: PathLike | None = None,
    cert_file: PathLike | None = None,
    key_file: PathLike | None = None,
    server_name: str | None = None,
    options: Sequence[tuple[str, Any]] = DEFAULT_OPTIONS,
) -> grpc.Channel:
    """A blocking channel: TLS when `ca_file` is given, `authorization: Bearer <api_key>` on every call."""
    credentials = channel_credentials(ca_file, cert_file, key_file)
    opts = secure_options(server_name, options)
    channel = (
        grpc.insecure_channel(target, options=opts)
        if credentials is None
        else grpc.secure_channel(target, credentials, options=opts)
    )
    return grpc.intercept_channel(channel, _SyncKey(api_key)) if api_key else channel


def make_aio_channel(
    target: str,
    *,
    api_key: str | None = None,
    ca_file: PathLike | None = None,
    cert_file: PathLike | None = None,
    key_file: PathLike | None = None,
    server_name: str | None = None,
    options: Sequence[tuple[str, Any]] = DEFAULT_OPTIONS,
) -> grpc.aio.Channel:
    """The asyncio channel, as `make_channel`."""
    credentials = channel_credentials(ca_file, cert_file, key_file)
    opts = secure_options(server_name, options)
    interceptors = (
        [_AioUnaryUnary(api_key), _AioUnaryStream(api_key), _AioStreamUnary(api_key), _AioStreamStream(api_key)]
        if api_key
        else None
    )
    if credentials is None:
        return grpc.aio.insecure_channel(target, options=opts, interceptors=interceptors)
    return grpc.aio.secure_channel(target, credentials, options=opts, interceptors=interceptors)
