"""Sync and async clients for avatar.v1.AvatarService."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType

import grpc
from avatar.v1 import avatar_pb2 as pb
from avatar.v1 import avatar_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from avatar_client.channel import HEALTH_OPTIONS, PathLike, make_aio_channel, make_channel

SERVICE = "avatar.v1.AvatarService"
_MIME_BY_SUFFIX = {".wav": "audio/wav", ".webm": "audio/webm", ".ogg": "audio/ogg", ".opus": "audio/ogg"}


def mime_type_for(path: Path, pcm_rate: int | None = None) -> str:
    """The mime type to send for an audio file (raw .pcm needs its rate)."""
    if path.suffix.lower() in (".pcm", ".raw"):
        if not pcm_rate:
            raise ValueError("raw PCM needs a sample rate")
        return f"audio/pcm;rate={pcm_rate}"
    try:
        return _MIME_BY_SUFFIX[path.suffix.lower()]
    except KeyError:
        raise ValueError(f"unknown audio file type {path.suffix!r}; use .wav, .webm, .ogg or .pcm") from None


def build_request(
    *,
    text: str | None = None,
    audio: bytes | None = None,
    mime_type: str = "audio/wav",
    session_id: str = "",
    avatar_id: str = "",
    language: str = "",
    voice: str = "",
    want_audio: bool = True,
    want_video: bool = True,
    want_animation: bool = True,
) -> pb.InteractRequest:
    if (text is None) == (audio is None):
        raise ValueError("give exactly one of text and audio")
    req = pb.InteractRequest(
        session_id=session_id,
        avatar_id=avatar_id,
        language=language,
        voice=voice,
        outputs=pb.OutputOptions(audio=want_audio, video=want_video, animation=want_animation),
    )
    if text is not None:
        req.text = text
    else:
        req.audio.CopyFrom(pb.AudioInput(data=audio, mime_type=mime_type))
    return req


class AvatarClient:
    """Blocking client. `with AvatarClient("127.0.0.1:50051") as c: c.interact(text="Hi")`.

    `api_key` is sent as `authorization: Bearer <key>`; `ca_file` (the server's CA) turns TLS on, with
    `cert_file`/`key_file` for mutual TLS; `server_name` checks the certificate against that name."""

    def __init__(
        self,
        target: str = "127.0.0.1:50051",
        *,
        channel: grpc.Channel | None = None,
        api_key: str | None = None,
        ca_file: PathLike | None = None,
        cert_file: PathLike | None = None,
        key_file: PathLike | None = None,
        server_name: str | None = None,
    ) -> None:
        self._channel = channel or make_channel(
            target, api_key=api_key, ca_file=ca_file, cert_file=cert_file, key_file=key_file, server_name=server_name
        )
        self._stub = pb_grpc.AvatarServiceStub(self._channel)
        # Health questions go over a channel of their own (opened on first use) without client-side health
        # checking: on the main channel a replica that is not SERVING gets no calls, so none could ask it.
        self._health_channel: grpc.Channel | None = None
        self._health_stub = None if channel is None else health_pb2_grpc.HealthStub(channel)

        def open_health() -> grpc.Channel:
            return make_channel(
                target,
                api_key=api_key,
                ca_file=ca_file,
                cert_file=cert_file,
                key_file=key_file,
                server_name=server_name,
                options=HEALTH_OPTIONS,
            )

        self._open_health = open_health

    @property
    def _health(self) -> health_pb2_grpc.HealthStub:
        if self._health_stub is None:
            self._health_channel = self._open_health()
            self._health_stub = health_pb2_grpc.HealthStub(self._health_channel)
        return self._health_stub

    def interact(self, *, timeout: float | None = 120.0, **kwargs: object) -> pb.InteractResponse:
        """One turn; keyword arguments as `build_request`. Raises grpc.RpcError on failure."""
        response: pb.InteractResponse = self._stub.Interact(build_request(**kwargs), timeout=timeout)  # type: ignore[arg-type]
        return response

    def capabilities(self, *, timeout: float | None = 10.0) -> pb.GetCapabilitiesResponse:
        result: pb.GetCapabilitiesResponse = self._stub.GetCapabilities(pb.GetCapabilitiesRequest(), timeout=timeout)
        return result

    def health(self, *, timeout: float | None = 5.0) -> str:
        """AvatarService's health status name (SERVING, NOT_SERVING, ...). Raises grpc.RpcError when unreachable."""
        status = self._health.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=timeout).status
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(status))

    def wait_until_serving(self, timeout: float = 120.0) -> None:
        """Block until the health service says SERVING (engines loaded)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                status = self._health.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=2.0).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the avatar server was not SERVING within {timeout:.0f} s")
            time.sleep(0.2)

    def close(self) -> None:
        self._channel.close()
        if self._health_channel is not None:
            self._health_channel.close()

    def __enter__(self) -> AvatarClient:
        return self

    def __exit__(self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]) -> None:
        self.close()


class AsyncAvatarClient:
    """asyncio client. `async with AsyncAvatarClient(target) as c: await c.interact(text="Hi")`."""

    def __init__(
        self,
        target: str = "127.0.0.1:50051",
        *,
        api_key: str | None = None,
        ca_file: PathLike | None = None,
        cert_file: PathLike | None = None,
        key_file: PathLike | None = None,
        server_name: str | None = None,
    ) -> None:
        """As AvatarClient's."""
        self._channel = make_aio_channel(
            target, api_key=api_key, ca_file=ca_file, cert_file=cert_file, key_file=key_file, server_name=server_name
        )
        self._stub = pb_grpc.AvatarServiceStub(self._channel)

    async def interact(self, *, timeout: float | None = 120.0, **kwargs: object) -> pb.InteractResponse:  # noqa: ASYNC109 - the gRPC deadline
        response: pb.InteractResponse = await self._stub.Interact(build_request(**kwargs), timeout=timeout)  # type: ignore[arg-type]
        return response

    async def capabilities(self, *, timeout: float | None = 10.0) -> pb.GetCapabilitiesResponse:  # noqa: ASYNC109
        result: pb.GetCapabilitiesResponse = await self._stub.GetCapabilities(
            pb.GetCapabilitiesRequest(), timeout=timeout
        )
        return result

    def converse(
        self, requests: AsyncIterator[pb.ConverseRequest], *, timeout: float | None = None
    ) -> AsyncIterator[pb.ConverseResponse]:
        """A live conversation: `requests` starts with the config; returns the server's events as they come.
        Cancel the returned call (or stop iterating and close the client) to end the session.

        A stream is not retried as Interact is: when its replica goes away the call ends with UNAVAILABLE (or,
        on a drain, an `error` event with code UNAVAILABLE). Open a new call whose config carries the last
        `session_id` the events had: with replicas that share AVATAR_SESSION_SECRET (and AVATAR_MEMORY_URL for
        the memory) the session goes on on another replica, as the widget does on its own."""
        call: AsyncIterator[pb.ConverseResponse] = self._stub.Converse(requests, timeout=timeout)
        return call

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncAvatarClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
