"""The bridge's WebSocket /api/v1/avatar/converse against the real server."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import numpy as np
import pytest
import websockets

from avatar_server.media.audio import decode_audio, to_pcm16
from tests.conftest import BridgeProcess, Clip
from tests.helpers import word_error_rate

pytestmark = pytest.mark.slow


def ws_url(bridge: BridgeProcess) -> str:
    return bridge.url.replace("http://", "ws://") + "/api/v1/avatar/converse"


async def receive_turn(ws: Any, deadline: float = 90) -> tuple[list[dict[str, Any]], list[bytes]]:
    events: list[dict[str, Any]] = []
    audio: list[bytes] = []
    end = time.monotonic() + deadline
    while True:
        message = await asyncio.wait_for(ws.recv(), max(0.1, end - time.monotonic()))
        if isinstance(message, bytes):
            assert events[-1]["type"] == "audio_chunk" and events[-1]["bytes"] == len(message)
            audio.append(message)
            continue
        events.append(json.loads(message))
        if events[-1]["type"] in ("turn_completed", "error"):
            return events, audio


async def test_spoken_turn_over_websocket(bridge: BridgeProcess, clips: dict[str, Clip]) -> None:
    clip = clips["espeak"]
    x = decode_audio(clip.path.read_bytes(), "audio/wav", max_seconds=60, rate=48000)
    pcm = to_pcm16(np.concatenate([np.zeros(24000, np.float32), x, np.zeros(72000, np.float32)]))
    async with websockets.connect(ws_url(bridge), max_size=None) as ws:
        await ws.send(json.dumps({"type": "config", "sample_rate": 48000, "session_id": "ws-1"}))

        async def stream() -> None:
            t0 = time.perf_counter()
            for i in range(0, len(pcm), 1920):
                await ws.send(pcm[i : i + 1920])
                await asyncio.sleep(max(0.0, t0 + (i + 1920) / 2 / 48000 - time.perf_counter()))

        sender = asyncio.create_task(stream())
        events, audio = await receive_turn(ws)
        sender.cancel()
    kinds = [e["type"] for e in events]
    assert kinds[:3] == ["speech_started", "speech_ended", "transcript"], kinds
    assert word_error_rate(clip.text, events[2]["text"]) <= 0.2
    # "ws-1" was not issued by the server: the session runs under one id the server issued.
    sessions = {e["session_id"] for e in events}
    assert len(sessions) == 1 and sessions != {"ws-1"} and len({e["turn_id"] for e in events}) == 1
    assert "animation_frames" in kinds and kinds.index("animation_frames") < kinds.index("audio_chunk")
    assert audio and sum(len(a) for a in audio) > 22050  # more than half a second of reply audio
    done = events[-1]
    assert done["type"] == "turn_completed" and done["timings"]["voice_to_first_audio"] > 0


async def test_text_and_interrupt_over_websocket(bridge: BridgeProcess) -> None:
    async with websockets.connect(ws_url(bridge), max_size=None) as ws:
        await ws.send(json.dumps({"type": "config"}))
        await ws.send(json.dumps({"type": "text", "text": "Tell me everything about computers."}))
        turn = ""
        while True:
            message = await asyncio.wait_for(ws.recv(), 90)
            if isinstance(message, str) and json.loads(message)["type"] == "audio_chunk":
                turn = json.loads(message)["turn_id"]
                break
        await ws.send(json.dumps({"type": "interrupt"}))
        while True:  # events already on their way, then the interrupted turn's closing event
            message = await asyncio.wait_for(ws.recv(), 10)
            if isinstance(message, str) and json.loads(message)["type"] == "turn_completed":
                closing = json.loads(message)
                break
        assert closing["turn_id"] == turn and closing["interrupted"] is True
        await ws.send(json.dumps({"type": "text", "text": "Hello."}))
        events, _ = await receive_turn(ws)
    assert all(e["turn_id"] != turn for e in events), [e["type"] for e in events if e["turn_id"] == turn]
    assert events[-1]["type"] == "turn_completed" and events[-1]["interrupted"] is False


@pytest.mark.parametrize(
    ("first", "then", "detail"),
    [
        (b"\x00\x00", None, "first message must be the JSON config"),
        ('{"type": "text", "text": "hi"}', None, "first message must be the config"),
        ('{"type": "config", "avatar_id": "nobody"}', None, "Unknown avatar"),
        ('{"type": "config"}', '{"type": "dance"}', "Unknown message type 'dance'"),
        ('{"type": "config"}', "not json", "must be JSON objects"),
    ],
)
async def test_protocol_errors_close_with_a_message(
    bridge: BridgeProcess, first: str | bytes, then: str | None, detail: str
) -> None:
    async with websockets.connect(ws_url(bridge)) as ws:
        await ws.send(first)
        if then is not None:
            await ws.send(then)
        error = json.loads(await asyncio.wait_for(ws.recv(), 30))
        assert error["type"] == "error" and error["code"] == "INVALID_ARGUMENT"
        assert detail in error["message"]
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
