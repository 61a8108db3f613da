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
        ({"probability": 0.02}, 1500),  # incomplete: no need to wait for the words
        ({"failed": True}, 400),  # no model verdict: the fixed silence
    ],
)
def test_pause_verdict(known: dict[str, object], required: int | None) -> None:
    assert verdict(**known).required_ms() == required


def test_hanging_words() -> None:
    assert hangs("I was wondering how much the") and hangs("My sister told me that") and hangs("and then...")
    assert not hangs("What is that?") and not hangs("Tell me about the Navy.") and not hangs("")
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
