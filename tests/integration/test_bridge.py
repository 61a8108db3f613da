"""The REST bridge against real processes: bridge + avatar_server with the embedded engines."""

from __future__ import annotations

import io
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.conftest import ROOT, BridgeProcess, Clip, ServerProcess, free_port, start_bridge, stop_bridge
from tests.helpers import probe_mp4, wav_duration, word_error_rate

pytestmark = pytest.mark.slow
SEED_KEYS = {"transcription", "reply_text", "audio_url", "video_url", "processing_time"}


def silence_wav(seconds: float, rate: int = 16000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.zeros(int(seconds * rate), dtype="<i2").tobytes())
    return buf.getvalue()


@pytest.fixture(scope="module")
def http(bridge: BridgeProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=bridge.url, timeout=120) as client:
        yield client


def assert_error(resp: httpx.Response, status: int, code: str, text: str) -> None:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    assert text in body["error"]["message"], body


def test_text_interact_answers_the_seed_json_and_serves_media(http: httpx.Client) -> None:
    resp = http.post("/api/v1/avatar/interact", data={"text": "Who are you?"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) >= SEED_KEYS
    assert body["transcription"] == "Who are you?" and body["reply_text"]
    assert body["processing_time"] == pytest.approx(body["timings"]["total"])
    assert body["session_id"] and body["turn_id"]
    assert body["audio_url"].startswith("/static/audio/") and body["audio_url"].endswith(".wav")
    assert body["video_url"].startswith("/static/video/") and body["video_url"].endswith(".mp4")
    audio = http.get(body["audio_url"])
    assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"
    seconds = wav_duration(audio.content)
    assert seconds == pytest.approx(body["audio_duration"], abs=1e-3)
    video = http.get(body["video_url"])
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    info = probe_mp4(video.content)
    assert info["video_codec"] == "h264" and info["audio_codec"] == "aac"
    assert abs(float(info["video_seconds"]) - seconds) <= 0.04
    track = http.get(body["animation_url"]).json()
    assert track["fps"] == 30 and "jawOpen" in track["names"]
    assert abs(len(track["frames"]) / 30 - seconds) <= 1 / 30


def test_audio_upload_webm_and_wav(http: httpx.Client, clips: dict[str, Clip], tmp_path: Path) -> None:
    import av

    from avatar_server.media.audio import decode_audio

    clip = clips["espeak"]
    samples = decode_audio(clip.path.read_bytes(), "audio/wav", max_seconds=60, rate=48000)
    webm = tmp_path / "speech.webm"
    with av.open(str(webm), "w", format="webm") as c:
        s = c.add_stream("libopus", rate=48000, layout="mono")
        pcm = (samples * 32767).astype(np.int16)
        for i in range(0, len(pcm), 960):
            f = av.AudioFrame.from_ndarray(pcm[i : i + 960].reshape(1, -1), format="s16", layout="mono")
            f.sample_rate = 48000
            f.pts = i
            c.mux(s.encode(f))
        c.mux(s.encode(None))
    # The browser's MediaRecorder labels it audio/webm;codecs=opus.
    files = {"audio": ("speech.webm", webm.read_bytes(), "audio/webm;codecs=opus")}
    resp = http.post("/api/v1/avatar/interact", files=files, data={"outputs": "audio"})
    assert resp.status_code == 200, resp.text
    assert word_error_rate(clip.text, resp.json()["transcription"]) <= 0.2
    assert resp.json()["video_url"] is None
    # A wav labelled with a generic type is recognized by its content.
    files = {"audio": ("q.bin", clips["flite"].path.read_bytes(), "application/octet-stream")}
    resp = http.post("/api/v1/avatar/interact", files=files, data={"outputs": "animation"})
    assert resp.status_code == 200, resp.text
    assert "how are you" in resp.json()["transcription"].lower()


def test_session_is_kept(http: httpx.Client) -> None:
    first = http.post("/api/v1/avatar/interact", data={"text": "Hello", "outputs": "audio"}).json()
    second = http.post(
        "/api/v1/avatar/interact", data={"text": "Again", "session_id": first["session_id"], "outputs": "audio"}
    ).json()
    assert second["session_id"] == first["session_id"] and second["turn_id"] != first["turn_id"]


def test_range_requests(http: httpx.Client) -> None:
    body = http.post("/api/v1/avatar/interact", data={"text": "Hi", "outputs": "audio,video"}).json()
    full = http.get(body["video_url"]).content
    part = http.get(body["video_url"], headers={"Range": "bytes=100-299"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 100-299/{len(full)}"
    assert part.content == full[100:300]
    tail = http.get(body["video_url"], headers={"Range": "bytes=-50"})
    assert tail.status_code == 206 and tail.content == full[-50:]
    beyond = http.get(body["video_url"], headers={"Range": f"bytes={len(full) + 10}-"})
    assert beyond.status_code == 416
    assert http.head(body["audio_url"]).headers["accept-ranges"] == "bytes"


@pytest.mark.parametrize(
    ("kwargs", "status", "code", "text"),
    [
        ({"data": {}}, 400, "BAD_REQUEST", "either an 'audio' file or a 'text'"),
        ({"data": {"text": "  "}}, 400, "BAD_REQUEST", "either an 'audio' file or a 'text'"),
        (
            {"data": {"text": "x"}, "files": {"audio": ("a.wav", silence_wav(1), "audio/wav")}},
            400,
            "BAD_REQUEST",
            "exactly one",
        ),
        (
            {"files": {"audio": ("a.png", b"\x89PNG\r\n\x1a\n" + b"0" * 100, "image/png")}},
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            "not wav",
        ),
        (
            {"files": {"audio": ("a.mp3", b"ID3" + b"0" * 100, "audio/mpeg")}},
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            "audio/mpeg",
        ),
        ({"files": {"audio": ("a.wav", silence_wav(2), "audio/wav")}}, 422, "INVALID_ARGUMENT", "No speech"),
        ({"data": {"text": "hi", "avatar_id": "nobody"}}, 422, "INVALID_ARGUMENT", "Unknown avatar"),
        ({"data": {"text": "hi", "outputs": "smell"}}, 422, "INVALID_ARGUMENT", "Unknown outputs"),
        ({"data": {"text": "a" * 2001}}, 413, "PAYLOAD_TOO_LARGE", "2000 characters"),
        ({"files": {"audio": ("long.wav", silence_wav(121), "audio/wav")}}, 413, "PAYLOAD_TOO_LARGE", "120 s"),
    ],
)
def test_errors(http: httpx.Client, kwargs: dict[str, object], status: int, code: str, text: str) -> None:
    assert_error(http.post("/api/v1/avatar/interact", **kwargs), status, code, text)  # type: ignore[arg-type]


def test_unknown_media_and_bad_names(http: httpx.Client) -> None:
    assert_error(http.get("/static/video/AAAAAAAAAAAAAAAAAAAAAA.mp4"), 404, "NOT_FOUND", "No such media")
    traversal = http.get("/static/video/..%2F..%2Fetc%2Fpasswd")
    assert traversal.status_code == 404 and traversal.json()["error"]["code"] == "NOT_FOUND"
    assert_error(http.get("/static/secret/x.txt"), 404, "NOT_FOUND", "No such media")


def test_health_docs_and_widget(http: httpx.Client) -> None:
    assert http.get("/healthz").json()["status"] == "SERVING"
    assert http.get("/docs").status_code == 200
    assert "/api/v1/avatar/interact" in http.get("/openapi.json").json()["paths"]
    page = http.get("/")
    assert page.status_code == 200 and '<div id="root">' in page.text, "run `make test`: it builds the widget"


def test_upload_cap_is_enforced_while_streaming(server: ServerProcess, tmp_path: Path) -> None:
    small = start_bridge(tmp_path, server.target, {"AVATAR_MAX_UPLOAD_BYTES": str(1024 * 1024)})
    try:
        sent = 0

        def body() -> Iterator[bytes]:  # chunked: no Content-Length to refuse up front
            nonlocal sent
            yield b'--b\r\nContent-Disposition: form-data; name="audio"; filename="a.wav"\r\n\r\n'
            for _ in range(400):  # 400 x 64 KiB = 25 MiB offered
                sent += 65536
                yield b"\0" * 65536
            yield b"\r\n--b--\r\n"

        headers = {"content-type": "multipart/form-data; boundary=b"}
        try:
            resp = httpx.post(f"{small.url}/api/v1/avatar/interact", content=body(), headers=headers, timeout=60)
            assert_error(resp, 413, "PAYLOAD_TOO_LARGE", "1 MB limit")
        except httpx.HTTPError:
            pass  # the server may close the connection before we finish sending: also a refusal
        assert sent < 25 * 1024 * 1024, "the whole upload was read before refusing"
        declared = httpx.post(
            f"{small.url}/api/v1/avatar/interact",
            files={"audio": ("a.wav", b"\0" * (2 * 1024 * 1024), "audio/wav")},
            timeout=60,
        )
        assert_error(declared, 413, "PAYLOAD_TOO_LARGE", "1 MB limit")
    finally:
        stop_bridge(small)


def test_backend_down_is_503(tmp_path: Path) -> None:
    down = start_bridge(tmp_path, f"127.0.0.1:{free_port()}", {"AVATAR_GRPC_TIMEOUT_SECONDS": "5"})
    try:
        assert_error(httpx.get(f"{down.url}/healthz", timeout=30), 503, "UNAVAILABLE", "unavailable")
        resp = httpx.post(f"{down.url}/api/v1/avatar/interact", data={"text": "hi"}, timeout=30)
        assert_error(resp, 503, "UNAVAILABLE", "unavailable")
    finally:
        stop_bridge(down)


def test_old_media_is_deleted(server: ServerProcess, tmp_path: Path) -> None:
    quick = start_bridge(tmp_path, server.target, {"AVATAR_MEDIA_RETENTION_SECONDS": "1"})
    try:
        body = httpx.post(
            f"{quick.url}/api/v1/avatar/interact", data={"text": "Hi", "outputs": "audio"}, timeout=120
        ).json()
        assert httpx.get(f"{quick.url}{body['audio_url']}").status_code in (200, 404)
        # Retention counts from the last read (each GET keeps it): wait without reading, then ask once.
        deadline = time.monotonic() + 10
        while list((quick.media_dir / "audio").glob("*.wav")):
            assert time.monotonic() < deadline, "media outlived its retention"
            time.sleep(0.25)
        gone = httpx.get(f"{quick.url}{body['audio_url']}")
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "NOT_FOUND"
    finally:
        stop_bridge(quick)


def test_widget_build_exists() -> None:
    assert (ROOT / "clients" / "web" / "dist" / "index.html").is_file(), "make test builds the widget first"


def test_avatars_and_their_faces(http: httpx.Client) -> None:
    listed = http.get("/api/v1/avatars").json()
    assert listed["default"] == "grace"
    assert {a["id"]: a["name"] for a in listed["avatars"]} == {"eileen": "Eileen Collins", "grace": "Grace Hopper"}
    for avatar_id in ("grace", "eileen"):
        face = http.get(f"/api/v1/avatars/{avatar_id}/face")
        assert face.status_code == 200 and "max-age" in face.headers["cache-control"]
        model = face.json()
        assert model["avatarId"] == avatar_id and model["model"] == "mediapipe-face-mesh-478"
        n = len(model["vertices"]) // 2
        assert all(len(d["offsets"]) == 2 * n for d in model["drivers"])
        for key in ("portrait", "mouth"):
            image = http.get(model[key])
            assert image.status_code == 200 and image.headers["content-type"] == "image/png"
            assert image.content.startswith(b"\x89PNG")
    assert_error(http.get("/api/v1/avatars/nobody/face"), 404, "NOT_FOUND", "known avatars: eileen, grace")
    assert_error(http.get("/api/v1/avatars/grace/secret.txt"), 404, "NOT_FOUND", "portrait.png")
