"""Animation tracks on the audio clock: from phoneme timings (with coarticulation) or from audio alone."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from avatar_server.animation.visemes import SIL, VISEME_TO_ARKIT, phoneme_visemes
from avatar_server.values import ARKIT_NAMES, VISEMES, PhonemeTiming, Track

_FINE_RATE = 200  # Hz: phoneme targets are laid out finely, smoothed, then sampled at the track's fps
_COARTICULATION_SIGMA = 0.035  # s: neighbouring phonemes blend over about +-70 ms
# s: the lips reach each target this long before it sounds (anticipatory coarticulation: in speech the mouth
# moves before the sound, by 50-100 ms at an onset). With it the mouth leads the loudness envelope by about
# 20-40 ms (bench/lipsync.py); issue 10's window is 20 ms behind to 60 ms ahead.
ANTICIPATION = 0.04
_PP = VISEMES.index("PP")
_BLINK = (ARKIT_NAMES.index("eyeBlinkLeft"), ARKIT_NAMES.index("eyeBlinkRight"))


def frame_count(duration: float, fps: float) -> int:
    """Frames that cover `duration` seconds: the last frame starts before the audio ends."""
    return max(1, math.ceil(duration * fps - 1e-9))


def _gaussian_kernel(sigma_samples: float) -> npt.NDArray[np.float32]:
    radius = max(1, int(3 * sigma_samples))
    x = np.arange(-radius, radius + 1, dtype=np.float32)
    k = np.exp(-0.5 * (x / sigma_samples) ** 2)
    return np.asarray(k / k.sum(), dtype=np.float32)


def _smooth(fine: npt.NDArray[np.float32], sigma_s: float) -> npt.NDArray[np.float32]:
    kernel = _gaussian_kernel(sigma_s * _FINE_RATE)
    pad = len(kernel) // 2
    padded = np.pad(fine, ((pad, pad), (0, 0)), mode="edge")
    out = np.empty_like(fine)
    for j in range(fine.shape[1]):
        out[:, j] = np.convolve(padded[:, j], kernel, mode="valid")
    return out


def _sample(fine: npt.NDArray[np.float32], duration: float, fps: float) -> npt.NDArray[np.float32]:
    """Frame k is on screen during [k / fps, (k + 1) / fps): it shows the face at the middle of that time.

    (Taking the value at k / fps, the frame's start, showed every frame on average half a frame late.)
    """
    n = frame_count(duration, fps)
    idx = np.minimum(np.round((np.arange(n) + 0.5) / fps * _FINE_RATE).astype(int), len(fine) - 1)
    return np.asarray(fine[idx], dtype=np.float32)


def _lead(fine: npt.NDArray[np.float32], seconds: float) -> npt.NDArray[np.float32]:
    """The fine track `seconds` earlier (its last value held at the end)."""
    k = min(len(fine) - 1, round(seconds * _FINE_RATE))
    if k <= 0:
        return fine
    return np.concatenate([fine[k:], np.repeat(fine[-1:], k, axis=0)])


def _with_arkit_and_blinks(visemes: npt.NDArray[np.float32], fps: float, seed: int) -> Track:
    arkit = np.clip(visemes @ VISEME_TO_ARKIT, 0.0, 1.0)
    track = np.concatenate([arkit, visemes], axis=1).astype(np.float32)
    _add_blinks(track, fps, seed)
    return Track(fps=fps, weights=np.clip(track, 0.0, 1.0, out=track))  # smoothing may overshoot by an ulp


def _add_blinks(track: npt.NDArray[np.float32], fps: float, seed: int) -> None:
    """Natural blinks every 2-5 s, about 150 ms each (deterministic for a given seed)."""
    rng = np.random.default_rng(seed)
    n = len(track)
    t = rng.uniform(0.6, 2.0)
    while t * fps < n:
        start = int(t * fps)
        profile = (0.5, 1.0, 1.0, 0.4) if fps >= 20 else (1.0,)
        for k, w in enumerate(profile):
            if start + k < n:
                for col in _BLINK:
                    track[start + k, col] = max(track[start + k, col], w)
        t += rng.uniform(2.0, 5.0)


def track_from_phonemes(phonemes: list[PhonemeTiming], duration: float, fps: float, *, seed: int = 0) -> Track:
    """Visemes per phoneme, reached ANTICIPATION early, blended across neighbours (coarticulation), bilabial
    closures kept."""
    n_fine = max(1, math.ceil(duration * _FINE_RATE) + 1)
    fine = np.zeros((n_fine, len(VISEMES)), dtype=np.float32)
    fine[:, SIL] = 1.0
    closures: list[tuple[int, int]] = []
    for ph in phonemes:
        visemes = phoneme_visemes(ph.phoneme)
        if not visemes:
            continue
        start, end = max(0.0, ph.start - ANTICIPATION), max(0.0, ph.end - ANTICIPATION)
        a, b = round(start * _FINE_RATE), max(round(start * _FINE_RATE) + 1, round(end * _FINE_RATE))
        a, b = min(a, n_fine - 1), min(b, n_fine)
        # A diphthong spends 60 % on its start and 40 % gliding to its end.
        cuts = [a, b] if len(visemes) == 1 else [a, a + int(0.6 * (b - a)), b]
        for k, v in enumerate(visemes):
            idx = VISEMES.index(v)
            fine[cuts[k] : cuts[k + 1]] = 0.0
            fine[cuts[k] : cuts[k + 1], idx] = 1.0
            if idx == _PP:
                closures.append((cuts[k], cuts[k + 1]))
    smooth = _smooth(fine, _COARTICULATION_SIGMA)
    for a, b in closures:  # lips must really meet for p/b/m, whatever the neighbours
        mid_a, mid_b = a + (b - a) // 4, b - (b - a) // 4
        smooth[mid_a : max(mid_b, mid_a + 1), _PP] = np.maximum(smooth[mid_a : max(mid_b, mid_a + 1), _PP], 0.85)
    return _with_arkit_and_blinks(_sample(smooth, duration, fps), fps, seed)


def track_from_audio(samples: npt.NDArray[np.float32], rate: int, fps: float, *, seed: int = 0) -> Track:
    """For voices without phoneme timings: loudness opens the jaw; brightness spreads or rounds the lips."""
    duration = len(samples) / rate
    hop = max(1, rate // _FINE_RATE)
    n_fine = max(1, math.ceil(len(samples) / hop))
    padded = np.pad(samples.astype(np.float32), (0, n_fine * hop - len(samples)))
    frames = padded.reshape(n_fine, hop)
    rms = np.sqrt(np.mean(frames**2, axis=1) + 1e-12)
    db = 20 * np.log10(rms)
    loud = np.clip((db + 50.0) / 35.0, 0.0, 1.0)  # -50 dBFS is silence, -15 dBFS fully open
    zcr = np.mean(np.abs(np.diff(np.signbit(frames).astype(np.int8), axis=1)), axis=1)
    bright = np.clip((zcr - 0.05) / 0.25, 0.0, 1.0)
    fine = np.zeros((n_fine, len(VISEMES)), dtype=np.float32)
    fine[:, VISEMES.index("aa")] = loud * (1 - bright) * 0.8
    fine[:, VISEMES.index("E")] = loud * bright * 0.6
    fine[:, VISEMES.index("O")] = loud * (1 - bright) * 0.2
    fine[:, SIL] = 1.0 - loud
    smooth = _smooth(_lead(fine, ANTICIPATION), _COARTICULATION_SIGMA)
    return _with_arkit_and_blinks(_sample(smooth, duration, fps), fps, seed)
