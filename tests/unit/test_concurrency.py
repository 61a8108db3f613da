"""Concurrency rules with fake engines (timing-sensitive logic): no deadlock, admission control, bounded
waits, cancels that land, live-session limits, the watchdog."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from avatar_server.core.admission import Admission
from avatar_server.core.engines import Engines
from avatar_server.core.events import ErrorEvent, Event, TurnCompleted
from avatar_server.core.service import AvatarCore
from avatar_server.core.session import ConversationSession
from avatar_server.engines.animator.portrait import PortraitAnimator
from avatar_server.engines.vad import SileroModel
from avatar_server.errors import Overloaded, StageTimeout, TooLarge
from avatar_server.personas import load_avatars
from avatar_server.settings import Settings
from avatar_server.values import ChatMessage, Outputs, SessionConfig, Speech, TurnRequest
from tests.unit.fakes import FakeLLM, FakeSTT, FakeTTS

AUDIO_ONLY = Outputs(audio=True, video=False, animation=False)


class LockingLLM(FakeLLM):
    """Like llama.cpp: one generation at a time, the lock held until the caller closes the iterator."""

    def __init__(self, reply: str = "One two three. Four five six. Seven eight nine.", delay: float = 0.005) -> None:
        super().__init__(reply)
        self.lock = threading.Lock()
        self.delay = delay
        self.tokens = 0
        self.active = 0

    def stream(self, messages: list[ChatMessage], *, max_tokens: int, temperature: float) -> Iterator[str]:
        with self.lock:
            self.active += 1
            try:
                for word in self.reply.split(" "):
                    time.sleep(self.delay)
                    self.tokens += 1
                    yield word + " "
            finally:
                self.active -= 1


class SlowTTS(FakeTTS):
    def __init__(self, name: str, languages: tuple[str, ...], delay: float) -> None:
        super().__init__(name, languages, seconds=0.5)
        self.delay = delay

    def synthesize(self, text: str, *, voice: str, language: str) -> Speech:
        time.sleep(self.delay)
        return super().synthesize(text, voice=voice, language=language)


@pytest.fixture(scope="module")
def animator() -> PortraitAnimator:
    return PortraitAnimator(load_avatars(Settings().avatars_dir), video_fps=25, video_size=128)


@pytest.fixture(scope="module")
def vad() -> SileroModel:
    return SileroModel()


@pytest.fixture
def make_core(animator: PortraitAnimator, vad: SileroModel) -> Iterator[object]:
    cores: list[AvatarCore] = []

    def make(
        llm: FakeLLM, tts_delay: float = 0.01, live_llms: tuple[FakeLLM, ...] = (), **overrides: object
    ) -> AvatarCore:
        settings = Settings(**overrides)  # type: ignore[arg-type]
        avatars = load_avatars(settings.avatars_dir)
        avatars["grace"] = avatars["grace"].__class__(**{**avatars["grace"].__dict__, "voice": "espeak:en-us"})
        engines = Engines(
            stt=FakeSTT(),
            llm=llm,
            tts={"espeak": SlowTTS("espeak", ("en-us", "uk"), tts_delay)},
            fallback_tts="espeak",
            animator=animator,
            vad=vad,
            live_llms=live_llms,
        )
        core = AvatarCore(settings, engines, avatars)
        cores.append(core)
        return core

    yield make
    for core in cores:
        core.shutdown()


async def drain(session: ConversationSession, until: type, count: int = 1) -> list[Event]:
    seen: list[Event] = []
    stream = session.stream()
    async for event in stream:
        seen.append(event)
        if sum(isinstance(e, until) for e in seen) >= count:
            break
    await stream.aclose()
    return seen


@pytest.mark.parametrize("own_live_context", [False, True])
async def test_a_live_turn_and_eight_interacts_all_finish(make_core, own_live_context: bool) -> None:  # type: ignore[no-untyped-def]
    """The deadlock of issue 9: a live turn's LLM pauses for its first piece while Interacts queue for the
    LLM, in a 6-thread default executor. Every turn must finish, with one model context or two."""
    loop = asyncio.get_running_loop()
    loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(max_workers=6))
    llm = LockingLLM(delay=0.01)
    live_llms = (LockingLLM(delay=0.01), LockingLLM(delay=0.01)) if own_live_context else ()
    core = make_core(llm, tts_delay=0.05, live_llms=live_llms, max_running_turns=8, max_waiting_turns=8)
    session = ConversationSession(core, SessionConfig(outputs=AUDIO_ONLY))
    t0 = time.perf_counter()
    await session.text("tell me a long story")
    live = asyncio.create_task(drain(session, TurnCompleted))
    await asyncio.sleep(0.02)  # the live turn holds the model first
    interacts = [core.interact(TurnRequest(text=f"question {k}", outputs=AUDIO_ONLY)) for k in range(8)]
    results = await asyncio.wait_for(asyncio.gather(live, *interacts), 10)
    assert time.perf_counter() - t0 < 10
    assert all(r.reply_text for r in results[1:])  # type: ignore[union-attr]
    assert any(isinstance(e, TurnCompleted) for e in results[0])  # type: ignore[union-attr]
    await session.close()


async def test_excess_interacts_are_refused_at_once_with_a_retry_hint(make_core) -> None:  # type: ignore[no-untyped-def]
    llm = LockingLLM(delay=0.02)
    core = make_core(llm, max_running_turns=2, max_waiting_turns=2)

    async def one(k: int) -> tuple[str, float]:
        t0 = time.perf_counter()
        try:
            await core.interact(TurnRequest(text=f"q{k}", outputs=AUDIO_ONLY))
            return "served", time.perf_counter() - t0
        except Overloaded as exc:
            assert exc.retry_after_ms >= 250 and "busy" in exc.message
            return "refused", time.perf_counter() - t0

    outcomes = await asyncio.wait_for(asyncio.gather(*(one(k) for k in range(24))), 30)
    served = [t for kind, t in outcomes if kind == "served"]
    refused = [t for kind, t in outcomes if kind == "refused"]
    assert len(served) == 4 and len(refused) == 20  # 2 running + 2 waiting
    assert max(refused) < 1.0
    assert core.admission.running == 0 and core.admission.waiting == 0


async def test_a_deadline_the_queue_cannot_meet_is_refused_before_any_work(make_core) -> None:  # type: ignore[no-untyped-def]
    llm = LockingLLM(delay=0.05)
    core = make_core(llm, max_running_turns=1, max_waiting_turns=4)
    first = asyncio.create_task(core.interact(TurnRequest(text="first", outputs=AUDIO_ONLY)))
    await asyncio.sleep(0.05)
    calls = len(llm.seen)
    with pytest.raises(Overloaded, match="deadline"):
        await core.interact(TurnRequest(text="in a hurry", outputs=AUDIO_ONLY), time_remaining=0.5)
    assert len(llm.seen) == calls
    await first


async def test_cancelling_an_interact_frees_the_engine_and_keeps_no_memory(make_core) -> None:  # type: ignore[no-untyped-def]
    llm = LockingLLM(reply=" ".join(["word"] * 200) + ".", delay=0.02)
    core = make_core(llm, reply_max_chars=10_000, reply_max_sentences=5)
    task = asyncio.create_task(core.interact(TurnRequest(text="go on", session_id="s", outputs=AUDIO_ONLY)))
    while llm.tokens < 5:  # noqa: ASYNC110 - a counter in another thread
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    t0 = time.perf_counter()
    acquired = await asyncio.to_thread(llm.lock.acquire, True, 1.0)
    assert acquired, "the LLM was still generating 1 s after the cancel"
    llm.lock.release()
    assert time.perf_counter() - t0 < 1.0 and llm.tokens < 200
    assert core.memory.history("s") == []
    assert core.admission.running == 0
    llm.reply = "Next."
    result = await asyncio.wait_for(core.interact(TurnRequest(text="next", outputs=AUDIO_ONLY)), 2)
    assert result.reply_text == "Next."


async def test_a_stage_over_its_limit_ends_the_turn_naming_the_stage(make_core) -> None:  # type: ignore[no-untyped-def]
    core = make_core(LockingLLM(), tts_delay=0.6, tts_timeout_seconds=0.2)
    with pytest.raises(StageTimeout, match=r"text-to-speech stage took longer than 0\.2 s"):
        await core.interact(TurnRequest(text="hi", outputs=AUDIO_ONLY))
    core = make_core(LockingLLM(delay=0.5), llm_timeout_seconds=0.2)
    with pytest.raises(StageTimeout, match="language model"):
        await core.interact(TurnRequest(text="hi", outputs=AUDIO_ONLY))


async def test_typed_turns_past_the_pending_limit_get_an_error_event(make_core) -> None:  # type: ignore[no-untyped-def]
    core = make_core(LockingLLM(delay=0.01), max_pending_turns_per_session=3)
    session = ConversationSession(core, SessionConfig(outputs=AUDIO_ONLY, session_id="flood"))

    async def read() -> list[Event]:  # as a transport does, while the client sends
        return [e async for e in session.stream()]

    reader = asyncio.create_task(read())
    for k in range(1000):
        await session.text(f"turn {k}")
    await session.finish()
    events = await reader
    assert session.failure is None
    refused = [e for e in events if isinstance(e, ErrorEvent)]
    completed = [e for e in events if isinstance(e, TurnCompleted)]
    assert len(completed) == 3 and len(refused) == 997
    assert refused[0].code == "RESOURCE_EXHAUSTED" and "already waiting" in refused[0].message


async def test_audio_messages_are_bounded_in_size_and_rate(make_core) -> None:  # type: ignore[no-untyped-def]
    core = make_core(LockingLLM())
    session = ConversationSession(core, SessionConfig(sample_rate=16000, outputs=AUDIO_ONLY))
    with pytest.raises(TooLarge, match="at most 1 s of audio"):
        await session.audio(np.zeros(16000 * 200, dtype="<i2").tobytes())  # 200 s in one message
    await session.close()
    session = ConversationSession(core, SessionConfig(sample_rate=16000, outputs=AUDIO_ONLY))
    chunk = np.zeros(1600, dtype="<i2").tobytes()  # 100 ms
    with pytest.raises(TooLarge, match="faster than 2x real time"):
        for _ in range(600):  # 60 s of audio as fast as possible
            await session.audio(chunk)
    await session.close()
    # Real time passes: the same client streaming at real-time pace is fine.
    session = ConversationSession(core, SessionConfig(sample_rate=16000, outputs=AUDIO_ONLY))
    for _ in range(30):
        await session.audio(chunk)
        await asyncio.sleep(0.1)
    await session.close()


async def test_a_reader_that_stops_reading_ends_its_session_and_memory_stays_flat(make_core) -> None:  # type: ignore[no-untyped-def]
    llm = LockingLLM(reply=" ".join(["word"] * 300) + ".", delay=0.001)
    core = make_core(llm, converse_event_queue=32, reply_max_chars=10_000, reply_max_sentences=50)
    session = ConversationSession(core, SessionConfig(outputs=AUDIO_ONLY))
    await session.text("talk")  # nobody reads: deltas and audio pile up
    for _ in range(200):
        await asyncio.sleep(0.01)
        if session.failure is not None:
            break
    assert session.failure is not None and session.failure.code.value == "RESOURCE_EXHAUSTED"
    assert "did not read" in session.failure.message
    assert [e async for e in session.stream()] == []  # what nobody read was not kept
    await session.close()


async def test_live_sessions_past_the_limit_are_refused() -> None:
    admission = Admission(max_running=1, max_waiting=0, max_sessions=2)
    async with admission.session(), admission.session():
        with pytest.raises(Overloaded) as err:
            async with admission.session():
                pass
        assert err.value.retry_after_ms > 0
    async with admission.session():
        assert admission.sessions == 1


async def test_a_cancel_always_lands_wherever_the_turn_is(make_core) -> None:  # type: ignore[no-untyped-def]
    """Cancels at many points of a streaming turn: each must end it (none swallowed by a wait that ends at
    the same moment, as asyncio.wait_for does in Python 3.11), and none may leave memory behind."""
    llm = LockingLLM(reply=" ".join(["word"] * 300) + ".", delay=0.001)
    core = make_core(llm, tts_delay=0.001, reply_max_chars=10_000, reply_max_sentences=5)
    for k in range(40):
        task = asyncio.create_task(core.interact(TurnRequest(text="go", session_id=f"s{k}", outputs=AUDIO_ONLY)))
        await asyncio.sleep(0.002 * (k % 20))
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        else:
            raise AssertionError(f"cancel {k} was swallowed: the turn ran to its end")
        assert core.memory.history(f"s{k}") == []
