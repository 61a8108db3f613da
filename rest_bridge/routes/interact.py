"""POST /api/v1/avatar/interact: the seed widget's multipart form → gRPC Interact → the seed's JSON."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable
from typing import Annotated, TypeVar

import grpc
from avatar.v1 import avatar_pb2 as pb
from fastapi import APIRouter, File, Form, Request, UploadFile
from pydantic import BaseModel
from starlette.types import Receive

from rest_bridge.deps import BackendDep
from rest_bridge.errors import BridgeError, from_grpc
from rest_bridge.input_checks import InputError, check_id, check_language
from rest_bridge.media_store import MediaStore

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1/avatar", tags=["avatar"])
T = TypeVar("T")

_OUTPUT_NAMES = {"audio", "video", "animation"}


class StageTimings(BaseModel):
    stt: float
    llm: float
    tts: float
    animation: float
    total: float


class InteractResult(BaseModel):
    """The seed's five fields first, then extras."""

    transcription: str
    reply_text: str
    audio_url: str | None
    video_url: str | None
    processing_time: float
    session_id: str
    turn_id: str
    language: str
    animation_url: str | None
    audio_duration: float | None
    timings: StageTimings


def sniff_audio(head: bytes) -> str | None:
    """The container by its magic bytes; the declared content type is not trusted alone."""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio/wav"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "audio/webm"
    if head[:4] == b"OggS":
        return "audio/ogg"
    return None


def parse_outputs(value: str) -> pb.OutputOptions | None:
    if not value.strip():
        return None
    wanted = {v.strip().lower() for v in value.split(",") if v.strip()}
    unknown = wanted - _OUTPUT_NAMES
    if unknown:
        raise BridgeError(422, "INVALID_ARGUMENT", f"Unknown outputs {sorted(unknown)}; use audio, video, animation.")
    return pb.OutputOptions(audio="audio" in wanted, video="video" in wanted, animation="animation" in wanted)


def _track_json(track: pb.AnimationTrack) -> bytes:
    return json.dumps(
        {
            "fps": track.fps,
            "names": list(track.names),
            "times": [round(f.time_seconds, 4) for f in track.frames],
            "frames": [[round(w, 3) for w in f.weights] for f in track.frames],
        },
        separators=(",", ":"),
    ).encode()


def _store(store: MediaStore, resp: pb.InteractResponse) -> dict[str, str | None]:
    urls: dict[str, str | None] = {"audio_url": None, "video_url": None, "animation_url": None}
    if resp.HasField("audio") and resp.audio.data:
        urls["audio_url"] = f"/static/audio/{store.save('audio', resp.audio.data)}.wav"
    if resp.HasField("video") and resp.video.data:
        urls["video_url"] = f"/static/video/{store.save('video', resp.video.data)}.mp4"
    if resp.HasField("animation") and resp.animation.frames:
        urls["animation_url"] = f"/static/animation/{store.save('animation', _track_json(resp.animation))}.json"
    return urls


class ClientGone(Exception):
    """The HTTP client disconnected before the answer was ready."""


async def _disconnected(receive: Receive) -> None:
    # Once the body is read, the next ASGI message is http.disconnect: uvicorn sends it when the client
    # leaves or once the response is complete (starlette's StreamingResponse listens the same way).
    while (await receive())["type"] != "http.disconnect":
        pass


