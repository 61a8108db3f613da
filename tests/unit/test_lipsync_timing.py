"""Lip-sync timing without models: the offset measurement itself, Piper's alignments, the track's timing."""

from __future__ import annotations

import numpy as np
import pytest

from avatar_server.animation.track import ANTICIPATION, track_from_audio, track_from_phonemes
from avatar_server.engines.tts.piper import phoneme_timings
from avatar_server.values import PhonemeTiming
from bench.lipsync import RATE, TARGET_LAG, best_lag, held, loudness_envelope, track_offset

VOWELS = [(0.30, 0.55), (0.80, 1.00), (1.25, 1.60), (1.90, 2.05), (2.30, 2.70), (3.00, 3.20)]


def vowel_bursts(rate: int = 22050, seconds: float = 3.5) -> np.ndarray:
    """Loud 'vowels' at VOWELS (a 180 Hz voice with a harmonic near a first formant), silence between."""
    t = np.arange(int(seconds * rate)) / rate
    on = np.zeros_like(t, dtype=bool)
    for a, b in VOWELS:
        on |= (t >= a) & (t < b)
    voice = 0.3 * np.sin(2 * np.pi * 180 * t) + 0.2 * np.sin(2 * np.pi * 720 * t)
    return np.where(on, voice, 0.0).astype(np.float32)


def test_envelope_is_centred_on_its_window() -> None:
    rate = 16000
    x = np.zeros(rate, np.float32)
    x[8000:8032] = 1.0  # a 2 ms click at 0.5 s
    env = loudness_envelope(x, rate, 1.0)
    assert len(env) == RATE
    assert abs(int(np.argmax(env)) - RATE // 2) <= 2  # within 10 ms of the click, either side


def test_hold_shows_each_frame_until_the_next() -> None:
    v = held([1.0, 2.0, 3.0], [0.0, 0.1, 0.2], 0.3)
    assert len(v) == 60
    assert v[0] == v[19] == 1.0 and v[20] == v[39] == 2.0 and v[40] == v[59] == 3.0


@pytest.mark.parametrize("shift_ms", [-60, -20, 0, 35, 80])
def test_best_lag_is_positive_when_the_mouth_leads(shift_ms: int) -> None:
    env = loudness_envelope(vowel_bursts(), 22050, 3.5)
    k = shift_ms * RATE // 1000
    mouth = np.roll(env, -k)  # mouth(t) = env(t + shift): the mouth is `shift` ahead
    offset = best_lag(mouth, env)
    assert offset.lag == pytest.approx(shift_ms / 1000, abs=1e-9)
    assert offset.correlation > 0.9


def test_piper_alignments_become_sounds_where_they_sound() -> None:
    # (phoneme, its own samples, the pad after it), as Piper's alignments count them; 1000 samples/s.
    align = [
        ("^", 20, 10),
        ("h", 40, 20),
        ("ˈ", 60, 20),  # stress: the start of the vowel after it
        ("o", 80, 20),
        ("ː", 40, 20),  # length: more of the vowel before it
        (" ", 30, 10),  # word boundary: a short pause
        ("t", 30, 10),
        ("ʲ", 10, 10),  # a modifier letter: part of the sound before it
        ("!", 100, 20),
        ("$", 10, 0),
    ]
    got = phoneme_timings(align, offset=1000, rate=1000)
    assert [p.phoneme for p in got] == ["h", "o", "t"]
    h, o, t = got
    assert (h.start, h.end) == pytest.approx((1.025, 1.08))  # half of the pads on either side
    assert (o.start, o.end) == pytest.approx((1.08, 1.32))  # from the stress mark to the end of the length mark
    assert (t.start, t.end) == pytest.approx((1.365, 1.425))
    total = sum(own + pad for _, own, pad in align)
    assert total == 560 and all(1.0 <= p.start < p.end <= 1.0 + total / 1000 for p in got)


def test_phoneme_track_leads_the_sound() -> None:
    """The mouth opens ANTICIPATION before each vowel sounds, and a frame shows the middle of its time."""
    audio = vowel_bursts()
    phonemes = [PhonemeTiming("ɑ", a, b) for a, b in VOWELS]
    offset = track_offset(track_from_phonemes(phonemes, 3.5, 30), audio, 22050)
    assert offset.lag == pytest.approx(ANTICIPATION, abs=0.011)
    assert TARGET_LAG[0] <= offset.lag <= TARGET_LAG[1] and offset.correlation > 0.8


def test_audio_only_track_leads_the_sound() -> None:
    audio = vowel_bursts()
    offset = track_offset(track_from_audio(audio, 22050, 30), audio, 22050)
    assert offset.lag == pytest.approx(ANTICIPATION, abs=0.011)
    assert offset.correlation > 0.8
