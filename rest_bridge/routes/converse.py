"""WebSocket /api/v1/avatar/converse ⇄ gRPC Converse: JSON control and events, binary PCM16 audio.

Client → bridge: first a JSON `{"type": "config", "sample_rate": 48000, "session_id", "avatar_id", "language",
"barge_in", "end_silence_ms", "interim_results", "outputs": ["audio", "animation"]}`; then binary
messages (mono PCM16 at that rate) and JSON `{"type": "text", "text"}`, `{"type": "end_of_utterance"}`,
`{"type": "interrupt"}`.
Bridge → client: JSON events `{"type": <event>, "turn_id", "session_id", ...}`; an `audio_chunk` event is
followed at once by one binary message with its PCM16 samples.
A malformed message (rest_bridge.ws_protocol) gets an `error` event with an `error_id`, then close 1008; so
does a browser that leaves more than AVATAR_WS_OUTBOX_BYTES unread (without the event: it is not reading).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import grpc
from avatar.v1 import avatar_pb2 as pb
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from rest_bridge.deps import get_backend
from rest_bridge.errors import from_grpc, log_error, new_error_id, retry_after_ms
from rest_bridge.guard import admit_websocket
from rest_bridge.ws_protocol import (
    ProtocolError,
    audio_message,
    config_message,
    control_message,
    parse_text_frame,
)
from rest_bridge.ws_streams import Outbox, RequestStream, close_socket

log = logging.getLogger(__name__)
router = APIRouter()
# WebSocket close codes (RFC 6455 registry) that tell the browser to come back rather than give up.
CLOSE_TRY_AGAIN_LATER = 1013  # too many live sessions on the server
CLOSE_SERVICE_RESTART = 1012  # the server is draining for shutdown
CLOSE_POLICY = 1008  # a malformed message, or a browser that does not read what it is sent
CLOSE_INTERNAL = 1011
_DRAIN_SECONDS = 10.0  # at the end, how long queued events may take to reach the browser before it is closed


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
    settings = backend.settings
    requests = RequestStream()
    outbox = Outbox(settings.ws_outbox_bytes)
    call = backend.avatar.Converse(requests)
    reader = asyncio.create_task(_read_browser(ws, requests, settings.max_text_chars))
    sender = asyncio.create_task(outbox.run(ws))
    # When the browser leaves, breaks the protocol or cannot be sent to, the gRPC call ends with it.
    reader.add_done_callback(lambda t: call.cancel() if t.cancelled() or t.exception() is not None else None)
    sender.add_done_callback(lambda _: call.cancel())
    draining = False  # the server said it is shutting down (an UNAVAILABLE error event)
    overflow = False
    rpc_error: grpc.aio.AioRpcError | None = None
    try:
        async for ev in call:
            frames: list[str | bytes] = [json.dumps(event_json(ev))]
            if ev.HasField("audio_chunk"):
                frames.append(ev.audio_chunk.pcm)
            elif ev.HasField("video_segment"):
                frames.append(ev.video_segment.video.data)
            elif ev.HasField("error"):
                draining = ev.error.code == "UNAVAILABLE"
            if not outbox.put(*frames):
                overflow = True
                break
    except grpc.aio.AioRpcError as exc:
        rpc_error = exc
    except asyncio.CancelledError:
        if not (reader.done() or sender.done()):
            raise  # the bridge itself is stopping
    finally:
        call.cancel()
        requests.finish()  # grpc's task that reads the requests ends too, instead of waiting forever
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader
    if sender.done():  # the browser is gone or a send failed: nothing more can reach it
        return
    if overflow:
        error_id = new_error_id()
        log_error(error_id, CLOSE_POLICY, "OUTBOX_FULL", f"over {outbox.max_bytes} bytes unsent; closing", failure=True)
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
        await close_socket(ws, CLOSE_POLICY, "Too much unread data: the client is not reading.")
        return
    _finish(outbox, reader, rpc_error, draining)
    try:
        await asyncio.wait_for(sender, _DRAIN_SECONDS)
    except TimeoutError:  # the browser reads too slowly to take even what is queued
        await close_socket(ws, CLOSE_POLICY, "The client is not reading.")


def _finish(outbox: Outbox, reader: asyncio.Task[None], rpc_error: grpc.aio.AioRpcError | None, draining: bool) -> None:
    """Queue the session's last words: an error event if any, then the close that fits how it ended."""
    problem = reader.exception() if reader.done() and not reader.cancelled() else None
    if isinstance(problem, ProtocolError):
        _error(outbox, "INVALID_ARGUMENT", str(problem), CLOSE_POLICY, str(problem))
    elif problem is not None and not isinstance(problem, WebSocketDisconnect):
        error_id = new_error_id()
        log.error("error_id=%s reading the WebSocket failed", error_id, exc_info=problem)
        message = "The bridge failed to read the message; the error id identifies it in its log."
        _error(outbox, "INTERNAL", message, CLOSE_INTERNAL, "Internal error", error_id=error_id)
    elif rpc_error is not None:
        if rpc_error.code() == grpc.StatusCode.UNAVAILABLE and draining:
            outbox.close(CLOSE_SERVICE_RESTART, _RESTART_REASON)  # the browser already has the error event
        else:
            _rpc_error(outbox, rpc_error)
    elif problem is None:
        outbox.close(CLOSE_SERVICE_RESTART, _RESTART_REASON) if draining else outbox.close(1000, "")


