"""The bad-input corpus: malformed media and messages over gRPC (Interact, Converse), REST and the WebSocket.

Each case must get the right status (gRPC code, HTTP code, or a WebSocket `error` event then close 1008), within a
time bound, with a message a person can read: no traceback, file path, internal address or exception class name,
and no 10,000-character id echoed back. Playlists disguised as audio must not make anything connect to the URL they
name. After the whole corpus both processes are healthy, serve a normal turn, and have logged no traceback.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import numpy.typing as npt
import pytest
from avatar.v1 import avatar_pb2 as pb
from avatar.v1 import avatar_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from avatar_server.media.audio import decode_audio
from tests import bad_inputs as bad
from tests.conftest import (
    SERVICE,
    BridgeProcess,
    Clip,
    ServerProcess,
    start_bridge,
    start_server,
    stop_bridge,
    stop_server,
)

pytestmark = pytest.mark.slow
NO_MEDIA = pb.OutputOptions(audio=False, video=False, animation=False)
IA, RE = "INVALID_ARGUMENT", "RESOURCE_EXHAUSTED"
WS_REFUSED = ("ws:INVALID_ARGUMENT:1008",)
WS_TOO_BIG = ("ws:INVALID_ARGUMENT:1008", "ws:none:1009")  # an error event + 1008, or the server's own 1009
LONG = 10_000


@dataclass
class Listener:
    """A TCP listener on loopback that counts the connections made to it."""

    port: int
    connections: int = 0


@dataclass(frozen=True)
class Outcome:
    code: str  # "OK", a gRPC status name, an HTTP status ("422"), or "ws:<error code>:<close code>"
    message: str
    seconds: float


@dataclass
class Env:
    stub: pb_grpc.AvatarServiceStub
    raw_interact: Callable[..., Any]
    raw_converse: Callable[..., Any]
    http: httpx.Client
    ws_url: str
    speech: npt.NDArray[np.float32]  # 16 kHz mono
    speech_wav: bytes
    port: int  # the listener's

    def grpc(self, request: pb.InteractRequest) -> Outcome:
        return _timed(lambda: self._grpc(lambda: self.stub.Interact(request, timeout=60)))

    def raw(self, **fields: bytes) -> Outcome:
        return _timed(lambda: self._grpc(lambda: self.raw_interact(bad.raw_interact_request(**fields), timeout=60)))

    @staticmethod
    def _grpc(call: Callable[[], object]) -> tuple[str, str]:
        try:
            call()
        except grpc.RpcError as exc:
            return exc.code().name, exc.details() or ""
        return "OK", ""

    def converse(self, *messages: pb.ConverseRequest | bytes) -> Outcome:
        """Send the messages, then take events up to the first error (or the end of the call)."""

        def run() -> tuple[str, str]:
            raw = any(isinstance(m, bytes) for m in messages)
            wire = [m if isinstance(m, bytes) else m.SerializeToString() for m in messages] if raw else messages
            call = (self.raw_converse if raw else self.stub.Converse)(iter(wire), timeout=60)
            try:
                for ev in call:
                    if ev.HasField("error"):
                        call.cancel()
                        return ev.error.code, ev.error.message
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.CANCELLED:
                    return exc.code().name, exc.details() or ""
            return "OK", ""

        return _timed(run)

    def rest(self, *, files: dict[str, Any] | None = None, **data: str) -> Outcome:
        def run() -> tuple[str, str]:
            resp = self.http.post("/api/v1/avatar/interact", data=data, files=files)
            try:
                return str(resp.status_code), str(resp.json()["error"]["message"])
            except (ValueError, KeyError, TypeError):
                return str(resp.status_code), resp.text

        return _timed(run)

    def rest_audio(self, data: bytes, mime: str, **fields: str) -> Outcome:
        return self.rest(files={"audio": ("a", data, mime)}, **fields)

    def ws(self, *frames: str | bytes) -> Outcome:
        """Send the frames; the first error event (its code) and the close code, or 'open' if still open after it."""

        def run() -> tuple[str, str]:
            code, message = "none", ""
            with connect(self.ws_url, max_size=None, proxy=None, open_timeout=10) as ws:
                try:
                    for frame in frames:
                        ws.send(frame)
                    end = time.monotonic() + 30
                    while True:
                        got = ws.recv(timeout=max(0.1, end - time.monotonic()))
                        if isinstance(got, str) and json.loads(got).get("type") == "error":
                            code, message = json.loads(got)["code"], json.loads(got)["message"]
                            end = min(end, time.monotonic() + 3)  # then the close, if one comes
                except ConnectionClosed as closed:
                    return f"ws:{code}:{closed.rcvd.code if closed.rcvd else 'none'}", message
                except TimeoutError:
                    return f"ws:{code}:open", message
            raise AssertionError("unreachable")

        return _timed(run)


def _timed(run: Callable[[], tuple[str, str]]) -> Outcome:
    t0 = time.monotonic()
    code, message = run()
    return Outcome(code, message, time.monotonic() - t0)


def pcm(data: bytes, rate: str) -> pb.InteractRequest:
    return pb.InteractRequest(audio=pb.AudioInput(data=data, mime_type=f"audio/pcm;rate={rate}"), outputs=NO_MEDIA)


def audio(data: bytes, mime: str, **fields: str) -> pb.InteractRequest:
    return pb.InteractRequest(audio=pb.AudioInput(data=data, mime_type=mime), outputs=NO_MEDIA, **fields)


def text(value: str, **fields: str) -> pb.InteractRequest:
    return pb.InteractRequest(text=value, outputs=NO_MEDIA, **fields)


def config(**fields: Any) -> pb.ConverseRequest:
    return pb.ConverseRequest(config=pb.ConverseConfig(**fields))


def ws_config(**fields: Any) -> str:
    return json.dumps({"type": "config", **fields})


INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff\x00\x00\u200b"
OGG_BOMB = bad.silence_bomb("ogg", hours=3)
WEBM_BOMB = bad.silence_bomb("webm", hours=3)
HUGE = b"\0" * (25 * 1024 * 1024 + 2)
WAV_1S = bad.wav_bytes(seconds=1.0)


@dataclass(frozen=True)
class Case:
    run: Callable[[Env], Outcome]
    expect: tuple[str, ...]
    words: tuple[str, ...] = ()  # the message names at least one of these (case-insensitive)
    max_seconds: float = 60.0
    listener: bool = False  # a playlist naming the listener's URL: nothing may connect to it


def _playlist_grpc(kind: str, mime: str) -> Case:
    return Case(lambda e: e.grpc(audio(bad.playlist_texts(e.port)[kind], mime)), (IA,), listener=True)


def _playlist_rest(kind: str, mime: str) -> Case:
    return Case(lambda e: e.rest_audio(bad.playlist_texts(e.port)[kind], mime), ("415",), listener=True)


def _playlists() -> dict[str, Case]:
    cases: dict[str, Case] = {}
    for kind in ("hls", "concat"):
        for mime in ("audio/wav", "audio/ogg", "audio/webm"):
            cases[f"grpc-{kind}-as-{mime}"] = _playlist_grpc(kind, mime)
    for kind, mime in (("hls", "audio/wav"), ("hls", "audio/ogg"), ("hls", "audio/webm"), ("concat", "audio/wav")):
        cases[f"rest-{kind}-as-{mime}"] = _playlist_rest(kind, mime)
    return cases


CASES: dict[str, Case] = {
    # gRPC Interact: media
    "grpc-empty-audio": Case(lambda e: e.grpc(audio(b"", "audio/wav")), (IA,), ("empty",)),
    "grpc-truncated-wav-header": Case(lambda e: e.grpc(audio(bad.truncated(WAV_1S, 30), "audio/wav")), (IA,)),
    "grpc-ogg-labelled-wav": Case(lambda e: e.grpc(audio(bad.ogg_opus(), "audio/wav")), (IA,), ("wav",)),
    "grpc-text-labelled-ogg": Case(lambda e: e.grpc(audio(b"hello, this is text\n" * 50, "audio/ogg")), (IA,)),
    "grpc-huge-pcm": Case(lambda e: e.grpc(pcm(HUGE, "16000")), (RE,), ("limit",)),
    "grpc-wav-header-1hz": Case(
        lambda e: e.grpc(audio(bad.wav_bytes(e.speech[:1600], header_rate=1), "audio/wav")), (IA,), ("rate", "hz")
    ),
    "grpc-wav-4khz": Case(lambda e: e.grpc(audio(bad.wav_bytes(e.speech, rate=4000), "audio/wav")), (IA,), ("hz",)),
    "grpc-wav-6-channels": Case(
        lambda e: e.grpc(audio(bad.wav_bytes(e.speech, channels=6), "audio/wav")), (IA,), ("channel",)
    ),
    "grpc-ogg-flac-codec": Case(lambda e: e.grpc(audio(bad.ogg_flac(e.speech), "audio/ogg")), (IA,), ("codec", "flac")),
    "grpc-pcm-rate-0": Case(lambda e: e.grpc(pcm(b"\0\0" * 1600, "0")), (IA,), ("rate",)),
    "grpc-pcm-rate-1e9": Case(lambda e: e.grpc(pcm(b"\0\0" * 1600, "1e9")), (IA,), ("rate",)),
    "grpc-pcm-rate-1000000000": Case(lambda e: e.grpc(pcm(b"\0\0" * 1600, "1000000000")), (IA,), ("rate",)),
    "grpc-ogg-opus-bomb": Case(lambda e: e.grpc(audio(OGG_BOMB, "audio/ogg")), (RE,), ("long", "limit"), 10),
    "grpc-webm-bomb": Case(lambda e: e.grpc(audio(WEBM_BOMB, "audio/webm")), (RE,), ("long", "limit"), 10),
    # gRPC Interact: strings and ids
    "grpc-bad-utf8-text": Case(lambda e: e.raw(text=b"hello \xff\xfe"), (IA,), ("utf-8",)),
    "grpc-bad-utf8-session": Case(lambda e: e.raw(text=b"hello", session_id=b"s\xc3\x28"), (IA,), ("utf-8",)),
    "grpc-bad-utf8-language": Case(lambda e: e.raw(text=b"hello", language=b"e\xed\xa0\x80"), (IA,), ("utf-8",)),
    "grpc-session-10k": Case(lambda e: e.grpc(text("hi", session_id="s" * LONG)), (IA,), ("session",)),
    "grpc-avatar-10k": Case(lambda e: e.grpc(text("hi", avatar_id="a" * LONG)), (IA,), ("avatar",)),
    "grpc-voice-10k": Case(lambda e: e.grpc(text("hi", voice="v" * LONG)), (IA,), ("voice",)),
    "grpc-language-6000": Case(lambda e: e.grpc(text("hi", language="a" * 6000)), (IA,), ("language",)),
    "grpc-language-zz-audio": Case(
        lambda e: e.grpc(audio(e.speech_wav, "audio/wav", language="zz")), (IA,), ("language",)
    ),
    "grpc-invisible-text": Case(lambda e: e.grpc(text(INVISIBLE)), (IA,), ("empty",)),
    # gRPC Converse
    "converse-audio-before-config": Case(lambda e: e.converse(pb.ConverseRequest(audio=b"\0\0")), (IA,), ("config",)),
    "converse-config-twice": Case(lambda e: e.converse(config(), config()), (IA,), ("config",)),
    "converse-language-6000": Case(lambda e: e.converse(config(language="a" * 6000)), (IA,), ("language",)),
    "converse-session-10k": Case(lambda e: e.converse(config(session_id="s" * LONG)), (IA,), ("session",)),
    "converse-rate-2e9": Case(
        lambda e: e.converse(config(input_format=pb.AudioFormat(sample_rate_hertz=2**31 - 1))), (IA,), ("hz",)
    ),
    "converse-language-zz": Case(
        lambda e: e.converse(config(language="zz"), pb.ConverseRequest(text="hello")), (IA,), ("language",)
    ),
    "converse-invisible-text": Case(lambda e: e.converse(config(), pb.ConverseRequest(text=INVISIBLE)), (IA,)),
    "converse-bad-utf8-text": Case(
        lambda e: e.converse(config().SerializeToString(), bad.raw_converse_text(b"hi \xff")), (IA,), ("utf-8",)
    ),
    # REST
    "rest-empty-audio": Case(lambda e: e.rest_audio(b"", "audio/wav"), ("400",)),
    "rest-truncated-wav-data": Case(lambda e: e.rest_audio(bad.truncated(WAV_1S, 200), "audio/wav"), ("422",)),
    "rest-ogg-labelled-wav": Case(lambda e: e.rest_audio(bad.ogg_opus(), "audio/wav"), ("422",)),
    "rest-text-labelled-ogg": Case(lambda e: e.rest_audio(b"just some text\n" * 20, "audio/ogg"), ("415",)),
    "rest-huge-wav": Case(lambda e: e.rest_audio(bad.wav_bytes(seconds=830), "audio/wav"), ("413",), ("limit",)),
    "rest-wav-header-1hz": Case(
        lambda e: e.rest_audio(bad.wav_bytes(e.speech[:1600], header_rate=1), "audio/wav"), ("422",), ("rate", "hz")
    ),
    "rest-wav-6-channels": Case(
        lambda e: e.rest_audio(bad.wav_bytes(e.speech, channels=6), "audio/wav"), ("422",), ("channel",)
    ),
    "rest-ogg-opus-bomb": Case(lambda e: e.rest_audio(OGG_BOMB, "audio/ogg"), ("413",), ("long", "limit"), 10),
    "rest-webm-bomb": Case(lambda e: e.rest_audio(WEBM_BOMB, "audio/webm"), ("413",), ("long", "limit"), 10),
    "rest-session-10k": Case(lambda e: e.rest(text="hi", session_id="s" * LONG, outputs="audio"), ("422",)),
    "rest-avatar-10k": Case(lambda e: e.rest(text="hi", avatar_id="a" * LONG, outputs="audio"), ("422",)),
    "rest-language-6000": Case(lambda e: e.rest(text="hi", language="a" * 6000), ("422",), ("language",)),
    "rest-language-zz-audio": Case(
        lambda e: e.rest_audio(e.speech_wav, "audio/wav", language="zz", outputs="audio"), ("422",), ("language",)
    ),
    # Blank after normalisation: the bridge's own "send audio or text" (400) or the server's refusal (422).
    "rest-invisible-text": Case(lambda e: e.rest(text=INVISIBLE, outputs="audio"), ("400", "422")),
    # WebSocket
    "ws-sample-rate-1e400": Case(lambda e: e.ws('{"type":"config","sample_rate":1e400}'), WS_REFUSED),
    "ws-sample-rate-negative": Case(lambda e: e.ws(ws_config(sample_rate=-1)), WS_REFUSED),
    "ws-sample-rate-string": Case(lambda e: e.ws(ws_config(sample_rate="fast")), WS_REFUSED),
    "ws-outputs-nested": Case(lambda e: e.ws(ws_config(outputs=[[1]])), WS_REFUSED, ("outputs",)),
    "ws-lone-surrogate": Case(lambda e: e.ws(ws_config(), '{"type":"text","text":"\\ud800"}'), WS_REFUSED),
    "ws-nested-100000": Case(lambda e: e.ws("[" * 100_000 + "]" * 100_000), WS_TOO_BIG),
    "ws-nested-30000": Case(lambda e: e.ws(ws_config(), "[" * 30_000 + "]" * 30_000), WS_REFUSED),
    "ws-invalid-json": Case(lambda e: e.ws('{"type": "config",'), WS_REFUSED, ("json",)),
    "ws-json-number": Case(lambda e: e.ws("42"), WS_REFUSED, ("json",)),
    "ws-binary-before-config": Case(lambda e: e.ws(b"\0\0" * 100), WS_REFUSED, ("config",)),
    "ws-1mib-text-frame": Case(lambda e: e.ws(ws_config(), "x" * (1 << 20)), WS_TOO_BIG),
    "ws-session-10k": Case(lambda e: e.ws(ws_config(session_id="s" * LONG)), WS_REFUSED, ("session",)),
    "ws-language-6000": Case(lambda e: e.ws(ws_config(language="a" * 6000)), WS_REFUSED, ("language",)),
    # A turn-level refusal, not a protocol error: the error event, and the socket may stay open.
    "ws-invisible-text": Case(
        lambda e: e.ws(ws_config(), json.dumps({"type": "text", "text": INVISIBLE})),
        ("ws:INVALID_ARGUMENT:open", "ws:INVALID_ARGUMENT:1008"),
    ),
    **_playlists(),
}


@pytest.fixture(scope="module")
def procs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, BridgeProcess]]:
    folder = tmp_path_factory.mktemp("bad_input")
    server = start_server(folder / "server.log", timeout=600)  # model warm-up is slow on a busy machine
    try:
        bridge = start_bridge(folder, server.target)
        try:
            yield server, bridge
        finally:
            stop_bridge(bridge)
    finally:
        stop_server(server)


@pytest.fixture(scope="module")
def listener() -> Iterator[Listener]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.settimeout(0.2)
    found = Listener(port=int(sock.getsockname()[1]))
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            found.connections += 1
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield found
    stop.set()
    thread.join(5)
    sock.close()


@pytest.fixture(scope="module")
def env(procs: tuple[ServerProcess, BridgeProcess], listener: Listener, clips: dict[str, Clip]) -> Iterator[Env]:
    server, bridge = procs
    options = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]
    speech = decode_audio(clips["espeak"].path.read_bytes(), "audio/wav", max_seconds=60)
    with (
        grpc.insecure_channel(server.target, options=options) as channel,
        httpx.Client(base_url=bridge.url, timeout=120) as http,
    ):
        yield Env(
            stub=pb_grpc.AvatarServiceStub(channel),
            raw_interact=channel.unary_unary(
                "/avatar.v1.AvatarService/Interact",
                request_serializer=None,
                response_deserializer=pb.InteractResponse.FromString,
            ),
            raw_converse=channel.stream_stream(
                "/avatar.v1.AvatarService/Converse",
                request_serializer=None,
                response_deserializer=pb.ConverseResponse.FromString,
            ),
            http=http,
            ws_url=bridge.url.replace("http://", "ws://") + "/api/v1/avatar/converse",
            speech=speech,
            speech_wav=bad.wav_bytes(speech),
            port=listener.port,
        )


def assert_plain(message: str) -> None:
    assert message.strip(), "an empty message"
    assert not bad.leaks(message), f"internals in the message {bad.leaks(message)}: {message[:300]!r}"
    assert len(message) <= 400, f"a {len(message)}-character message (input echoed back?): {message[:200]!r}..."


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(env: Env, listener: Listener, name: str) -> None:
    case = CASES[name]
    before = listener.connections
    outcome = case.run(env)
    assert outcome.code in case.expect, f"{name}: got {outcome.code} {outcome.message[:300]!r}, want {case.expect}"
    assert outcome.seconds <= case.max_seconds, f"{name}: answered after {outcome.seconds:.1f} s"
    if not outcome.code.startswith("ws:none"):  # a 1009 close carries no event
        assert_plain(outcome.message)
        lowered = outcome.message.lower()
        assert not case.words or any(w in lowered for w in case.words), f"{case.words} not in {outcome.message!r}"
    if case.listener:
        time.sleep(0.3)
        assert listener.connections == before, "the playlist made something connect to the URL it names"


@pytest.mark.parametrize(("script", "transport"), [("emoji", "grpc"), ("cyrillic", "rest")])
def test_long_unicode_text_then_a_normal_turn(env: Env, script: str, transport: str) -> None:
    """2,000 emoji or Cyrillic letters (thousands of tokens): served or RESOURCE_EXHAUSTED (413), never INTERNAL or
    a timeout; the session's next normal turn is served."""
    long_text = ("😀" if script == "emoji" else "ж") * 2000
    if transport == "grpc":
        session = env.stub.Interact(text("Hello!"), timeout=120).session_id
        outcome = env.grpc(text(long_text, session_id=session))
        assert outcome.code in ("OK", RE), outcome
        after = env.grpc(text("What is a compiler?", session_id=session))
        assert after.code == "OK", after
    else:
        first = env.http.post("/api/v1/avatar/interact", data={"text": "Hello!", "outputs": "audio"})
        session = first.json()["session_id"]
        outcome = env.rest(text=long_text, session_id=session, outputs="audio")
        assert outcome.code in ("200", "413"), outcome
        after = env.rest(text="What is a compiler?", session_id=session, outputs="audio")
        assert after.code == "200", after
    if outcome.code not in ("OK", "200"):
        assert_plain(outcome.message)


def test_healthy_after_the_corpus(env: Env, procs: tuple[ServerProcess, BridgeProcess]) -> None:
    server, bridge = procs
    assert server.proc.poll() is None and bridge.proc.poll() is None
    with grpc.insecure_channel(server.target) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=5)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert env.http.get("/healthz").json()["status"] == "SERVING"
    reply = env.http.post("/api/v1/avatar/interact", data={"text": "Who are you?", "outputs": "audio"})
    assert reply.status_code == 200 and reply.json()["reply_text"], reply.text
    assert env.stub.Interact(text("Who are you?"), timeout=120).reply_text
    for name, log in (("server", server.log()), ("bridge", bridge.log())):
        assert "Traceback" not in log, f"a traceback in the {name} log:\n{_around(log, 'Traceback')}"


def _around(log: str, needle: str) -> str:
    i = log.find(needle)
    return log[max(0, i - 300) : i + 1500]


def test_the_bombs_are_small_on_disk(tmp_path: Path) -> None:
    for name, data in (("ogg", OGG_BOMB), ("webm", WEBM_BOMB)):
        (tmp_path / f"bomb.{name}").write_bytes(data)
        assert len(data) < 1_000_000, f"{name} bomb is {len(data)} bytes"