async def unless_client_leaves(receive: Receive, work: Awaitable[T]) -> T:
    """Await `work`, cancelling it if the client disconnects first (raises ClientGone then).

    uvicorn does not cancel a handler whose client left: without this, a gRPC call would go on spending the
    server's seconds of STT/LLM/TTS for nobody. Cancelling the task awaiting a grpc.aio call cancels the RPC.
    Call it only after the request body has been read.
    """
    job = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(receive))
    try:
        done, _ = await asyncio.wait((job, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:
        # Also when this handler itself is cancelled: neither task may outlive the request.
        job.cancel()
        watcher.cancel()
        await asyncio.gather(job, watcher, return_exceptions=True)
    if watcher in done:
        raise ClientGone
    return job.result()


@router.post(
    "/interact",
    response_model=InteractResult,
    summary="One turn: spoken (audio file) or typed (text) input; the avatar's answer as text, audio and video",
    responses={
        400: {"description": "Neither audio nor text"},
        413: {"description": "Upload over the size cap"},
        415: {"description": "Audio that is not wav, webm/opus or ogg"},
        422: {"description": "Input the avatar service refused (message says why)"},
        429: {"description": "Over a service limit"},
        503: {"description": "The avatar service is down"},
    },
)
async def interact(
    backend: BackendDep,
    http_request: Request,
    audio: Annotated[UploadFile | None, File(description="Speech: wav, webm/opus or ogg")] = None,
    text: Annotated[str | None, Form(description="Typed input (instead of audio)")] = None,
    session_id: Annotated[str, Form()] = "",
    avatar_id: Annotated[str, Form()] = "",
    language: Annotated[str, Form(description="e.g. en, uk; empty = detect")] = "",
    voice: Annotated[str, Form()] = "",
    outputs: Annotated[str, Form(description="Comma list of audio,video,animation; empty = all")] = "",
) -> InteractResult:
    settings = backend.settings
    has_text = text is not None and text.strip() != ""
    has_audio = audio is not None and (audio.size or 0) > 0
    if has_text == has_audio:
        raise BridgeError(400, "BAD_REQUEST", "Send either an 'audio' file or a 'text' field (exactly one).")
    try:  # cheap refusals before a gRPC call; the server checks the same and more
        for field, value in (("session_id", session_id), ("avatar_id", avatar_id), ("voice", voice)):
            check_id(field, value)
        check_language(language)
    except InputError as exc:
        raise BridgeError(422, "INVALID_ARGUMENT", str(exc)) from None
    request = pb.InteractRequest(
        session_id=session_id, avatar_id=avatar_id, language=language, voice=voice, outputs=parse_outputs(outputs)
    )
    if has_text:
        assert text is not None
        if len(text) > settings.max_text_chars:
            raise BridgeError(413, "PAYLOAD_TOO_LARGE", f"The text is over {settings.max_text_chars} characters.")
        request.text = text
    else:
        assert audio is not None
        data = await audio.read()
        mime = sniff_audio(data[:16])
        if mime is None:
            declared = audio.content_type or "unknown"
            raise BridgeError(415, "UNSUPPORTED_MEDIA_TYPE", f"The audio ({declared}) is not wav, webm/opus or ogg.")
        request.audio.CopyFrom(pb.AudioInput(data=data, mime_type=mime))
    call = backend.avatar.Interact(request, timeout=settings.grpc_timeout_seconds)
    try:
        resp: pb.InteractResponse = await unless_client_leaves(http_request.receive, call)
    except grpc.aio.AioRpcError as exc:
        raise from_grpc(exc) from None
    except ClientGone:
        # Nothing is stored and nobody reads this answer; 499 (nginx's "client closed request") only shows in logs.
        log.info("client left during Interact; the gRPC call was cancelled")
        raise BridgeError(
            499, "CLIENT_CLOSED_REQUEST", "The client disconnected before the answer was ready."
        ) from None
    urls = await asyncio.to_thread(_store, backend.media, resp)
    t = resp.timings
    return InteractResult(
        transcription=resp.transcription,
        reply_text=resp.reply_text,
        processing_time=t.total_seconds,
        session_id=resp.session_id,
        turn_id=resp.turn_id,
        language=resp.language,
        audio_duration=resp.audio.duration_seconds if resp.HasField("audio") else None,
        timings=StageTimings(
            stt=t.stt_seconds,
            llm=t.llm_seconds,
            tts=t.tts_seconds,
            animation=t.animation_seconds,
            total=t.total_seconds,
        ),
        **urls,
    )
