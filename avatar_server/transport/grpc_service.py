"""The gRPC AvatarService: converts messages, calls the core, maps the error family to status codes."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from avatar.v1 import avatar_pb2 as pb
from avatar.v1 import avatar_pb2_grpc as pb_grpc
from google.protobuf.message import DecodeError, Message

from avatar_server.core import validation
from avatar_server.core.events import ErrorEvent, Event, TurnCompleted
from avatar_server.core.service import AvatarCore
from avatar_server.core.session import SHUTTING_DOWN, ConversationSession
from avatar_server.errors import AvatarError, ErrorCode, InvalidInput, Overloaded, ShuttingDown, for_client
from avatar_server.observability.metrics import CANCELLED, Metrics, outcome, outcome_of_code
from avatar_server.session_ids import SessionIds, caller_id
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
BAD_MESSAGE = "The request is not valid protobuf, or a text field in it is not valid UTF-8."
M = TypeVar("M", bound=Message)


async def abort(context: grpc.aio.ServicerContext[Any, Any], exc: BaseException) -> None:
    """End the call with the error's status; a load refusal carries its retry hint. An internal error's
    details go to the log under an error id; the client gets the id (errors.for_client)."""
    public = for_client(exc)
    trailing: tuple[tuple[str, str], ...] = ()
    if isinstance(public, Overloaded):
        trailing = ((RETRY_AFTER_KEY, str(public.retry_after_ms)),)
    await context.abort(STATUS[public.code], public.message, trailing_metadata=trailing)


def parse(cls: type[M], raw: bytes) -> M:
    """A request message from its bytes (registered with a raw deserializer: see add_to_server). Bad bytes
    or a string field that is not UTF-8 are the client's mistake: InvalidInput, not gRPC's UNKNOWN."""
    msg: M = cls()
    try:
        msg.ParseFromString(raw)
    except DecodeError as exc:
        log.info("%s: undecodable request (%s)", cls.__name__, exc)
        raise InvalidInput(BAD_MESSAGE) from None
    return msg


async def _parsed(raw: AsyncIterator[bytes]) -> AsyncIterator[pb.ConverseRequest]:
    async for data in raw:
        yield parse(pb.ConverseRequest, data)


def _unary(cls: type[M], method: Callable[[M, Any], Awaitable[Any]]) -> Callable[[bytes, Any], Awaitable[Any]]:
    async def handler(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            request = parse(cls, raw)
        except AvatarError as exc:
            await abort(context, exc)
        return await method(request, context)

    return handler


def add_to_server(service: AvatarService, server: grpc.aio.Server) -> None:
    """Register the service as the generated add_AvatarServiceServicer_to_server would, but with requests
    deserialized inside the handlers (undecodable bytes -> INVALID_ARGUMENT). Responses, method names and
    the descriptors (reflection) are the generated ones."""

    def raw(data: bytes) -> bytes:
        return data

    async def converse(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await service.Converse(_parsed(requests), context)  # (a coroutine function: grpc.aio checks)

    handlers = {
        "Interact": grpc.unary_unary_rpc_method_handler(
            _unary(pb.InteractRequest, service.Interact),
            request_deserializer=raw,
            response_serializer=pb.InteractResponse.SerializeToString,
        ),
        "Converse": grpc.stream_stream_rpc_method_handler(
            converse,
            request_deserializer=raw,
            response_serializer=pb.ConverseResponse.SerializeToString,
        ),
        "GetCapabilities": grpc.unary_unary_rpc_method_handler(
            _unary(pb.GetCapabilitiesRequest, service.GetCapabilities),
            request_deserializer=raw,
            response_serializer=pb.GetCapabilitiesResponse.SerializeToString,
        ),
        "GetAvatarFace": grpc.unary_unary_rpc_method_handler(
            _unary(pb.GetAvatarFaceRequest, service.GetAvatarFace),
            request_deserializer=raw,
            response_serializer=pb.GetAvatarFaceResponse.SerializeToString,
        ),
    }
    name = pb.DESCRIPTOR.services_by_name["AvatarService"].full_name
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))
    server.add_registered_method_handlers(name, handlers)


def _count_turn(m: Metrics, event: Event, counted: str) -> str:
    """Count a live turn as its end goes out: completed, interrupted, or failed with an error event."""
    if isinstance(event, TurnCompleted) and event.turn_id != counted:
        if event.interrupted:
            m.turn_ended("converse", CANCELLED)
        else:
            m.turn_served("converse", event.timings)
        return event.turn_id
    if isinstance(event, ErrorEvent) and event.turn_id:  # (a session's own end has no turn id)
        m.turn_ended("converse", outcome_of_code(event.code))
        return event.turn_id
    return counted


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

    def __init__(self, core: AvatarCore | None = None, metrics: Metrics | None = None) -> None:
        self.core = core
        self.metrics = metrics or (core.metrics if core is not None else Metrics())  # the core's, once loaded
        self.sessions: set[ConversationSession] = set()
        self._ids: SessionIds | None = None

    def session_id(self, core: AvatarCore, given: str, context: grpc.aio.ServicerContext[Any, Any]) -> str:
        """The session id a request runs under: the caller's own issued id, else a fresh one (never an
        error, unless the id is malformed)."""
        validation.session_id(given)
        if self._ids is None:
            self._ids = SessionIds(core.settings.session_secret.get_secret_value())
        return self._ids.resolve(given, caller_id(context.invocation_metadata()))

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
            req = convert.turn_request(request)
            req = dataclasses.replace(req, session_id=self.session_id(core, req.session_id, context))
            result = await core.interact(req, time_remaining=context.time_remaining())
        except asyncio.CancelledError:  # the client left, or its deadline passed
            self.metrics.turn_ended("interact", CANCELLED)
            raise
        except Exception as exc:  # an AvatarError, or a bug: said plainly (with an error id)
            self.metrics.turn_ended("interact", outcome(exc))
            await abort(context, exc)
        self.metrics.turn_served("interact", result.timings)
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
        except AvatarError as exc:  # undecodable
            await abort(context, exc)
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
            config = convert.session_config(first.config)
            config = dataclasses.replace(config, session_id=self.session_id(core, config.session_id, context))
            async with core.admission.session():
                session = ConversationSession(core, config)
                self.sessions.add(session)
                try:
                    failure = await self._converse(session, request_iterator, context)
                finally:
                    self.sessions.discard(session)
                    await session.close()
        except AvatarError as exc:
            failure = exc
        except Exception as exc:  # a bug: the client gets an error id, the log the details
            await abort(context, exc)
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
        counted = ""  # the last turn counted: a reply stopped while still heard ends a second time
        try:
            async for event in session.stream():
                counted = _count_turn(self.metrics, event, counted)
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