async def _read_browser(ws: WebSocket, requests: RequestStream, max_text_chars: int) -> None:
    """Browser messages → gRPC requests; a malformed one ends it with ProtocolError."""
    rate: int | None = None  # set by the config
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        frame = message.get("bytes")
        if frame is not None:
            if (audio := audio_message(frame, rate)) is not None:
                await requests.put(audio)
            continue
        data = parse_text_frame(message.get("text") or "")
        if rate is None:
            config = config_message(data)
            rate = config.input_format.sample_rate_hertz
            await requests.put(pb.ConverseRequest(config=config))
        else:
            await requests.put(control_message(data, max_text_chars))


_BUSY_REASON = "Server busy; retry later."
_RESTART_REASON = "Server restarting; reconnect shortly."


def _rpc_error(outbox: Outbox, exc: grpc.aio.AioRpcError) -> None:
    """The call's final status as an error event, and a close code that says whether to come back."""
    code = exc.code()
    shown = from_grpc(exc)  # the message a client may see; the details go to the log
    retry_ms = retry_after_ms(exc) if code == grpc.StatusCode.RESOURCE_EXHAUSTED else None
    if retry_ms is not None:  # a load refusal, not a size cap
        close_code, reason = CLOSE_TRY_AGAIN_LATER, _BUSY_REASON
    elif code == grpc.StatusCode.UNAVAILABLE:
        close_code, reason = CLOSE_SERVICE_RESTART, _RESTART_REASON
    else:
        close_code = CLOSE_POLICY if code == grpc.StatusCode.INVALID_ARGUMENT else CLOSE_INTERNAL
        reason = shown.message
    _error(
        outbox,
        code.name,
        shown.message,
        close_code,
        reason,
        retry_after_ms=retry_ms,
        error_id=shown.error_id,
        detail=shown.detail,
    )


def _error(
    outbox: Outbox,
    code: str,
    message: str,
    close_code: int,
    reason: str,
    *,
    retry_after_ms: int | None = None,
    error_id: str | None = None,
    detail: str | None = None,
) -> None:
    """An error event (with an error id, logged) and then the close, after what is already queued."""
    error_id = error_id or new_error_id()
    log_error(error_id, close_code, code, message, detail, failure=close_code != CLOSE_POLICY)
    event: dict[str, Any] = {"type": "error", "code": code, "message": message, "turn_id": "", "error_id": error_id}
    if retry_after_ms is not None:
        event["retry_after_ms"] = retry_after_ms
    outbox.put(json.dumps(event), force=True)
    outbox.close(close_code, reason)
