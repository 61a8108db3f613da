"""ConversationSession logic with fake engines: barge-in, memory, cleanup, endpointing."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import AsyncIterator, Iterator

import numpy as np
import pytest

from avatar_server.core.engines import Engines
from avatar_server.core.events import AudioChunkEvent, Event, ReplyDelta, TurnCompleted
from avatar_server.core.playback import Playback, PlaybackGuard
from avatar_server.core.service import AvatarCore as Pipeline
from avatar_server.core.session import ConversationSession
from avatar_server.engines.animator.portrait import PortraitAnimator
from avatar_server.engines.llm.reply import SentenceSplitter
from avatar_server.engines.vad import Endpointer, SileroModel, VadEvent
from avatar_server.errors import InvalidInput
from avatar_server.personas import load_avatars
from avatar_server.settings import Settings
from avatar_server.values import ChatMessage, SessionConfig
from tests.unit.fakes import FakeLLM, FakeSTT, FakeTTS


class SlowLLM(FakeLLM):
    """Yields a sentence every few tokens, slowly, and records how far it got."""

    def __init__(self) -> None:
        super().__init__()
        self.produced = 0
        self.finished = threading.Event()

    def stream(self, messages: list[ChatMessage], *, max_tokens: int, temperature: float) -> Iterator[str]:
        self.seen.append(messages)
        try:
            for k in range(200):
                time.sleep(0.02)
                self.produced += 1
                yield f" word{k}." if k % 3 == 2 else f" word{k}"
        finally:
            self.finished.set()


@pytest.fixture(scope="module")
def vad() -> SileroModel:
    return SileroModel()


def make_pipeline(vad: SileroModel, llm: FakeLLM, tts_seconds: float = 1.0) -> Pipeline:
    settings = Settings(reply_max_sentences=50, reply_max_chars=10_000)
    avatars = load_avatars(settings.avatars_dir)
    engines = Engines(
        stt=FakeSTT("hello there"),
        llm=llm,
        tts={
            "piper": FakeTTS("piper", ("en-us",), seconds=tts_seconds),
            "espeak": FakeTTS("espeak", ("en-us", "uk"), seconds=tts_seconds),
        },
        fallback_tts="espeak",
        animator=PortraitAnimator(avatars, video_fps=25, video_size=128),
        vad=vad,
    )
    return Pipeline(settings, engines, avatars)


_streams: dict[int, AsyncIterator[Event]] = {}


def events_of(session: ConversationSession) -> AsyncIterator[Event]:
    """The session's one event stream (what a transport reads)."""
    return _streams.setdefault(id(session), session.stream())


async def next_event(session: ConversationSession, kind: type) -> Event:  # type: ignore[type-arg]
    while True:
        event = await asyncio.wait_for(anext(events_of(session)), 10)
        if isinstance(event, kind):
            return event


async def rest_of(session: ConversationSession) -> list[Event]:
    return [event async for event in events_of(session)]


async def test_interrupt_stops_generation_and_memory_keeps_only_what_was_said(vad: SileroModel) -> None:
    llm = SlowLLM()
    pipeline = make_pipeline(vad, llm)
    tasks_before = asyncio.all_tasks()
    session = ConversationSession(pipeline, SessionConfig(session_id="s1"))
    await session.text("talk")
    chunk = await next_event(session, AudioChunkEvent)
    t0 = time.perf_counter()
    await session.interrupt()
    assert time.perf_counter() - t0 < 0.1  # the turn is stopped within 100 ms
    assert llm.finished.wait(1.0), "the LLM thread kept generating"
    produced = llm.produced
    await asyncio.sleep(0.3)
    assert llm.produced == produced
    history = pipeline.memory.history("s1")
    assert len(history) == 1 and history[0].user == "talk"
    spoken = history[0].assistant
    assert spoken.startswith("word0 word1 word2.") and len(spoken.split(".")) <= 4  # not the whole reply
    await session.close()
    after = [e for e in await rest_of(session) if e.turn_id == chunk.turn_id]
    assert [type(e) for e in after] == [TurnCompleted] and after[0].interrupted  # nothing else of the turn
    assert asyncio.all_tasks() <= tasks_before


