"""Property-based fuzzing against the real processes, bounded in examples and in wall time, reproducible.

- schemathesis: requests generated from the running bridge's own OpenAPI document, valid and invalid (negative
  mode), for every documented operation: no answer may be a 5xx.
- hypothesis: InteractRequest and ConverseRequest messages with odd unicode, huge or negative numbers and random
  bytes as audio under random mime types, sent to the real server: never INTERNAL or UNKNOWN (a status or an
  error event).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any, cast

import grpc
import hypothesis.strategies as st
import pytest
import schemathesis
from avatar.v1 import avatar_pb2 as pb
from avatar.v1 import avatar_pb2_grpc as pb_grpc
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable

from tests import bad_inputs as bad
from tests.conftest import BridgeProcess, ServerProcess, start_bridge, start_server, stop_bridge, stop_server

pytestmark = pytest.mark.slow
BUDGET_SECONDS = 45.0  # per test: examples past it are skipped (the count ran is asserted to be useful)
BAD_CODES = {"INTERNAL", "UNKNOWN"}
FUZZ = settings(
    max_examples=30,
    deadline=None,
    derandomize=True,  # the same examples on every run and in CI
    database=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: failures are collected, not raised
    suppress_health_check=list(HealthCheck),
)


class Budget:
    """Counts the examples run before a wall-clock budget ran out."""

    def __init__(self, seconds: float = BUDGET_SECONDS) -> None:
        self.end = time.monotonic() + seconds
        self.ran = 0

    def left(self) -> bool:
        if time.monotonic() > self.end:
            return False
        self.ran += 1
        return True


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """This module's own server (its log is this module's alone); model warm-up is slow on a busy machine."""
    srv = start_server(tmp_path_factory.mktemp("fuzz") / "server.log", timeout=600)
    yield srv
    stop_server(srv)


@pytest.fixture(scope="module")
def bridge(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BridgeProcess]:
    b = start_bridge(tmp_path_factory.mktemp("fuzz_bridge"), server.target)
    yield b
    stop_bridge(b)


@pytest.mark.parametrize("mode", [schemathesis.GenerationMode.NEGATIVE, schemathesis.GenerationMode.POSITIVE])
def test_bridge_openapi_never_answers_5xx(bridge: BridgeProcess, mode: schemathesis.GenerationMode) -> None:
    schema = schemathesis.openapi.from_url(f"{bridge.url}/openapi.json")
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    budget = Budget()
    operations = [cast(Any, result).ok() for result in schema.get_all_operations()]
    assert any(op.path == "/api/v1/avatar/interact" for op in operations), [op.label for op in operations]
    for op in operations:
        # An interact call with valid text is a real LLM turn: fewer of those.
        n = 6 if op.path == "/api/v1/avatar/interact" and mode == schemathesis.GenerationMode.POSITIVE else 10

        @settings(FUZZ, max_examples=n)
        @given(case=op.as_strategy(generation_mode=mode))
        def check(case: Any) -> None:
            if not budget.left():
                return
            resp = case.call(base_url=bridge.url, timeout=90)
            statuses[resp.status_code] += 1
            if resp.status_code >= 500:
                failures.append(f"{case.operation.label} -> {resp.status_code} {resp.text[:200]!r} for {case!r:.300}")

        try:
            check()
        except Unsatisfiable:  # nothing invalid can be built for it (e.g. GET /healthz has no inputs)
            assert mode == schemathesis.GenerationMode.NEGATIVE, op.label
    assert budget.ran >= 10, f"only {budget.ran} examples ran within {BUDGET_SECONDS} s"
    assert not failures, "\n".join(failures)
    assert any(400 <= code < 500 for code in statuses), statuses  # the invalid requests did reach the checks


MIME_TYPES = st.one_of(
    st.sampled_from(
        ["audio/wav", "audio/ogg", "audio/webm", "audio/opus", "audio/pcm;rate=16000", "audio/pcm;rate=-1", ""]
    ),
    st.sampled_from(["audio/pcm;rate=1e99", "audio/pcm;rate=", "video/webm", "application/x-mpegurl", "AUDIO/WAV"]),
    st.text(max_size=40),
)
HEADS = st.sampled_from([b"", b"RIFF\xff\xff\xff\xffWAVEfmt ", b"OggS\x00\x02", b"\x1a\x45\xdf\xa3", b"#EXTM3U\n"])
AUDIO_DATA = st.builds(lambda head, tail: head + tail, HEADS, st.binary(max_size=2048))
NAMES = st.one_of(st.sampled_from(["", "grace", "eileen", "en", "uk", "zz", "en-US", "a" * 300]), st.text(max_size=60))
ODD_TEXT = st.one_of(
    st.text(max_size=120),
    st.sampled_from(["", " ", "\u200b\u200d", "\x00", "😀" * 300, "ж" * 300, "e\u0301" * 50, "\u202e" + "hi"]),
)
NO_MEDIA = pb.OutputOptions(audio=False, video=False, animation=False)
NO_VIDEO = st.builds(lambda a, n: pb.OutputOptions(audio=a, video=False, animation=n), st.booleans(), st.booleans())


VALID_NAMES = {
    "session_id": st.just(""),
    "avatar_id": st.sampled_from(["", "grace", "eileen"]),
    "language": st.sampled_from(["", "en", "uk"]),
    "voice": st.just(""),
}


def names(draw: st.DrawFn) -> dict[str, str]:
    """Half the time names the server knows (so that the turn logic is reached), else anything."""
    valid = draw(st.booleans())
    return {field: draw(strategy if valid else NAMES) for field, strategy in VALID_NAMES.items()}


@st.composite
def interact_requests(draw: st.DrawFn) -> pb.InteractRequest:
    request = pb.InteractRequest(outputs=draw(NO_VIDEO), **names(draw))
    kind = draw(st.sampled_from(["text", "audio", "none"]))
    if kind == "text":
        request.text = draw(ODD_TEXT)
    elif kind == "audio":
        request.audio.CopyFrom(pb.AudioInput(data=draw(AUDIO_DATA), mime_type=draw(MIME_TYPES)))
    return request


INT32 = st.one_of(st.integers(-(2**31), 2**31 - 1), st.sampled_from([0, 1, 8000, 16000, 48000, 192001]))
UINT32 = st.one_of(st.integers(0, 2**32 - 1), st.sampled_from([0, 1, 300, 60_000]))


@st.composite
def converse_streams(draw: st.DrawFn) -> list[pb.ConverseRequest]:
    if draw(st.booleans()):  # half the streams get past the config and ask something, to reach the turn logic
        config = pb.ConverseConfig(input_format=pb.AudioFormat(encoding=1, sample_rate_hertz=16000), outputs=NO_MEDIA)
        question = draw(st.one_of(st.just("Hello!"), ODD_TEXT))
        messages = [pb.ConverseRequest(config=config), pb.ConverseRequest(text=question)]
    else:
        config = pb.ConverseConfig(
            input_format=pb.AudioFormat(encoding=draw(st.sampled_from([0, 1, 2, 7])), sample_rate_hertz=draw(INT32)),
            outputs=draw(NO_VIDEO),
            barge_in=draw(st.booleans()),
            end_silence_ms=draw(UINT32),
            interim_results=draw(st.booleans()),
            **names(draw),
        )
        messages = [pb.ConverseRequest(config=config)] if draw(st.integers(0, 9)) else []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["audio", "text", "eou", "interrupt", "config", "empty"]))
        messages.append(
            {
                "audio": lambda: pb.ConverseRequest(audio=draw(st.binary(max_size=4000))),
                "text": lambda: pb.ConverseRequest(text=draw(ODD_TEXT)),
                "eou": lambda: pb.ConverseRequest(end_of_utterance=pb.EndOfUtterance()),
                "interrupt": lambda: pb.ConverseRequest(interrupt=pb.Interrupt()),
                "config": lambda: pb.ConverseRequest(config=pb.ConverseConfig(language=draw(NAMES))),
                "empty": lambda: pb.ConverseRequest(),
            }[kind]()
        )
    return messages


@pytest.fixture(scope="module")
def stub(server: ServerProcess) -> Iterator[pb_grpc.AvatarServiceStub]:
    with grpc.insecure_channel(server.target) as channel:
        yield pb_grpc.AvatarServiceStub(channel)


def test_interact_never_internal(stub: pb_grpc.AvatarServiceStub, server: ServerProcess) -> None:
    failures: list[str] = []
    codes: Counter[str] = Counter()
    budget = Budget()

    @FUZZ
    @given(request=interact_requests())
    def check(request: pb.InteractRequest) -> None:
        if not budget.left():
            return
        try:
            stub.Interact(request, timeout=60)
            codes["OK"] += 1
        except grpc.RpcError as exc:
            codes[exc.code().name] += 1
            if exc.code().name in BAD_CODES or bad.leaks(exc.details() or ""):
                failures.append(f"{exc.code().name} {exc.details()!r:.200} for {request!r:.300}")

    check()
    assert budget.ran >= 10, f"only {budget.ran} examples ran within {BUDGET_SECONDS} s"
    assert not failures, "\n".join(failures)
    assert codes["OK"] and codes["INVALID_ARGUMENT"], codes  # both served and refused requests were made
    assert server.proc.poll() is None


def test_converse_never_internal(stub: pb_grpc.AvatarServiceStub, server: ServerProcess) -> None:
    failures: list[str] = []
    codes: Counter[str] = Counter()
    budget = Budget()

    @FUZZ
    @given(messages=converse_streams())
    def check(messages: list[pb.ConverseRequest]) -> None:
        if not budget.left():
            return
        try:
            for ev in stub.Converse(iter(messages), timeout=60):
                codes[ev.error.code if ev.HasField("error") else str(ev.WhichOneof("event"))] += 1
                if ev.HasField("error") and (ev.error.code in BAD_CODES or bad.leaks(ev.error.message)):
                    failures.append(f"error event {ev.error.code} {ev.error.message!r:.200} for {messages!r:.300}")
        except grpc.RpcError as exc:
            codes[exc.code().name] += 1
            if exc.code().name in BAD_CODES or bad.leaks(exc.details() or ""):
                failures.append(f"{exc.code().name} {exc.details()!r:.200} for {messages!r:.300}")

    check()
    assert budget.ran >= 10, f"only {budget.ran} examples ran within {BUDGET_SECONDS} s"
    assert not failures, "\n".join(failures)
    assert codes["turn_completed"] and codes["INVALID_ARGUMENT"], codes  # turns were served, and streams refused
    assert server.proc.poll() is None


def test_no_traceback_in_the_logs(server: ServerProcess, bridge: BridgeProcess) -> None:
    for name, log in (("server", server.log()), ("bridge", bridge.log())):
        i = log.find("Traceback")
        assert i < 0, f"a traceback in the {name} log:\n{log[max(0, i - 300) : i + 1500]}"
