"""The end-of-turn state machine with a fake turn model, the backchannel judge and the echo gate."""

from __future__ import annotations

import numpy as np
import pytest

from avatar_server.core.end_of_turn import PauseVerdict, hangs
from avatar_server.core.overlap import ReplyEcho, is_backchannel
from avatar_server.engines.vad import Endpointer, VadEvent


def verdict(**known: object) -> PauseVerdict:
    v = PauseVerdict(threshold=0.5, unsure=0.08, confirm_ms=160, fallback_ms=400, incomplete_ms=1500)
    for name, value in known.items():
        setattr(v, name, value)
    return v


@pytest.mark.parametrize(
    ("known", "required"),
    [
        ({}, None),  # nothing known yet: the longest wait holds
        ({"probability": 0.9}, None),  # complete by its sound: the words decide
        ({"probability": 0.9, "text": "What is COBOL?"}, 160),
        ({"probability": 0.9, "text": "Could you tell me what"}, 1500),  # the words hang
        ({"probability": 0.2, "text": "He was not an ill disposed young man."}, 400),  # unsure, words complete
        ({"probability": 0.01, "text": "And Mister John Dashwood had then leisure to consider how much"}, 1500),
        ({"probability": 0.02}, 1500),  # incomplete: the longest wait until the words come
        # Whisper writes "?" on cut-off statements too: the sound decides.
        ({"probability": 0.02, "text": "Had he married a more amiable woman he might have been made?"}, 1500),
        ({"probability": 0.9, "text": "Could you tell me what?"}, 1500),  # a question that hangs
        ({"failed": True}, 400),  # no model verdict: the fixed silence
    ],
)
def test_pause_verdict(known: dict[str, object], required: int | None) -> None:
    assert verdict(**known).required_ms() == required


def test_hanging_words() -> None:
    assert hangs("I was wondering how much the") and hangs("My sister told me that") and hangs("and then...")
    assert not hangs("What is that?") and not hangs("Tell me about the Navy.") and not hangs("")
    assert hangs("Could you tell me what?") and hangs("Is it the?") and not hangs("Where are you from?")
    assert not hangs("So what?")
    assert hangs("Я хотів би запитати про") and not hangs("Хто ви?")


def feed(ep: Endpointer, probs: list[float]) -> list[tuple[int, VadEvent]]:
    out = []
    for p in probs:
        event = ep.push(p)
        if event is not None:
            out.append((ep.windows, event))
    return out


def test_endpointer_waits_for_the_verdict_then_ends_on_it() -> None:
    """A fake turn model: at a pause it answers 'incomplete' (the person gets the long wait and goes on),
    at the next pause 'complete' (the turn ends after the short confirm silence)."""
    ep = Endpointer(end_silence_ms=1500)
    speech, silence = [0.9] * 20, [0.05]
    events = feed(ep, speech + silence * 2)
    assert [e for _, e in events] == [VadEvent.SPEECH_STARTED, VadEvent.PAUSE]
    assert not ep.require(1500)  # verdict at 64 ms: incomplete
    assert feed(ep, silence * 20) == []  # 700 ms more silence: still one utterance
    events = feed(ep, speech[:3] + silence * 2)
    assert [e for _, e in events] == [VadEvent.RESUMED, VadEvent.PAUSE]
    assert ep.required_ms == 1500  # a new pause: the long wait until its own verdict
    assert not ep.require(160)  # verdict at 64 ms: complete; 160 ms not yet reached
    events = feed(ep, silence * 3)
    assert [e for _, e in events] == [VadEvent.SPEECH_ENDED]
    assert not ep.in_speech and ep.required_ms == 1500


def test_a_late_verdict_ends_the_utterance_at_once() -> None:
    ep = Endpointer(end_silence_ms=1500)
    feed(ep, [0.9] * 20 + [0.05] * 8)  # 256 ms of silence before the verdict arrives
    assert ep.paused
    assert ep.require(160)  # complete, and the silence already lasted: the utterance ends now
    assert not ep.in_speech


@pytest.mark.parametrize(
    ("text", "backchannel"),
    [
        ("Mm-hmm.", True),
        ("Yeah.", True),
        ("Okay.", True),
        ("Right.", True),
        ("I see.", True),
        ("[laughs]", True),
        ("(coughing)", True),
        ("", True),
        ("MMA-CAM", True),  # Whisper's spelling of a synthetic "mm-hm"
        ("MMA change MMA changed MMA changes MMA changing MMA", True),  # and its loop on one
        ("Ага.", True),
        ("Wait, stop.", False),
        ("No, I meant the other one.", False),
        ("Really?", False),
        ("Sorry, what?", False),
        ("Зачекай.", False),
        ("Yeah, but that is not what I wanted to know", False),
    ],
)
def test_backchannel_judge(text: str, backchannel: bool) -> None:
    assert is_backchannel(text) is backchannel


def test_echo_gate_silences_the_reply_but_not_the_person() -> None:
    rate = 16000
    t = np.arange(rate * 2) / rate
    reply = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    echo = ReplyEcho(return_loss_db=20.0)
    now = 100.0
    echo.add("turn-1", reply, rate, 0.0, now)  # plays from now + 80 ms
    assert echo.audible(now + 1.0) and not echo.audible(now + 3.0)
    # 100 ms of microphone audio recorded 0.5 s into the reply: its echo at -20 dB.
    mic_echo = 0.1 * reply[8000:9600]
    assert not np.any(echo.gate(mic_echo, now + 0.08 + 0.6))
    # The person speaking over it (as loud as the reply) passes untouched.
    person = (0.3 * np.sin(2 * np.pi * 150 * t[:1600])).astype(np.float32)
    assert np.array_equal(echo.gate(person + mic_echo, now + 0.08 + 0.7), person + mic_echo)
    echo.stop()  # interrupted: the listener no longer hears it
    assert not echo.audible(now + 1.0)
    assert np.array_equal(echo.gate(mic_echo, now + 0.08 + 0.8), mic_echo)


