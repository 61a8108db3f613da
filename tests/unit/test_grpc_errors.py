"""The gRPC edge maps the error family to status codes (in-process server, fake pipeline)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from avatar.v1 import avatar_pb2 as pb
from avatar.v1 import avatar_pb2_grpc as pb_grpc

from avatar_server.errors import EngineFailure, InvalidInput, Overloaded, StageTimeout, TooLarge
from avatar_server.settings import Settings
from avatar_server.transport.grpc_service import AvatarService


class RaisingPipeline:
    def __init__(self) -> None:
        self.error: Exception | None = None
        self.settings = Settings()

    async def interact(self, request: object, *, time_remaining: float | None = None) -> object:
        assert self.error is not None
        raise self.error


@pytest.fixture
async def stub_and_pipeline() -> AsyncIterator[tuple[pb_grpc.AvatarServiceStub, RaisingPipeline]]:
    server = grpc.aio.server()
    fake = RaisingPipeline()
    service = AvatarService()
    pb_grpc.add_AvatarServiceServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.AvatarServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Interact(pb.InteractRequest(text="hi"))
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE and "still loading" in (err.value.details() or "")
        service.core = fake  # type: ignore[assignment]
        yield stub, fake
    await server.stop(None)


@pytest.mark.parametrize(
    ("error", "code", "details"),
    [
        (InvalidInput("bad thing"), grpc.StatusCode.INVALID_ARGUMENT, "bad thing"),
        (TooLarge("too big"), grpc.StatusCode.RESOURCE_EXHAUSTED, "too big"),
        (Overloaded("busy", retry_after_ms=1500), grpc.StatusCode.RESOURCE_EXHAUSTED, "busy"),
        (StageTimeout("The text-to-speech stage took longer than 30 s."), grpc.StatusCode.DEADLINE_EXCEEDED, "speech"),
        # An engine's failure is not the caller's: they get an error id, the log gets the details.
        (EngineFailure("The text-to-speech engine failed: boom"), grpc.StatusCode.INTERNAL, "(error id "),
        (ZeroDivisionError("bug"), grpc.StatusCode.INTERNAL, "failed to process this turn"),
    ],
)
async def test_errors_map_to_status(
    stub_and_pipeline: tuple[pb_grpc.AvatarServiceStub, RaisingPipeline],
    error: Exception,
    code: grpc.StatusCode,
    details: str,
) -> None:
    stub, fake = stub_and_pipeline
    fake.error = error
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Interact(pb.InteractRequest(text="hi"))
    assert err.value.code() == code
    assert details in (err.value.details() or "")
    # Only a refusal for load says when to retry; a payload over a cap will never pass.
    trailing = dict(err.value.trailing_metadata() or ())
    assert trailing.get("retry-after-ms") == ("1500" if isinstance(error, Overloaded) else None)


async def test_converse_must_start_with_the_config(
    stub_and_pipeline: tuple[pb_grpc.AvatarServiceStub, RaisingPipeline],
) -> None:
    stub, _ = stub_and_pipeline
    call = stub.Converse(iter([pb.ConverseRequest(text="hi")]))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for _ in call:
            pass
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "first Converse message must be the session config" in (err.value.details() or "")