async def test_close_cancels_everything_and_leaks_nothing(vad: SileroModel) -> None:
    llm = SlowLLM()
    pipeline = make_pipeline(vad, llm)
    tasks_before = asyncio.all_tasks()
    threads_before = {t.name for t in threading.enumerate() if not t.name.startswith("asyncio_")}
    session = ConversationSession(pipeline, SessionConfig())
    await session.text("talk")
    await next_event(session, ReplyDelta)
    await session.close()
    assert llm.finished.wait(1.0)
    assert asyncio.all_tasks() <= tasks_before
    assert {t.name for t in threading.enumerate() if not t.name.startswith("asyncio_")} == threads_before


async def test_finish_lets_the_turn_complete(vad: SileroModel) -> None:
    pipeline = make_pipeline(vad, FakeLLM("One. Two."))
    session = ConversationSession(pipeline, SessionConfig())
    await session.text("hi")
    await session.finish()
    events = await rest_of(session)
    done = events[-1]
    assert isinstance(done, TurnCompleted) and done.reply_text == "One. Two."


class PacedLLM(FakeLLM):
    """Streams its reply word by word at about 100 tokens per second, like the embedded model."""

    def stream(self, messages: list[ChatMessage], *, max_tokens: int, temperature: float) -> Iterator[str]:
        for word in super().stream(messages, max_tokens=max_tokens, temperature=temperature):
            time.sleep(0.01)
            yield word


@pytest.mark.parametrize(("audio_seconds", "cut_later"), [(10.0, False), (0.5, True)])
async def test_pieces_are_short_while_the_listener_has_little_audio(
    vad: SileroModel, audio_seconds: float, cut_later: bool
) -> None:
    reply = "The first compiler I wrote was called A-0 in the year of the Navy. Then it ran on the Mark I and II."
    pipeline = make_pipeline(vad, PacedLLM(reply), tts_seconds=audio_seconds)
    session = ConversationSession(pipeline, SessionConfig())
    await session.text("hi")
    await session.finish()
    pieces = [text for engine in pipeline.engines.tts.values() for text, _, _ in engine.calls]  # type: ignore[attr-defined]
    assert " ".join(pieces) == reply  # nothing lost or reordered
    assert pieces[0] == "The first compiler I wrote"  # nothing plays yet: the first piece is short
    # With 10 s of audio in hand the rest is spoken in whole sentences; with 0.5 s it is cut short again.
    assert any(not p.endswith(".") for p in pieces[1:]) == cut_later, pieces


def test_config_is_validated(vad: SileroModel) -> None:
    pipeline = make_pipeline(vad, FakeLLM())
    with pytest.raises(InvalidInput, match="Unknown avatar"):
        ConversationSession(pipeline, SessionConfig(avatar_id="zed"))
    with pytest.raises(InvalidInput, match="Unsupported audio encoding"):
        ConversationSession(pipeline, SessionConfig(encoding="mp3"))


def test_endpointer_hysteresis() -> None:
    ep = Endpointer(end_silence_ms=96, min_speech_ms=64, pause_ms=32)
    events = [ep.push(p) for p in [0.1, 0.9, 0.9, 0.9, 0.1, 0.9, 0.1, 0.1, 0.1, 0.1]]
    assert [e for e in events if e] == [
        VadEvent.SPEECH_STARTED,
        VadEvent.PAUSE,
        VadEvent.RESUMED,
        VadEvent.PAUSE,
        VadEvent.SPEECH_ENDED,
    ]


def test_silero_stream_hears_a_tone_burst_as_non_speech_and_silence_as_silence(vad: SileroModel) -> None:
    stream = vad.stream()
    probs = stream.process(np.zeros(16000, np.float32))
    assert len(probs) == 16000 // 512 and max(probs) < 0.2


def test_sentence_splitter() -> None:
    s = SentenceSplitter()
    assert s.feed("Hello") == [] and s.feed(" there. How") == ["Hello there."]
    assert s.feed(" are you? I") == ["How are you?"]
    assert s.flush() == "I"


def feed_tokens(s: SentenceSplitter, text: str) -> list[str]:
    """Feed word pieces as an LLM streams them; every piece emitted along the way, then the rest."""
    out: list[str] = []
    for token in re.findall(r"\s*\S{1,4}", text + " "):
        out += s.feed(token)
    rest = s.flush()
    return out + ([rest] if rest else [])


