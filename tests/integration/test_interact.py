"""Interact end to end against the real server process and the embedded engines."""

from __future__ import annotations

import io
import json

import grpc
import numpy as np
import pytest
from avatar.v1 import avatar_pb2 as pb
from avatar.v1 import avatar_pb2_grpc as pb_grpc

from avatar_server.values import ARKIT_NAMES, VISEME_NAMES
from tests.conftest import Clip
from tests.helpers import median_pitch, probe_mp4, wav_duration, word_error_rate

pytestmark = pytest.mark.slow

MAX_WER = {"espeak": 0.2, "flite": 0.2, "arctic": 0.3, "alsa": 0.5}


@pytest.fixture(scope="module")
def stub(channel: grpc.Channel) -> pb_grpc.AvatarServiceStub:
    return pb_grpc.AvatarServiceStub(channel)


def check_full_response(resp: pb.InteractResponse) -> None:
    """Audio, video and track are all present and agree with each other."""
    assert resp.reply_text.strip()
    assert resp.session_id and resp.turn_id
    audio_seconds = wav_duration(resp.audio.data)
    assert resp.audio.mime_type == "audio/wav"
    assert resp.audio.duration_seconds == pytest.approx(audio_seconds, abs=1e-3)
    assert audio_seconds > 0.3

    video = probe_mp4(resp.video.data)
    assert resp.video.mime_type == "video/mp4"
    assert (video["video_codec"], video["audio_codec"]) == ("h264", "aac")
    assert video["fps"] == 25
    frame = 1 / 25
    assert abs(float(video["video_seconds"]) - audio_seconds) <= frame, video
    # The audio track's declared length (what players show) matches; decoding may add the encoder's
    # padding of its last AAC frame.
    assert abs(float(video["audio_stream_seconds"]) - audio_seconds) <= frame, video
    assert 0 <= float(video["audio_seconds"]) - audio_seconds <= frame + float(video["audio_frame_seconds"]), video
    assert resp.video.duration_seconds == pytest.approx(float(video["video_seconds"]), abs=1e-6)

    track = resp.animation
    assert list(track.names[: len(ARKIT_NAMES)]) == list(ARKIT_NAMES)
    assert list(track.names[len(ARKIT_NAMES) :]) == list(VISEME_NAMES)
    assert track.fps == 30
    assert abs(len(track.frames) / track.fps - audio_seconds) <= 1 / track.fps
    times = [f.time_seconds for f in track.frames]
    assert times == sorted(times) and times[0] == 0.0
    assert all(len(f.weights) == len(track.names) for f in track.frames)
    assert all(0.0 <= w <= 1.0 for f in track.frames for w in f.weights)
    jaw = [f.weights[list(track.names).index("jawOpen")] for f in track.frames]
    assert max(jaw) > 0.2, "the mouth never opens while speaking"

    t = resp.timings
    assert t.total_seconds >= t.llm_seconds > 0
    assert t.tts_seconds > 0 and t.animation_seconds > 0


def test_text_turn_returns_everything(stub: pb_grpc.AvatarServiceStub) -> None:
    resp = stub.Interact(pb.InteractRequest(text="Who are you?"), timeout=120)
    assert resp.transcription == "Who are you?"
    assert resp.timings.stt_seconds == 0
    assert resp.language == "en"
    check_full_response(resp)


@pytest.mark.parametrize("name", ["espeak", "flite", "arctic", "alsa"])
def test_audio_turn_transcribes_speech(stub: pb_grpc.AvatarServiceStub, clips: dict[str, Clip], name: str) -> None:
    clip = clips[name]
    resp = stub.Interact(
        pb.InteractRequest(audio=pb.AudioInput(data=clip.path.read_bytes(), mime_type="audio/wav")), timeout=120
    )
    wer = word_error_rate(clip.text, resp.transcription)
    assert wer <= MAX_WER[name], f"{clip.source}: heard {resp.transcription!r}, WER {wer:.2f}"
    assert resp.timings.stt_seconds > 0
    check_full_response(resp)


def test_grace_speaks_with_a_woman_s_voice_that_whisper_understands(stub: pb_grpc.AvatarServiceStub) -> None:
    audio_only = pb.OutputOptions(audio=True, video=False, animation=False)
    for question in ("Who are you?", "What did you build?"):
        resp = stub.Interact(pb.InteractRequest(text=question, outputs=audio_only), timeout=120)
        pitch = median_pitch(resp.audio.data)
        assert pitch > 160, f"Grace speaks with a woman's voice (median pitch {pitch:.0f} Hz)"
        # The reply's audio, heard by the server's own Whisper, says the reply.
        heard = stub.Interact(
            pb.InteractRequest(
                audio=pb.AudioInput(data=resp.audio.data, mime_type="audio/wav"), language="en", outputs=audio_only
            ),
            timeout=120,
        ).transcription
        wer = word_error_rate(resp.reply_text, heard)
        assert wer <= 0.2, f"said {resp.reply_text!r}, heard {heard!r} (WER {wer:.2f})"


def test_outputs_can_be_chosen(stub: pb_grpc.AvatarServiceStub) -> None:
    resp = stub.Interact(
        pb.InteractRequest(text="Say hello.", outputs=pb.OutputOptions(audio=True, video=False, animation=False)),
        timeout=120,
    )
    assert resp.audio.data and not resp.HasField("video") and not resp.HasField("animation")
    assert resp.timings.animation_seconds == 0
    resp = stub.Interact(pb.InteractRequest(text="Say hello.", outputs=pb.OutputOptions(animation=True)), timeout=120)
    assert resp.animation.frames and not resp.HasField("audio") and not resp.HasField("video")


