"""Bad input gets a clear status and message; the server keeps serving."""

from __future__ import annotations

import io
import wave

import grpc
import numpy as np
import pytest
from avatar.v1 import avatar_pb2 as pb
from avatar.v1 import avatar_pb2_grpc as pb_grpc

from tests.conftest import Clip

pytestmark = pytest.mark.slow
NO_MEDIA = pb.OutputOptions(audio=False, video=False, animation=False)


@pytest.fixture(scope="module")
def stub(channel: grpc.Channel) -> pb_grpc.AvatarServiceStub:
    return pb_grpc.AvatarServiceStub(channel)


def wav_of(seconds: float, rate: int = 16000, sound: str = "silence") -> bytes:
    n = int(seconds * rate)
    samples = {
        "silence": np.zeros(n),
        "noise": np.random.default_rng(0).standard_normal(n) * 300,  # Whisper alone wrote "1.5kg" here
        "tone": np.sin(2 * np.pi * 440 * np.arange(n) / rate) * 10000,
    }[sound]
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())
    return buf.getvalue()


def audio(data: bytes, mime: str) -> pb.InteractRequest:
    return pb.InteractRequest(audio=pb.AudioInput(data=data, mime_type=mime), outputs=NO_MEDIA)


CASES = {
    "neither audio nor text": (pb.InteractRequest(), grpc.StatusCode.INVALID_ARGUMENT, "either audio or text"),
    "blank text": (pb.InteractRequest(text="   "), grpc.StatusCode.INVALID_ARGUMENT, "text is empty"),
    "empty audio": (audio(b"", "audio/wav"), grpc.StatusCode.INVALID_ARGUMENT, "audio is empty"),
    "undecodable audio": (
        audio(b"\x00garbage" * 500, "audio/wav"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "could not be decoded",
    ),
    "wav sent as webm": (audio(wav_of(1.0), "audio/webm"), grpc.StatusCode.INVALID_ARGUMENT, "not audio/webm"),
    "unsupported mime type": (
        audio(b"GIF89a" * 10, "image/gif"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "Unsupported audio type",
    ),
    "missing mime type": (audio(wav_of(1.0), ""), grpc.StatusCode.INVALID_ARGUMENT, "Unsupported audio type"),
    "pcm without rate": (audio(b"\x00\x00" * 1600, "audio/pcm"), grpc.StatusCode.INVALID_ARGUMENT, "rate=16000"),
    "odd pcm": (audio(b"\x00" * 3201, "audio/pcm;rate=16000"), grpc.StatusCode.INVALID_ARGUMENT, "odd"),
    "audio over 120 s": (audio(wav_of(121.0), "audio/wav"), grpc.StatusCode.RESOURCE_EXHAUSTED, "limit is 120 s"),
    "text over cap": (pb.InteractRequest(text="a" * 2001), grpc.StatusCode.RESOURCE_EXHAUSTED, "limit is 2000"),
    "unknown avatar": (
        pb.InteractRequest(text="hi", avatar_id="nobody"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "Unknown avatar 'nobody'",
    ),
    "unknown voice": (pb.InteractRequest(text="hi", voice="nope:x"), grpc.StatusCode.INVALID_ARGUMENT, "Unknown voice"),
    "bad language": (
        pb.InteractRequest(text="hi", language="english!"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "language code",
    ),
    "bad session id": (pb.InteractRequest(text="hi", session_id="a b"), grpc.StatusCode.INVALID_ARGUMENT, "session_id"),
    "silence": (audio(wav_of(2.0), "audio/wav"), grpc.StatusCode.INVALID_ARGUMENT, "No speech"),
    "noise": (audio(wav_of(2.0, sound="noise"), "audio/wav"), grpc.StatusCode.INVALID_ARGUMENT, "No speech"),
    "tone": (audio(wav_of(2.0, sound="tone"), "audio/wav"), grpc.StatusCode.INVALID_ARGUMENT, "No speech"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_refused_clearly(stub: pb_grpc.AvatarServiceStub, case: str) -> None:
    request, code, message = CASES[case]
    with pytest.raises(grpc.RpcError) as err:
        stub.Interact(request, timeout=60)
    assert err.value.code() == code, err.value.details()
    assert message in err.value.details()


def test_audio_over_byte_cap(stub: pb_grpc.AvatarServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as err:
        stub.Interact(audio(b"\x00" * (25 * 1024 * 1024 + 2), "audio/pcm;rate=16000"), timeout=60)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "limit is 26.2 MB" in err.value.details()


def test_server_keeps_serving_after_bad_input(stub: pb_grpc.AvatarServiceStub, clips: dict[str, Clip]) -> None:
    for request, _, _ in CASES.values():
        with pytest.raises(grpc.RpcError):
            stub.Interact(request, timeout=60)
    resp = stub.Interact(audio(clips["flite"].path.read_bytes(), "audio/wav"), timeout=60)
    assert resp.transcription and resp.reply_text