@pytest.mark.parametrize(
    ("text", "pieces"),
    [
        ("I'm Grace Hopper, a computer scientist. I wrote", ["I'm Grace Hopper,", "a computer scientist.", "I wrote"]),
        ("Well, I was born in 1906, in New York.", ["Well, I was born in 1906,", "in New York."]),  # not after 1 word
        # No comma: cut before a linking word, else after 7 words but not right after an article.
        (
            "Computers should speak the language of the people who use them.",
            ["Computers should speak the language", "of the people who use them."],
        ),
        ("The first compiler I wrote was the A-0 System.", ["The first compiler I wrote was", "the A-0 System."]),
        ("Yes. No, never.", ["Yes.", "No, never."]),
        ("Short one", ["Short one"]),
    ],
)
def test_pieces_are_cut_short_in_a_hurry(text: str, pieces: list[str]) -> None:
    assert feed_tokens(SentenceSplitter(min_words=3, max_words=7, hurry=True), text) == pieces


def test_without_hurry_pieces_are_whole_sentences() -> None:
    text = "The first compiler I wrote was the A-0 System, in 1952. Computers should speak our language."
    assert feed_tokens(SentenceSplitter(), text) == [
        "The first compiler I wrote was the A-0 System, in 1952.",
        "Computers should speak our language.",
    ]


def test_a_short_dip_is_not_a_pause() -> None:
    ep = Endpointer(end_silence_ms=320, min_speech_ms=64, pause_ms=64)
    events = [ep.push(p) for p in [0.9, 0.9, 0.1, 0.9, 0.1, 0.1, 0.9]]
    assert [e for e in events if e] == [VadEvent.SPEECH_STARTED, VadEvent.PAUSE, VadEvent.RESUMED]
    assert ep.speech_end_window == 4  # the pause began at the first silent window


async def test_new_work_steps_aside_for_a_reply_running_dry() -> None:
    guard = PlaybackGuard(margin=1.0, max_wait=0.3)
    playing = Playback(started=time.perf_counter(), sent_seconds=5.0)
    guard.add(playing)
    assert not guard.urgent() and await guard.yield_to_playback() < 0.05  # 5 s queued: no need to wait
    playing.sent_seconds = 0.5
    assert guard.urgent() and not guard.urgent(exclude=playing)
    waited = await guard.yield_to_playback()
    assert 0.25 < waited < 0.5  # bounded: a new turn is delayed, never starved
    guard.discard(playing)
    assert not guard.urgent()


def test_opus_packets_and_pcm_at_any_rate_become_16k_float() -> None:
    import av

    from avatar_server.core.audio_input import AudioInput

    rate = 48000
    tone = (0.3 * np.sin(2 * np.pi * 300 * np.arange(rate) / rate)).astype(np.float32)
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate = rate
    encoder.layout = "mono"
    encoder.format = "s16"
    packets = []
    pcm = (tone * 32767).astype(np.int16)
    for k in range(0, len(pcm), 960):  # 20 ms frames, as WebRTC sends them
        frame = av.AudioFrame.from_ndarray(pcm[k : k + 960].reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = rate
        frame.pts = k
        packets += [bytes(p) for p in encoder.encode(frame)]
    packets += [bytes(p) for p in encoder.encode(None)]
    opus = AudioInput("opus", 48000)
    decoded = np.concatenate([opus.convert(p) for p in packets])
    assert abs(len(decoded) - 16000) < 1600 and 0.1 < float(np.abs(decoded).max()) <= 1.0
    pcm8k = AudioInput("pcm16", 8000)
    out = np.concatenate([pcm8k.convert(b"\0\x10" * 160) for _ in range(50)])  # 1 s at 8 kHz
    assert abs(len(out) - 16000) < 400
    with pytest.raises(InvalidInput, match="odd"):
        pcm8k.convert(b"\0")


def test_a_reply_still_being_written_is_protected_longer() -> None:
    class Source:
        generating = True

    guard = PlaybackGuard(margin=1.0, generating_margin=5.0)
    source = Source()
    guard.add(Playback(started=time.perf_counter(), sent_seconds=3.0, source=source))
    assert guard.urgent()  # 3 s queued, but more of the reply is still to be written and spoken
    source.generating = False
    assert not guard.urgent()
