"""Visemes, coarticulated tracks, the audio-only driver and the portrait renderer."""

from __future__ import annotations

import numpy as np
import pytest

from avatar_server.animation.track import frame_count, track_from_audio, track_from_phonemes
from avatar_server.animation.visemes import phoneme_visemes
from avatar_server.values import ARKIT_NAMES, TRACK_NAMES, VISEME_NAMES, PhonemeTiming


@pytest.mark.parametrize(
    ("ipa", "visemes"),
    [
        ("p", ["PP"]),
        ("m", ["PP"]),
        ("f", ["FF"]),
        ("θ", ["TH"]),
        ("tʃ", ["CH"]),
        ("s", ["SS"]),
        ("ˈɑː", ["aa"]),
        ("aɪ", ["aa", "I"]),
        ("oʊ", ["O", "U"]),
        ("ɹ", ["RR"]),
        ("k", ["kk"]),
        ("t̪", ["DD"]),
        ("ˈ", []),
    ],
)
def test_phoneme_visemes(ipa: str, visemes: list[str]) -> None:
    assert phoneme_visemes(ipa) == visemes


def test_names_are_arkit_then_the_15_oculus_visemes() -> None:
    assert len(VISEME_NAMES) == 15 and VISEME_NAMES[0] == "viseme_sil" and VISEME_NAMES[-1] == "viseme_U"
    assert {"jawOpen", "mouthClose", "mouthFunnel", "mouthPucker", "mouthSmileLeft", "eyeBlinkLeft"} <= set(ARKIT_NAMES)
    assert TRACK_NAMES == ARKIT_NAMES + VISEME_NAMES


def test_track_follows_phonemes_with_coarticulation_and_closures() -> None:
    phonemes = [PhonemeTiming("m", 0.2, 0.3), PhonemeTiming("ɑː", 0.3, 0.7), PhonemeTiming("p", 0.7, 0.8)]
    track = track_from_phonemes(phonemes, 1.0, 30)
    assert track.weights.shape == (30, len(TRACK_NAMES))
    assert track.weights.min() >= 0 and track.weights.max() <= 1
    aa, pp, sil = track.column("viseme_aa"), track.column("viseme_PP"), track.column("viseme_sil")
    assert aa[15] > 0.9 and sil[2] > 0.9 and sil[-1] > 0.5
    assert pp[6] >= 0.85  # the lips close fully for /m/, a little before it sounds (track.ANTICIPATION)
    assert 0.05 < aa[8] < 0.95  # vowel onset is blended, not a step
    jaw = track.column("jawOpen")
    assert jaw[15] > 0.5 and jaw[2] < 0.05


def test_audio_only_driver_opens_the_jaw_with_loudness() -> None:
    rate = 16000
    t = np.arange(rate) / rate
    samples = np.where(t > 0.5, 0.3 * np.sin(2 * np.pi * 220 * t), 0.0).astype(np.float32)
    track = track_from_audio(samples, rate, 30)
    jaw = track.column("jawOpen")
    assert len(jaw) == 30 and jaw[5] < 0.05 and jaw[25] > 0.3


def test_frame_count_covers_the_audio() -> None:
    assert frame_count(1.0, 25) == 25 and frame_count(1.001, 25) == 26 and frame_count(0.0, 25) == 1


def test_blinks_happen() -> None:
    track = track_from_phonemes([], 10.0, 30, seed=3)
    assert track.column("eyeBlinkLeft").max() == 1.0
