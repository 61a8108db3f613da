"""Lip-sync with the real engines: the mouth moves with the voice, in the track and in the rendered MP4.

The measurement is bench/lipsync.py's (`make bench` runs it over more replies): the lag of best
cross-correlation between the mouth's opening and the audio's loudness envelope, positive when the mouth
leads. Issue 10's targets: from 20 ms behind to 60 ms ahead, correlation at that lag >= 0.5.
"""

from __future__ import annotations

import statistics

import pytest

from bench.lipsync import REPLIES, TARGET_CORRELATION, TARGET_LAG, ReplyResult, build_engines, measure

pytestmark = pytest.mark.slow

# Four of the bench's replies (about 20 s of speech): a greeting, a fact, a saying, a story.
TEXTS = [REPLIES[0], REPLIES[1], REPLIES[2], REPLIES[7]]


@pytest.fixture(scope="module")
def results() -> list[ReplyResult]:
    tts, animator, avatar_id, voice = build_engines()
    return [measure(tts, animator, avatar_id, text, voice) for text in TEXTS]


def _report(results: list[ReplyResult], which: str) -> str:
    return "; ".join(
        f"{r.text[:24]!r}: {getattr(r, which).lag * 1000:+.0f} ms, r={getattr(r, which).correlation:.2f}"
        for r in results
    )


def test_track_mouth_moves_with_the_voice(results: list[ReplyResult]) -> None:
    lo, hi = TARGET_LAG
    for r in results:
        assert lo <= r.track.lag <= hi, f"track mouth offset out of [{lo}, {hi}] s: {_report(results, 'track')}"
        assert r.track.correlation >= TARGET_CORRELATION, f"track correlation too low: {_report(results, 'track')}"


def test_video_mouth_moves_with_the_voice(results: list[ReplyResult]) -> None:
    """Every reply's lag on target; the correlation's target on the median. The picture's dark opening is not
    loudness: rounded lips (sh, w) show a dark opening for quiet sounds, so a reply dense with them
    (REPLIES[2]) correlates at 0.53-0.58 in the video while its track is at about 0.6 (bench/README.md)."""
    lo, hi = TARGET_LAG
    for r in results:
        assert lo <= r.video.lag <= hi, f"video mouth offset out of [{lo}, {hi}] s: {_report(results, 'video')}"
        assert r.video.correlation >= 0.4, f"video correlation far too low: {_report(results, 'video')}"
    median = statistics.median(r.video.correlation for r in results)
    assert median >= TARGET_CORRELATION, f"video correlation too low: {_report(results, 'video')}"


def test_mp4_audio_is_not_shifted(results: list[ReplyResult]) -> None:
    """The MP4's audio plays when the reply audio does (AAC priming is skipped by the edit list)."""
    assert all(abs(r.audio_shift) <= 0.005 for r in results), [r.audio_shift for r in results]
