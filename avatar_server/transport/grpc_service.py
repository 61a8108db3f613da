"""The gRPC AvatarService: converts messages, calls the pipeline, maps the error family to status codes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import grpc
from avatar.v1 import avatar_pb2 as pb
from avatar.v1 import avatar_pb2_grpc as pb_grpc

from avatar_server.conversation.session import ConversationSession
from avatar_server.errors import AvatarError, ErrorCode, InvalidInput
from avatar_server.pipeline import Pipeline
from avatar_server.transport import convert

log = logging.getLogger(__name__)

STATUS = {
    ErrorCode.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorCode.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorCode.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorCode.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorCode.INTERNAL: grpc.StatusCode.INTERNAL,
}


async def _read_client(
    requests: AsyncIterator[pb.ConverseRequest], session: ConversationSession, failure: list[AvatarError]
) -> None:
    """Feed client messages to the session; a protocol error ends the stream with its status."""
    try:
        async for msg in requests:
            kind = msg.WhichOneof("message")
            if kind == "audio":
                await session.audio(msg.audio)
            elif kind == "text":
                await session.text(msg.text)
            elif kind == "end_of_utterance":
                await session.end_of_utterance()
            elif kind == "interrupt":
                await session.interrupt()
            elif kind == "config":
                raise InvalidInput("The session config may be sent only once, as the first message.")
            else:
                raise InvalidInput("Empty Converse message: set one of audio, text, end_of_utterance, interrupt.")
        await session.finish()
    except AvatarError as exc:
        failure.append(exc)
        await session.close()


class AvatarService(pb_grpc.AvatarServiceServicer):  # type: ignore[misc]
    """Registered before the server starts; answers UNAVAILABLE until the engines are loaded."""

    def __init__(self, pipeline: Pipeline | None = None) -> None:
        self.pipeline = pipeline

    async def _ready(self, context: grpc.aio.ServicerContext[object, object]) -> Pipeline:
        if self.pipeline is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "The avatar engines are still loading; retry shortly.")
        assert self.pipeline is not None
        return self.pipeline

    async def Interact(
        self, request: pb.InteractRequest, context: grpc.aio.ServicerContext[pb.InteractRequest, pb.InteractResponse]
    ) -> pb.InteractResponse:
        pipeline = await self._ready(context)
        try:
            result = await pipeline.interact(convert.turn_request(request))
        except AvatarError as exc:
            await context.abort(STATUS[exc.code], exc.message)
        except Exception:  # a bug, not an engine: keep serving, say so plainly
            log.exception("Interact failed")
            await context.abort(grpc.StatusCode.INTERNAL, "The server failed to process this turn.")
        return convert.interact_response(result)

    async def Converse(
        self,
        request_iterator: AsyncIterator[pb.ConverseRequest],
        context: grpc.aio.ServicerContext[pb.ConverseRequest, pb.ConverseResponse],
    ) -> AsyncIterator[pb.ConverseResponse]:
        pipeline = await self._ready(context)
        try:
            first = await anext(aiter(request_iterator))
        except StopAsyncIteration:
            return
        if first.WhichOneof("message") != "config":
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "The first Converse message must be the session config."
            )
        try:
            session = ConversationSession(pipeline, convert.session_config(first.config))
        except AvatarError as exc:
            await context.abort(STATUS[exc.code], exc.message)
        failure: list[AvatarError] = []
        reader = asyncio.create_task(_read_client(request_iterator, session, failure))
        try:
            while (event := await session.events.get()) is not None:
                if session.deliverable(event):
                    yield convert.converse_event(event, session.session_id)
            if failure:
                await context.abort(STATUS[failure[0].code], failure[0].message)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            await session.close()

    async def GetCapabilities(
        self,
        request: pb.GetCapabilitiesRequest,
        context: grpc.aio.ServicerContext[pb.GetCapabilitiesRequest, pb.GetCapabilitiesResponse],
    ) -> pb.GetCapabilitiesResponse:
        p = await self._ready(context)
        e = p.engines
        voices = [
            pb.VoiceInfo(id=v.id, engine=name, languages=list(v.languages))
            for name, engine in e.tts.items()
            for v in engine.capabilities.voices
        ]
        spoken = {lang.split("-")[0] for v in voices for lang in v.languages}
        heard = set(e.stt.capabilities.languages)
        engines = [
            pb.EngineInfo(stage="stt", name=e.stt.name, model=e.stt.capabilities.model),
            pb.EngineInfo(stage="llm", name=e.llm.name, model=e.llm.capabilities.model),
            *(pb.EngineInfo(stage="tts", name=name, model=name) for name in e.tts),
            pb.EngineInfo(stage="animator", name=e.animator.name, model="2d-portrait"),
        ]
        return pb.GetCapabilitiesResponse(
            avatars=[
                pb.AvatarInfo(id=a.id, name=a.name, voice=a.voice, language=a.language, description=a.description)
                for a in p.avatars.values()
            ],
            voices=voices,
            languages=sorted(spoken & heard),
            engines=engines,
            default_avatar_id=p.settings.default_avatar,
        )
