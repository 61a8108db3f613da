"""Cloud backends against a loopback server that speaks their documented request/response formats."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from avatar_server.engines.http import CloudError
from avatar_server.engines.llm.openai_compatible import OpenAICompatibleChat
from avatar_server.engines.stt.openai import OpenAITranscriptionSTT
from avatar_server.engines.tts.elevenlabs import ElevenLabsTTS
from avatar_server.values import ChatMessage
from tests.scripted_http import Reply, scripted_server, sse

SPEECH = (0.1 * np.sin(np.arange(16000) / 8)).astype(np.float32)


def stt(url: str, **kw: object) -> OpenAITranscriptionSTT:
    return OpenAITranscriptionSTT(base_url=f"{url}/v1", api_key="sk-test", timeout=kw.pop("timeout", 5.0), **kw)  # type: ignore[arg-type]


def test_openai_transcription_request_and_answer() -> None:
    with scripted_server() as s:
        s.script("/v1/audio/transcriptions", Reply(body={"text": " Привіт, світе ", "language": "ukrainian"}))
        result = stt(s.url).transcribe(SPEECH, language=None)
        seen = s.seen[-1]
    assert result.text == "Привіт, світе" and result.language == "uk"
    assert seen.headers["authorization"] == "Bearer sk-test"
    assert seen.headers["content-type"].startswith("multipart/form-data")
    assert b'name="model"\r\n\r\nwhisper-1' in seen.body and b'name="response_format"\r\n\r\nverbose_json' in seen.body
    assert b"RIFF" in seen.body  # the audio goes as a wav file


def test_openai_transcription_retries_429_and_5xx_then_succeeds() -> None:
    with scripted_server() as s:
        s.script(
            "/v1/audio/transcriptions",
            Reply(429, {"error": {"message": "slow down"}}, headers={"Retry-After": "0.1"}),
            Reply(503, "busy"),
            Reply(body={"text": "hello"}),
        )
        assert stt(s.url, retries=3).transcribe(SPEECH, language="en").text == "hello"
        assert len(s.seen) == 3


@pytest.mark.parametrize(
    ("replies", "message"),
    [
        ([Reply(401, {"error": {"message": "Incorrect API key"}})], "rejected the API key (401)"),
        ([Reply(429, "x", headers={"Retry-After": "0"})] * 2, "rate limiting (429)"),
        ([Reply(500, "boom")] * 2, "answered 500"),
        ([Reply(body="<html>not json</html>")], "malformed answer"),
        ([Reply(body={"no_text": 1})], "malformed answer"),
        ([Reply(body={"text": "late"}, delay=1.5)] * 2, "did not answer in time"),
    ],
)
def test_openai_transcription_errors(replies: list[Reply], message: str) -> None:
    with scripted_server() as s:
        s.script("/v1/audio/transcriptions", *replies)
        with pytest.raises(CloudError, match=message.replace("(", r"\(").replace(")", r"\)")):
            stt(s.url, retries=2, timeout=0.5).transcribe(SPEECH, language="en")
        assert len(s.seen) <= 2


def test_openai_transcription_needs_a_key() -> None:
    with pytest.raises(ValueError, match="API key"):
        OpenAITranscriptionSTT(base_url="http://127.0.0.1:9", api_key="")


def chat(url: str, retries: int = 3, seed: int | None = None) -> OpenAICompatibleChat:
    return OpenAICompatibleChat(
        base_url=f"{url}/v1", model="super-intelligence", api_key="k", timeout=5, retries=retries, seed=seed
    )


def test_chat_streams_deltas_from_server_sent_events() -> None:
    with scripted_server() as s:
        s.script(
            "/v1/chat/completions", Reply(headers={"Content-Type": "text/event-stream"}, chunks=sse("Hel", "lo", "."))
        )
        deltas = list(
            chat(s.url).stream(
                [ChatMessage("system", "persona"), ChatMessage("user", "hi")], max_tokens=20, temperature=0.2
            )
        )
        body = json.loads(s.seen[-1].body)
    assert deltas == ["Hel", "lo", "."]
    assert body["stream"] is True and body["model"] == "super-intelligence" and body["max_tokens"] == 20
    assert body["messages"][0] == {"role": "system", "content": "persona"}
    assert s.seen[-1].headers["authorization"] == "Bearer k"
    assert "seed" not in body  # sampling varies unless a seed is configured


def test_chat_sends_the_configured_seed() -> None:
    with scripted_server() as s:
        s.script("/v1/chat/completions", Reply(headers={"Content-Type": "text/event-stream"}, chunks=sse("Hi.")))
        assert list(chat(s.url, seed=42).stream([ChatMessage("user", "hi")], max_tokens=5, temperature=0.7)) == ["Hi."]
    assert json.loads(s.seen[-1].body)["seed"] == 42


def test_chat_retries_before_the_stream_and_reports_errors() -> None:
    with scripted_server() as s:
        s.script(
            "/v1/chat/completions",
            Reply(429, "wait", headers={"Retry-After": "0"}),
            Reply(502, "bad gateway"),
            Reply(chunks=sse("ok")),
        )
        assert list(chat(s.url).stream([ChatMessage("user", "hi")], max_tokens=5, temperature=0)) == ["ok"]
    with scripted_server() as s:
        s.script("/v1/chat/completions", Reply(401, {"error": {"message": "bad key"}}))
        with pytest.raises(CloudError, match="rejected the API key"):
            list(chat(s.url).stream([ChatMessage("user", "hi")], max_tokens=5, temperature=0))
        assert len(s.seen) == 1  # a 401 is not retried
    with scripted_server() as s:
        s.script("/v1/chat/completions", Reply(chunks=[b"data: {not json}\n\n"]))
        with pytest.raises(CloudError, match="malformed event"):
            list(chat(s.url).stream([ChatMessage("user", "hi")], max_tokens=5, temperature=0))


def elevenlabs_chunk(pcm: np.ndarray, chars: str, t0: float) -> bytes:
    step = (len(pcm) / 22050) / max(1, len(chars))
    alignment = {
        "characters": list(chars),
        "character_start_times_seconds": [t0 + k * step for k in range(len(chars))],
        "character_end_times_seconds": [t0 + (k + 1) * step for k in range(len(chars))],
    }
    body = {"audio_base64": base64.b64encode(pcm.astype("<i2").tobytes()).decode(), "alignment": alignment}
    return (json.dumps(body) + "\n").encode()


def test_elevenlabs_stream_with_timestamps_drives_lip_sync() -> None:
    pcm = (3000 * np.sin(np.arange(22050) / 5)).astype(np.int16)
    with scripted_server() as s:
        s.script(
            "/v1/text-to-speech/voice-1/stream/with-timestamps",
            Reply(chunks=[elevenlabs_chunk(pcm[:11025], "Hi th", 0.0), elevenlabs_chunk(pcm[11025:], "ere.", 0.5)]),
        )
        tts = ElevenLabsTTS(api_key="xi", voice_id="voice-1", base_url=s.url, timeout=5)
        speech = tts.synthesize("Hi there.", voice="elevenlabs:voice-1", language="uk")
        seen = s.seen[-1]
    assert speech.sample_rate == 22050 and len(speech.samples) == 22050
    assert seen.headers["xi-api-key"] == "xi" and "output_format=pcm_22050" in seen.path
    assert json.loads(seen.body)["language_code"] == "uk"
    assert speech.phonemes and [p.phoneme for p in speech.phonemes][:3] == ["h", "i", "θ"]
    assert tts.capabilities.speaks("uk")


def test_elevenlabs_errors() -> None:
    with scripted_server() as s:
        s.script("/v1/text-to-speech/v/stream/with-timestamps", Reply(401, {"detail": {"message": "invalid api key"}}))
        with pytest.raises(CloudError, match="rejected the API key"):
            ElevenLabsTTS(api_key="bad", voice_id="v", base_url=s.url).synthesize("x", voice="", language="en")
    with scripted_server() as s:
        s.script("/v1/text-to-speech/v/stream/with-timestamps", Reply(chunks=[b'{"audio_base64": 5}\n']))
        with pytest.raises(CloudError, match="malformed chunk"):
            ElevenLabsTTS(api_key="k", voice_id="v", base_url=s.url).synthesize("x", voice="", language="en")
