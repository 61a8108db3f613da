"""The whole server on cloud backends: the organisation's OpenAI-compatible LLM service and ElevenLabs,
both played by a loopback server that speaks their protocols."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import numpy as np
import pytest
from avatar.v1 import avatar_pb2 as pb
from avatar.v1 import avatar_pb2_grpc as pb_grpc

from tests.conftest import start_server, stop_server
from tests.helpers import wav_duration
from tests.scripted_http import Reply, scripted_server, sse
from tests.unit.test_cloud_backends import elevenlabs_chunk

pytestmark = pytest.mark.slow


def test_interact_on_the_llm_service_and_elevenlabs(tmp_path: Path) -> None:
    pcm = (3000 * np.sin(np.arange(22050) / 5)).astype(np.int16)
    with scripted_server() as cloud:
        chat = "/v1/chat/completions"
        voice = "/v1/text-to-speech/grace-voice/stream/with-timestamps"
        for reply in ("Ready.", "I am Grace Hopper. I wrote A-0.", "You asked who I am."):
            cloud.script(
                chat,
                Reply(headers={"Content-Type": "text/event-stream"}, chunks=sse(*[w + " " for w in reply.split(" ")])),
            )
        for _ in range(3):
            cloud.script(voice, Reply(chunks=[elevenlabs_chunk(pcm, "I am Grace.", 0.0)]))
        env = {
            "AVATAR_LLM_ENGINE": "openai-compatible",
            "AVATAR_LLM_BASE_URL": f"{cloud.url}/v1",
            "AVATAR_LLM_MODEL": "super-intelligence",
            "AVATAR_LLM_API_KEY": "org-key",
            "AVATAR_TTS_ENGINE": "elevenlabs",
            "AVATAR_ELEVENLABS_BASE_URL": cloud.url,
            "AVATAR_ELEVENLABS_API_KEY": "xi-key",
            "AVATAR_ELEVENLABS_VOICE_ID": "grace-voice",
        }
        server = start_server(tmp_path / "server.log", extra_env=env)
        try:
            with grpc.insecure_channel(server.target) as channel:
                stub = pb_grpc.AvatarServiceStub(channel)
                first = stub.Interact(
                    pb.InteractRequest(text="Who are you?", voice="elevenlabs:grace-voice", session_id="c1"), timeout=60
                )
                second = stub.Interact(
                    pb.InteractRequest(
                        text="And again?", session_id=first.session_id, outputs=pb.OutputOptions(audio=True)
                    ),
                    timeout=60,
                )
                caps = stub.GetCapabilities(pb.GetCapabilitiesRequest(), timeout=10)
        finally:
            stop_server(server)
        requests = [json.loads(s.body) for s in cloud.seen if s.path == chat]
        tts_requests = [s for s in cloud.seen if s.path.startswith(voice)]
    assert first.reply_text == "I am Grace Hopper. I wrote A-0."
    assert second.reply_text == "You asked who I am."
    assert wav_duration(first.audio.data) == pytest.approx(1.0, abs=0.01)
    assert first.video.data and len(first.animation.frames) == 30
    persona = requests[1]["messages"][0]
    assert persona["role"] == "system" and "Grace Hopper" in persona["content"] and "A-0" in persona["content"]
    assert [m["content"] for m in requests[2]["messages"][1:]] == [
        "Who are you?", "I am Grace Hopper. I wrote A-0.", "And again?"
    ]  # fmt: skip
    assert all(r["stream"] is True and r["model"] == "super-intelligence" for r in requests)
    assert tts_requests and tts_requests[-1].headers["xi-api-key"] == "xi-key"
    assert {e.stage: e.name for e in caps.engines}["llm"] == "openai-compatible"