def test_webm_opus_and_raw_pcm_inputs(stub: pb_grpc.AvatarServiceStub, clips: dict[str, Clip], tmp_path) -> None:  # type: ignore[no-untyped-def]
    import av
    import numpy as np

    from avatar_server.media.audio import decode_audio, to_pcm16

    clip = clips["espeak"]
    samples = decode_audio(clip.path.read_bytes(), "audio/wav", max_seconds=60, rate=48000)
    webm = tmp_path / "clip.webm"
    with av.open(str(webm), "w", format="webm") as c:  # what a browser's MediaRecorder sends
        s = c.add_stream("libopus", rate=48000, layout="mono")
        pcm = (samples * 32767).astype(np.int16)
        for i in range(0, len(pcm), 960):
            f = av.AudioFrame.from_ndarray(pcm[i : i + 960].reshape(1, -1), format="s16", layout="mono")
            f.sample_rate = 48000
            f.pts = i
            c.mux(s.encode(f))
        c.mux(s.encode(None))
    want = pb.OutputOptions(audio=False, video=False, animation=False)
    for data, mime in ((webm.read_bytes(), "audio/webm"), (to_pcm16(samples), "audio/pcm;rate=48000")):
        resp = stub.Interact(
            pb.InteractRequest(audio=pb.AudioInput(data=data, mime_type=mime), outputs=want), timeout=120
        )
        assert word_error_rate(clip.text, resp.transcription) <= 0.2, (mime, resp.transcription)


def test_session_memory_is_kept_and_isolated(stub: pb_grpc.AvatarServiceStub) -> None:
    first = stub.Interact(pb.InteractRequest(text="Hello!", outputs=pb.OutputOptions(audio=False)), timeout=120)
    again = stub.Interact(
        pb.InteractRequest(text="Hello again!", session_id=first.session_id, outputs=pb.OutputOptions(audio=False)),
        timeout=120,
    )
    other = stub.Interact(pb.InteractRequest(text="Hello!", outputs=pb.OutputOptions(audio=False)), timeout=120)
    assert again.session_id == first.session_id
    assert other.session_id != first.session_id
    assert len({first.turn_id, again.turn_id, other.turn_id}) == 3


def test_ukrainian_text_is_answered_with_a_ukrainian_voice(stub: pb_grpc.AvatarServiceStub) -> None:
    resp = stub.Interact(pb.InteractRequest(text="Привіт! Як справи?"), timeout=120)
    assert resp.language == "uk"
    check_full_response(resp)


def test_capabilities(stub: pb_grpc.AvatarServiceStub) -> None:
    caps = stub.GetCapabilities(pb.GetCapabilitiesRequest(), timeout=10)
    assert caps.default_avatar_id == "grace"
    assert [a.id for a in caps.avatars] == ["eileen", "grace"]
    assert {a.id: a.voice for a in caps.avatars}["eileen"] == "espeak:en-us+f3"
    voices = {v.id: v for v in caps.voices}
    assert {a.id: a.voice for a in caps.avatars}["grace"] == "festival:cmu_us_slt_arctic_hts"
    assert {"festival:cmu_us_slt_arctic_hts", "piper:en_US-joe-medium", "espeak:uk"} <= set(voices)
    assert {"en", "uk"} <= set(caps.languages)
    stages = {e.stage: e.name for e in caps.engines}
    assert stages["stt"] == "faster-whisper" and stages["llm"] == "llama-cpp"
    assert stages["animator"] == "portrait"


def first_video_frame(mp4: bytes) -> np.ndarray:
    import av

    with av.open(io.BytesIO(mp4)) as container:
        frame = next(container.decode(video=0))
        return np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8)


def png_rgb(data: bytes, size: int) -> np.ndarray:
    import cv2

    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return np.asarray(cv2.cvtColor(cv2.resize(bgr, (size, size), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB))


def test_avatar_faces_for_clients(stub: pb_grpc.AvatarServiceStub) -> None:
    default = stub.GetAvatarFace(pb.GetAvatarFaceRequest(), timeout=30)
    assert default.avatar_id == "grace"
    model = json.loads(default.face_model_json)
    n = len(model["vertices"]) // 2
    assert n > 100 and max(model["triangles"]) < n and len(model["drivers"]) >= 10
    assert default.portrait_png.startswith(b"\x89PNG") and default.mouth_png.startswith(b"\x89PNG")
    eileen = stub.GetAvatarFace(pb.GetAvatarFaceRequest(avatar_id="eileen"), timeout=30)
    assert eileen.portrait_png != default.portrait_png
    with pytest.raises(grpc.RpcError) as err:
        stub.GetAvatarFace(pb.GetAvatarFaceRequest(avatar_id="nobody"), timeout=30)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND and "eileen, grace" in str(err.value.details())


def test_the_second_avatar_has_its_own_face_and_voice(stub: pb_grpc.AvatarServiceStub) -> None:
    resp = stub.Interact(pb.InteractRequest(text="Who are you?", avatar_id="eileen"), timeout=120)
    check_full_response(resp)
    frame = first_video_frame(resp.video.data).astype(int)
    size = frame.shape[0]
    faces = {
        a: png_rgb(stub.GetAvatarFace(pb.GetAvatarFaceRequest(avatar_id=a), timeout=30).portrait_png, size)
        for a in ("eileen", "grace")
    }
    # The video's first frame is Eileen's still portrait (H.264 changes pixels a little), not Grace's.
    own, other = np.abs(frame - faces["eileen"]).mean(), np.abs(frame - faces["grace"]).mean()
    assert own < 12 and own < 0.3 * other, (own, other)
    pitch = median_pitch(resp.audio.data)
    assert pitch > 160, f"Eileen speaks with a woman's voice (median pitch {pitch:.0f} Hz)"
