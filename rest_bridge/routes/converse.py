"""WebSocket /api/v1/avatar/converse ⇄ gRPC Converse: JSON control and events, binary PCM16 audio.

Client → bridge: first a JSON `{"type": "config", "sample_rate": 48000, "session_id", "avatar_id", "language",
"barge_in", "end_silence_ms", "interim_results", "outputs": ["audio", "animation"]}`; then binary
messages (mono PCM16 at that rate) and JSON `{"type": "text", "text"}`, `{"type": "end_of_utterance"}`,
`{"type": "interrupt"}`.
Bridge → client: JSON events `{"type": <event>, "turn_id", "session_id", ...}`; an `audio_chunk` event is
followed at once by one binary message with its PCM16 samples.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
from avatar.v1 import avatar_pb2 as pb
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from rest_bridge.deps import get_backend
from rest_bridge.errors import retry_after_ms
from rest_bridge.guard import admit_websocket

log = logging.getLogger(__name__)
router = APIRouter()
_OUTPUT_NAMES = ("audio", "video", "animation")
# WebSocket close codes (RFC 6455 registry) that tell the browser to come back rather than give up.
CLOSE_TRY_AGAIN_LATER = 1013  # too many live sessions on the server
CLOSE_SERVICE_RESTART = 1012  # the server is draining for shutdown


class ProtocolError(Exception):
    """The browser sent something out of order or malformed."""


def config_message(data: dict[str, Any]) -> pb.ConverseConfig:
    if data.get("type") != "config":
        raise ProtocolError('The first message must be the config: {"type": "config", ...}.')
    outputs = data.get("outputs")
    options = None
    if outputs is not None:
        if not isinstance(outputs, list) or not set(outputs) <= set(_OUTPUT_NAMES):
            raise ProtocolError("outputs must be a list of audio, video, animation.")
        options = pb.OutputOptions(**{name: name in outputs for name in _OUTPUT_NAMES})
    try:
        return pb.ConverseConfig(
            session_id=str(data.get("session_id", "")),
            avatar_id=str(data.get("avatar_id", "")),
            language=str(data.get("language", "")),
            voice=str(data.get("voice", "")),
            input_format=pb.AudioFormat(
                encoding=pb.AUDIO_ENCODING_PCM16, sample_rate_hertz=int(data.get("sample_rate", 16000))
            ),
            outputs=options,
            barge_in=bool(data.get("barge_in", False)),
            end_silence_ms=int(data.get("end_silence_ms", 0)),
            interim_results=bool(data.get("interim_results", False)),
        )
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"Bad config: {exc}") from None


def control_message(data: dict[str, Any]) -> pb.ConverseRequest:
    kind = data.get("type")
    if kind == "text":
        return pb.ConverseRequest(text=str(data.get("text", "")))
    if kind == "end_of_utterance":
        return pb.ConverseRequest(end_of_utterance=pb.EndOfUtterance())
    if kind == "interrupt":
        return pb.ConverseRequest(interrupt=pb.Interrupt())
    if kind == "config":
        raise ProtocolError("The config may be sent only once, first.")
    raise ProtocolError(f"Unknown message type {kind!r}; use text, end_of_utterance or interrupt.")


def event_json(ev: pb.ConverseResponse) -> dict[str, Any]:
    kind = ev.WhichOneof("event")
    out: dict[str, Any] = {"type": kind, "turn_id": ev.turn_id, "session_id": ev.session_id}
    if kind in ("speech_started", "speech_ended"):
        out["time_seconds"] = getattr(ev, kind).time_seconds
    elif kind == "transcript":
        out.update(text=ev.transcript.text, is_final=ev.transcript.is_final)
    elif kind == "reply_text_delta":
        out["text"] = ev.reply_text_delta.text
    elif kind == "audio_chunk":
        c = ev.audio_chunk
        out.update(sample_rate=c.sample_rate_hertz, start_seconds=c.start_seconds, bytes=len(c.pcm))
    elif kind == "animation_frames":
        f = ev.animation_frames
        out.update(
            fps=f.fps,
            names=list(f.names),
            times=[round(x.time_seconds, 4) for x in f.frames],
            frames=[[round(w, 3) for w in x.weights] for x in f.frames],
        )
    elif kind == "video_segment":
        out.update(start_seconds=ev.video_segment.start_seconds, duration=ev.video_segment.video.duration_seconds)
    elif kind == "turn_completed":
        t = ev.turn_completed.timings
        out.update(
            transcription=ev.turn_completed.transcription,
            reply_text=ev.turn_completed.reply_text,
            interrupted=ev.turn_completed.interrupted,
            timings={
                "stt": t.stt_seconds,
                "llm": t.llm_seconds,
                "llm_first_token": t.llm_first_token_seconds,
                "tts": t.tts_seconds,
                "tts_first_byte": t.tts_first_byte_seconds,
                "voice_to_first_audio": t.voice_to_first_audio_seconds,
                "end_of_turn": t.end_of_turn_seconds,
                "end_of_turn_probability": t.end_of_turn_probability,
                "total": t.total_seconds,
            },
        )
    elif kind == "backchannel":
        b = ev.backchannel
        out.update(start_seconds=b.start_seconds, end_seconds=b.end_seconds, text=b.text)
    elif kind == "error":
        out.update(code=ev.error.code, message=ev.error.message)
    return out


@router.websocket("/api/v1/avatar/converse")
async def converse(ws: WebSocket) -> None:
    backend = get_backend(ws)
    if not await admit_websocket(ws):  # Origin and key (ticket) checked before the upgrade is accepted
        return
    await ws.accept()
    outbox: asyncio.Queue[pb.ConverseRequest | None] = asyncio.Queue(maxsize=256)

    async def requests() -> AsyncIterator[pb.ConverseRequest]:
        while (msg := await outbox.get()) is not None:
            yield msg

    async def read_browser() -> None:
        first = True
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(message.get("code", 1000))
            if message.get("bytes") is not None:
                if first:
                    raise ProtocolError("The first message must be the JSON config, not audio.")
                await outbox.put(pb.ConverseRequest(audio=message["bytes"]))
                continue
            try:
                data = json.loads(message.get("text") or "")
                assert isinstance(data, dict)
            except (ValueError, AssertionError):
                raise ProtocolError("Control messages must be JSON objects.") from None
            await outbox.put(pb.ConverseRequest(config=config_message(data)) if first else control_message(data))
            first = False

    call = backend.avatar.Converse(requests())
    reader = asyncio.create_task(read_browser())
    # When the browser leaves or breaks the protocol, the gRPC call ends with it.
    reader.add_done_callback(lambda t: call.cancel() if t.cancelled() or t.exception() is not None else None)
    draining = False  # the server said it is shutting down (an UNAVAILABLE error event)
    try:
        async for ev in call:
            await ws.send_json(event_json(ev))
            if ev.HasField("audio_chunk"):
                await ws.send_bytes(ev.audio_chunk.pcm)
            elif ev.HasField("video_segment"):
                await ws.send_bytes(ev.video_segment.video.data)
            elif ev.HasField("error"):
                draining = ev.error.code == "UNAVAILABLE"
        if draining:
            await _close(ws, CLOSE_SERVICE_RESTART, _RESTART_REASON)
        else:
            await _close(ws, 1000, "")
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.UNAVAILABLE and draining:
            await _close(ws, CLOSE_SERVICE_RESTART, _RESTART_REASON)  # the browser already has the error event
        else:
            await _send_rpc_error(ws, exc)
    except asyncio.CancelledError:
        if not reader.done():
            raise  # the bridge itself is stopping
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        call.cancel()
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader
        # cancel() on a call that has already ended leaves grpc's task that drains requests() waiting on the
        # outbox forever (destroyed pending at GC); ending the generator lets it finish. A full outbox means
        # that task is not waiting on it.
        with contextlib.suppress(asyncio.QueueFull):
            outbox.put_nowait(None)
    problem = reader.exception() if reader.done() and not reader.cancelled() else None
    if isinstance(problem, ProtocolError):
        await _send_error(ws, "INVALID_ARGUMENT", str(problem))


_BUSY_REASON = "Server busy; retry later."
_RESTART_REASON = "Server restarting; reconnect shortly."


async def _send_rpc_error(ws: WebSocket, exc: grpc.aio.AioRpcError) -> None:
    """The call's final status as an error event, and a close code that says whether to come back."""
    code = exc.code()
    message = exc.details() or code.name
    retry_ms = retry_after_ms(exc) if code == grpc.StatusCode.RESOURCE_EXHAUSTED else None
    if retry_ms is not None:  # a load refusal, not a size cap
        await _send_error(ws, code.name, message, CLOSE_TRY_AGAIN_LATER, _BUSY_REASON, retry_after_ms=retry_ms)
    elif code == grpc.StatusCode.UNAVAILABLE:
        await _send_error(ws, code.name, message, CLOSE_SERVICE_RESTART, _RESTART_REASON)
    else:
        await _send_error(ws, code.name, message)


async def _send_error(
    ws: WebSocket,
    code: str,
    message: str,
    close_code: int | None = None,
    reason: str | None = None,
    *,
    retry_after_ms: int | None = None,
) -> None:
    event: dict[str, Any] = {"type": "error", "code": code, "message": message, "turn_id": ""}
    if retry_after_ms is not None:
        event["retry_after_ms"] = retry_after_ms
    with contextlib.suppress(Exception):
        await ws.send_json(event)
    if close_code is None:
        close_code = 1008 if code == "INVALID_ARGUMENT" else 1011
    await _close(ws, close_code, message if reason is None else reason)


async def _close(ws: WebSocket, code: int, reason: str) -> None:
    # A close reason may hold at most 123 bytes of UTF-8; a longer one would make the close itself fail.
    reason = reason.encode()[:123].decode(errors="ignore")
    with contextlib.suppress(Exception):
        await ws.close(code=code, reason=reason)