class LoudnessVad:
    """A stand-in for Silero: a 32 ms window is speech when it is loud."""

    def __init__(self) -> None:
        self.pending = np.zeros(0, np.float32)

    def stream(self) -> LoudnessVad:
        return self

    def process(self, samples: np.ndarray) -> list[float]:
        data = np.concatenate([self.pending, samples])
        n = len(data) // 512
        self.pending = data[n * 512 :]
        return [0.95 if float(np.abs(w).max()) > 0.05 else 0.02 for w in data[: n * 512].reshape(-1, 512)]


class ScriptedTurnModel:
    """A fake turn model: returns its scripted probabilities, one per pause, in order."""

    def __init__(self, *answers: float) -> None:
        self.answers = list(answers)
        self.calls = 0

    def complete(self, samples: np.ndarray) -> float:
        self.calls += 1
        return self.answers.pop(0) if self.answers else 0.99


async def converse(model: ScriptedTurnModel, heard: str, pieces: list[tuple[float, float]]) -> list[object]:
    """Stream `pieces` ((seconds, amplitude): speech when loud) through a real session with a fake VAD, STT
    and turn model, as fast as the session allows; return the events."""
    import asyncio

    from avatar_server.core.session import ConversationSession
    from avatar_server.media.audio import to_pcm16
    from avatar_server.values import SessionConfig
    from tests.unit.fakes import FakeLLM, FakeSTT, fake_core

    core, _ = fake_core(FakeLLM("Fine."), stt=FakeSTT(heard), vad=LoudnessVad(), turn_model=model)
    session = ConversationSession(core, SessionConfig())  # type: ignore[arg-type]
    t = np.arange(16000 * 3) / 16000
    for seconds, amplitude in pieces:
        samples = (amplitude * np.sin(2 * np.pi * 200 * t[: int(seconds * 16000)])).astype(np.float32)
        for k in range(0, len(samples), 320):
            await session.audio(to_pcm16(samples[k : k + 320]))
            await asyncio.sleep(0.011)  # a little under 2x real time, the most a session accepts
    await session.finish()
    return [event async for event in session.stream()]


@pytest.mark.parametrize(
    ("answers", "heard", "turns"),
    [
        ((0.02, 0.9), "hello there", 1),  # incomplete at the first pause, complete at the second: one turn
        ((0.9, 0.9), "hello there", 2),  # complete at both: the first pause (700 ms) ends a turn; the second
        # utterance, over the reply to the first, is too long for a backchannel
        ((0.9, 0.9), "I was wondering how much the", 1),  # the model says complete but the words hang
    ],
)
async def test_session_ends_turns_by_the_verdict(answers: tuple[float, ...], heard: str, turns: int) -> None:
    from avatar_server.core.events import SpeechEnded, TurnCompleted

    model = ScriptedTurnModel(*answers)
    events = await converse(model, heard, [(0.2, 0.0), (1.0, 0.3), (0.7, 0.0), (1.5, 0.3), (2.0, 0.0)])
    assert len([e for e in events if isinstance(e, SpeechEnded)]) == turns, events
    done = [e for e in events if isinstance(e, TurnCompleted)]
    assert len(done) == turns and model.calls >= 2
    probability = done[-1].timings.end_of_turn_probability  # type: ignore[attr-defined]
    assert probability == pytest.approx(answers[-1] if turns == 1 or heard == "hello there" else 0.99)
    # Streamed at about 2x real time: the 160 ms confirm is under 0.15 s of wall time, the 1500 ms wait 0.7 s.
    waits = [e.timings.end_of_turn for e in done]  # type: ignore[attr-defined]
    assert all(0 < w < 0.15 for w in waits) if heard == "hello there" else waits[0] > 0.6, waits


def test_a_shorter_reply_after_a_longer_one_ends_when_it_ends() -> None:
    echo = ReplyEcho()
    long_reply, short_reply = np.full(16000 * 8, 0.2, np.float32), np.full(16000, 0.2, np.float32)
    echo.add("first", long_reply, 16000, 0.0, 0.0)
    echo.add("second", short_reply, 16000, 0.0, 20.0)  # plays 20.08 s .. 21.08 s
    assert echo.audible(21.0) and not echo.audible(21.5)


def test_turn_model_features_match_the_reference_that_ships_with_it() -> None:
    """Our features (faster-whisper's extractor, waveform-normalized, left-padded to 8 s) are the model's
    input as pipecat's own numpy implementation in the same wheel computes it; the model file is pinned."""
    import importlib.util

    from avatar_server import models
    from avatar_server.engines.turn_model import SmartTurnModel

    path = models.smart_turn()
    spec = importlib.util.spec_from_file_location("smart_turn_features", path.parents[1] / "_whisper_features.py")
    assert spec is not None and spec.loader is not None
    reference = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reference)  # numpy only: pipecat's framework is not imported
    model = SmartTurnModel(path)
    t = np.arange(16000 * 3) / 16000
    speech = (0.2 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    padded = np.concatenate([np.zeros(16000 * 5, np.float32), speech])
    ours = model.features(speech)
    assert ours.shape == (80, 800)
    assert np.abs(ours - reference.compute_whisper_log_mel_features(padded)).max() < 1e-4
    assert 0.0 <= model.complete(speech) <= 1.0
