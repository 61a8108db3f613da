"""Bad input over gRPC against a real server: the right status, a message a person understands (no traceback,
no internals), the server healthy afterwards; session ids are issued by the server and bound to the caller."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from avatar.v1 import avatar_pb2 as pb
from avatar.v1 import avatar_pb2_grpc as pb_grpc

from tests.conftest import ServerProcess, start_server, stop_server
from tests.unit.test_input_hardening import encoded, wav_header_rate

pytestmark = pytest.mark.slow
NO_MEDIA = pb.OutputOptions(audio=False, video=False, animation=False)
MAX_SECONDS = 20
INVALID, EXHAUSTED = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED
INTERNALS = ("Traceback", 'File "', "Errno", "whisper", "llama", "ffmpeg", "0x", "/home", "/tmp", "127.0.0.1")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start_server(
        tmp_path_factory.mktemp("bad_input") / "server.log",
        {
            "AVATAR_MAX_AUDIO_SECONDS": str(MAX_SECONDS),
            "AVATAR_SESSION_SECRET": "test-secret",
            "AVATAR_LLM_TIMEOUT_SECONDS": "120",  # 400 tokens of question on cores shared with other tests
        },
        timeout=600,  # warm-up on busy shared cores
    )
    yield srv
    stop_server(srv)


@pytest.fixture(scope="module")
def channel(server: ServerProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.target) as ch:
        yield ch


@pytest.fixture(scope="module")
def stub(channel: grpc.Channel) -> pb_grpc.AvatarServiceStub:
    return pb_grpc.AvatarServiceStub(channel)


class Listener:
    """A local port that playlists point at: it must never see a connection."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/a"
        self.connections = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.done.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> int:
        self.done.set()
        self.thread.join()
        self.sock.close()
        return self.connections


LISTENER = Listener()


def audio(data: bytes, mime: str, **fields: str) -> pb.InteractRequest:
    return pb.InteractRequest(audio=pb.AudioInput(data=data, mime_type=mime), outputs=NO_MEDIA, **fields)


def text(value: str, **fields: str) -> pb.InteractRequest:
    return pb.InteractRequest(text=value, outputs=NO_MEDIA, **fields)


def field(number: int, value: bytes) -> bytes:
    """A length-delimited protobuf field (any bytes: a string field need not be UTF-8 on the wire)."""
    return bytes([(number << 3) | 2, len(value)]) + value


BAD_UTF8 = b"hi \xff\xfe there"
SPEECH = wav_header_rate(16000, seconds=0.5)

CASES: dict[str, tuple[pb.InteractRequest | bytes, grpc.StatusCode, str]] = {
    "wav header of 1 Hz": (audio(wav_header_rate(1), "audio/wav"), INVALID, "sample rate is 1 Hz"),
    "six channels": (audio(wav_header_rate(16000, channels=6), "audio/wav"), INVALID, "6 channels"),
    "flac in ogg": (audio(encoded("ogg", "flac", 1.0, rate=16000), "audio/ogg"), INVALID, "'flac'"),
    "adpcm in wav": (audio(encoded("wav", "adpcm_ms", 1.0, rate=16000), "audio/wav"), INVALID, "'adpcm_ms'"),
    "ogg opus of 5 minutes": (audio(encoded("ogg", "libopus", 300), "audio/ogg"), EXHAUSTED, "limit is 20 s"),
    "webm of 5 minutes stating no length": (
        audio(encoded("webm", "libopus", 300, options={"live": "1"}), "audio/webm"),
        EXHAUSTED,
        "limit is 20 s",
    ),
    "raw pcm over the cap": (audio(b"\x00\x00" * 8000 * 30, "audio/pcm;rate=8000"), EXHAUSTED, "limit is 20 s"),
    "hls playlist as wav": (
        audio(f"#EXTM3U\n#EXTINF:10,\n{LISTENER.url}.ts\n#EXT-X-ENDLIST\n".encode(), "audio/wav"),
        INVALID,
        "could not be decoded",
    ),
    "concat list as ogg": (
        audio(f"ffconcat version 1.0\nfile '{LISTENER.url}.wav'\n".encode(), "audio/ogg"),
        INVALID,
        "could not be decoded",
    ),
    "url as webm": (audio(LISTENER.url.encode(), "audio/webm"), INVALID, "could not be decoded"),
    "truncated wav": (audio(SPEECH[:30], "audio/wav"), INVALID, "audio"),
    "mime type of 1000 characters": (audio(SPEECH, "audio/" + "x" * 994), INVALID, "limit is 128"),
    "language tag of 6000 characters": (text("hi", language="en-" + "a" * 5997), INVALID, "at most 35"),
    "language zz with audio": (audio(SPEECH, "audio/wav", language="zz"), INVALID, "not served"),
    "language with a newline": (text("hi", language="en\n"), INVALID, "language code"),
    "zero-width text": (text("\u200b\u200c\u200d\u2060\ufeff"), INVALID, "empty"),
    "NUL text": (text("\x00" * 50), INVALID, "empty"),
    "session id of 129 characters": (text("hi", session_id="s" * 129), INVALID, "session_id"),
    "avatar id of 5000 characters": (text("hi", avatar_id="a" * 5000), INVALID, "limit is 128"),
    "unknown avatar": (text("hi", avatar_id="n" * 100), INVALID, "Unknown avatar"),
    "unknown voice": (text("hi", voice="v" * 100), INVALID, "Unknown voice"),
    "invalid UTF-8 in text": (field(2, BAD_UTF8), INVALID, "UTF-8"),
    "invalid UTF-8 in session_id": (field(2, b"hi") + field(3, BAD_UTF8), INVALID, "UTF-8"),
    "not protobuf": (b"\xff\xff\xff\xff\x0f garbage", INVALID, "not valid protobuf"),
}


