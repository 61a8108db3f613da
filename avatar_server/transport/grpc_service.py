"""The gRPC AvatarService: converts messages, calls the core, maps the error family to status codes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import grpc
from avatar.v1 import avatar_pb2 as pb
from avatar.v1 import avatar_pb2_grpc as pb_grpc

from avatar_server.core.service import AvatarCore
from avatar_server.core.session import SHUTTING_DOWN, ConversationSession
from avatar_server.errors import AvatarError, ErrorCode, InvalidInput, Overloaded, ShuttingDown
from avatar_server.transport import convert

log = logging.getLogger(__name__)

STATUS = {
    ErrorCode.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorCode.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorCode.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorCode.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorCode.DEADLINE_EXCEEDED: grpc.StatusCode.DEADLINE_EXCEEDED,
    ErrorCode.INTERNAL: grpc.StatusCode.INTERNAL,
}
RETRY_AFTER_KEY = "retry-after-ms"  # trailing metadata of a refusal for load: when to try again


async def abort(context: grpc.aio.ServicerContext[object, object], exc: AvatarError) -> None:
    """End the call with the error's status; a load refusal carries its retry hint."""
    trailing: tuple[tuple[str, str], ...] = ()
    if isinstance(exc, Overloaded):
        trailing = ((RETRY_AFTER_KEY, str(exc.retry_after_ms)),)
    await context.abort(STATUS[exc.code], exc.message, trailing_metadata=trailing)


async def _read_client(
    requests: AsyncIterator[pb.ConverseRequest], session: ConversationSession, idle_seconds: float
) -> None:
    """Feed client messages to the session. A silent client (no message, no turn running) is closed after
    `idle_seconds`; a protocol error or a broken limit ends the session with its status."""
    iterator = aiter(requests)
    pending: asyncio.Future[pb.ConverseRequest] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(iterator))
            done, _ = await asyncio.wait({pending}, timeout=idle_seconds)
            if not done:
                if session.running:
                    continue  # the client waits for a reply
                raise AvatarError(
                    f"No message for {idle_seconds:g} s; the conversation was closed.", ErrorCode.DEADLINE_EXCEEDED
                )
            try:
                msg = pending.result()
            except StopAsyncIteration:
                break
            pending = None
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
        session.failure = session.failure or exc
        await session.close()
    finally:
        if pending is not None and not pending.done():
            pending.cancel()


class AvatarService(pb_grpc.AvatarServiceServicer):  # type: ignore[misc]
    """Registered before the server starts; answers UNAVAILABLE until the engines are loaded."""

    def __init__(self, core: AvatarCore | None = None) -> None:
        self.core = core
        self.sessions: set[ConversationSession] = set()

    async def _ready(self, context: grpc.aio.ServicerContext[object, object]) -> AvatarCore:
        if self.core is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "The avatar engines are still loading; retry shortly.")
        assert self.core is not None
        return self.core

    async def drain(self, seconds: float) -> None:
        """Shutdown: refuse new work, let running turns finish for up to `seconds`, then end live sessions
        with a final event that says why."""
        core = self.core
        if core is None:
            return
        core.admission.draining = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        # Two kinds of work to wait for (Interact turns, live turns), polled: a drain happens once.
        while loop.time() < deadline and (core.admission.running or any(s.running for s in self.sessions)):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        await asyncio.gather(*(s.close(ShuttingDown(SHUTTING_DOWN)) for s in list(self.sessions)))

    async def Interact(
        self, request: pb.InteractRequest, context: grpc.aio.ServicerContext[pb.InteractRequest, pb.InteractResponse]
    ) -> pb.InteractResponse:
        core = await self._ready(context)
        try:
            result = await core.interact(convert.turn_request(request), time_remaining=context.time_remaining())
        except AvatarError as exc:
            await abort(context, exc)
        except Exception:  # a bug, not an engine: keep serving, say so plainly
            log.exception("Interact failed")
            await context.abort(grpc.StatusCode.INTERNAL, "The server failed to process this turn.")
        return convert.interact_response(result)

    async def Converse(
        self,
        request_iterator: AsyncIterator[pb.ConverseRequest],
        context: grpc.aio.ServicerContext[pb.ConverseRequest, pb.ConverseResponse],
    ) -> None:
        core = await self._ready(context)
        s = core.settings
        try:
            async with asyncio.timeout(s.converse_config_timeout_seconds):
                first = await anext(aiter(request_iterator))
        except StopAsyncIteration:
            return
        except TimeoutError:
            await context.abort(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"No session config within {s.converse_config_timeout_seconds:g} s; send it first.",
            )
        if first.WhichOneof("message") != "config":
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "The first Converse message must be the session config."
            )
        failure: AvatarError | None = None
        try:
            async with core.admission.session():
                session = ConversationSession(core, convert.session_config(first.config))
                self.sessions.add(session)
                try:
                    failure = await self._converse(session, request_iterator, context)
                finally:
                    self.sessions.discard(session)
                    await session.close()
        except AvatarError as exc:
            failure = exc
        if failure is not None:
            await abort(context, failure)

    async def _converse(
        self,
        session: ConversationSession,
        requests: AsyncIterator[pb.ConverseRequest],
        context: grpc.aio.ServicerContext[pb.ConverseRequest, pb.ConverseResponse],
    ) -> AvatarError | None:
        """Stream the session's events; what ended it, if not the client."""
        s = session.settings
        reader = asyncio.create_task(_read_client(requests, session, s.converse_idle_timeout_seconds))
        try:
            async for event in session.stream():
                try:
                    async with asyncio.timeout(s.converse_write_timeout_seconds):
                        await context.write(convert.converse_event(event, session.session_id))
                except TimeoutError:
                    log.warning(
                        "session %s: the client read nothing for %g s; closing it",
                        session.session_id,
                        s.converse_write_timeout_seconds,
                    )
                    return AvatarError(
                        f"The client read nothing for {s.converse_write_timeout_seconds:g} s; "
                        "the conversation was closed.",
                        ErrorCode.RESOURCE_EXHAUSTED,
                    )
            return session.failure
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def GetAvatarFace(
        self,
        request: pb.GetAvatarFaceRequest,
        context: grpc.aio.ServicerContext[pb.GetAvatarFaceRequest, pb.GetAvatarFaceResponse],
    ) -> pb.GetAvatarFaceResponse:
        core = await self._ready(context)
        try:
            avatar, face = await core.face(request.avatar_id)
        except AvatarError as exc:
            await abort(context, exc)
        return pb.GetAvatarFaceResponse(
            avatar_id=avatar.id,
            portrait_png=face.portrait_png,
            mouth_png=face.mouth_png,
            face_model_json=face.face_model_json,
        )

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
            # The served languages (AVATAR_LANGUAGES): heard, answered and spoken (checked at start).
            languages=list(p.settings.languages),
            engines=engines,
            default_avatar_id=p.settings.default_avatar,
        )