def call_interact(channel: grpc.Channel, request: pb.InteractRequest | bytes) -> None:
    if isinstance(request, bytes):
        raw = channel.unary_unary("/avatar.v1.AvatarService/Interact")
        raw(request, timeout=60)
    else:
        pb_grpc.AvatarServiceStub(channel).Interact(request, timeout=60)


def plain(message: str, request: object) -> None:
    """A message for a person: short, no traceback, no internals, a sent name echoed at most 40 characters."""
    assert 0 < len(message) < 400, message
    for word in INTERNALS:
        assert word not in message, message
    assert "x" * 41 not in message and "n" * 41 not in message and "v" * 41 not in message


@pytest.mark.parametrize("case", list(CASES))
def test_bad_interact_input(channel: grpc.Channel, case: str) -> None:
    request, code, words = CASES[case]
    with pytest.raises(grpc.RpcError) as err:
        call_interact(channel, request)
    assert err.value.code() == code, err.value.details()
    assert words in err.value.details()
    plain(err.value.details(), request)


def test_get_avatar_face_bad_ids(channel: grpc.Channel, stub: pb_grpc.AvatarServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as err:
        channel.unary_unary("/avatar.v1.AvatarService/GetAvatarFace")(field(1, BAD_UTF8), timeout=30)
    assert err.value.code() == INVALID and "UTF-8" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        stub.GetAvatarFace(pb.GetAvatarFaceRequest(avatar_id="a" * 5000), timeout=30)
    assert err.value.code() == INVALID and "limit is 128" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        stub.GetAvatarFace(pb.GetAvatarFaceRequest(avatar_id="z" * 300), timeout=30)
    assert err.value.code() == INVALID and "z" * 41 not in err.value.details()


def converse_raw(channel: grpc.Channel, messages: list[bytes]) -> list[bytes]:
    call = channel.stream_stream("/avatar.v1.AvatarService/Converse")
    return list(call(iter(messages), timeout=30))


def test_converse_invalid_utf8_first_and_later(channel: grpc.Channel) -> None:
    with pytest.raises(grpc.RpcError) as err:
        converse_raw(channel, [field(1, field(1, BAD_UTF8))])  # config.session_id
    assert err.value.code() == INVALID and "UTF-8" in err.value.details()
    config = pb.ConverseRequest(config=pb.ConverseConfig(outputs=NO_MEDIA)).SerializeToString()
    with pytest.raises(grpc.RpcError) as err:
        converse_raw(channel, [config, field(3, BAD_UTF8)])
    assert err.value.code() == INVALID and "UTF-8" in err.value.details()


def test_converse_bad_config(stub: pb_grpc.AvatarServiceStub) -> None:
    for config, words in (
        (pb.ConverseConfig(language="x" * 5000), "at most 35"),
        (pb.ConverseConfig(session_id="s" * 500), "session_id"),
        (pb.ConverseConfig(avatar_id="a" * 500), "limit is 128"),
    ):
        with pytest.raises(grpc.RpcError) as err:
            list(stub.Converse(iter([pb.ConverseRequest(config=config)]), timeout=30))
        assert err.value.code() == INVALID and words in err.value.details()
        plain(err.value.details(), config)


@pytest.mark.parametrize("question", ["😀" * 2000, "Ж" * 2000])
def test_a_long_question_is_served_and_the_session_goes_on(stub: pb_grpc.AvatarServiceStub, question: str) -> None:
    first = stub.Interact(text(question), timeout=120)
    assert first.reply_text and first.session_id
    again = stub.Interact(text("Who are you?", session_id=first.session_id), timeout=120)
    assert again.reply_text and again.session_id == first.session_id


def test_session_ids_are_issued_and_bound_to_the_caller(stub: pb_grpc.AvatarServiceStub) -> None:
    first = stub.Interact(text("My name is Ada."), timeout=120)
    assert "." in first.session_id and len(first.session_id) >= 30
    same = stub.Interact(text("What is my name?", session_id=first.session_id), timeout=120)
    assert same.session_id == first.session_id
    chosen = stub.Interact(text("Hello.", session_id="demo"), timeout=120)  # a guessable id: a fresh session
    assert chosen.session_id not in ("demo", first.session_id)
    other = stub.Interact(
        text("What is my name?", session_id=first.session_id),
        metadata=(("authorization", "Bearer someone-else"),),
        timeout=120,
    )
    assert other.session_id != first.session_id  # another caller's id reads nobody's memory
    forged = first.session_id.split(".")[0] + ".AAAAAAAAAAAAAAAA"
    assert stub.Interact(text("Hi.", session_id=forged), timeout=120).session_id != forged


def test_converse_gets_an_issued_session_id(stub: pb_grpc.AvatarServiceStub) -> None:
    def requests() -> Iterator[pb.ConverseRequest]:
        yield pb.ConverseRequest(config=pb.ConverseConfig(session_id="demo", outputs=NO_MEDIA))
        yield pb.ConverseRequest(text="Hello!")

    events = []
    for event in stub.Converse(requests(), timeout=120):
        events.append(event)
        if event.WhichOneof("event") == "turn_completed":
            break
    ids = {e.session_id for e in events}
    assert len(ids) == 1 and "demo" not in ids and "." in next(iter(ids))


def test_no_network_no_traceback_and_still_serving(stub: pb_grpc.AvatarServiceStub, server: ServerProcess) -> None:
    for case in CASES.values():  # once more, all of them, then a normal turn
        with pytest.raises(grpc.RpcError):
            call_interact(grpc.insecure_channel(server.target), case[0])
    resp = stub.Interact(text("Hello, who are you?"), timeout=120)
    assert resp.reply_text
    assert LISTENER.close() == 0
    log = Path(server.log_path).read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]
