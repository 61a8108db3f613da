"""Assertion helpers for media and transcripts."""

from __future__ import annotations

import io
import re
import wave

import av
import jiwer
import numpy as np
import numpy.typing as npt


def normalize(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())


def word_error_rate(reference: str, hypothesis: str) -> float:
    return float(jiwer.wer(normalize(reference), normalize(hypothesis) or "<empty>"))


def wav_duration(data: bytes) -> float:
    with wave.open(io.BytesIO(data)) as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2
        return w.getnframes() / w.getframerate()


def probe_mp4(data: bytes) -> dict[str, float | str | int]:
    """Decode every frame of an mp4; return codecs, frame count and stream durations."""
    with av.open(io.BytesIO(data)) as c:
        assert c.format.name.startswith("mov"), c.format.name
        video = c.streams.video[0]
        audio = c.streams.audio[0]
        info: dict[str, float | str | int] = {
            "video_codec": video.codec_context.name,
            "audio_codec": audio.codec_context.name,
            "fps": float(video.average_rate or 0),
            "width": video.codec_context.width,
        }
        info["audio_stream_seconds"] = float(audio.duration * audio.time_base) if audio.duration else 0.0
        info["audio_frame_seconds"] = (audio.codec_context.frame_size or 1024) / audio.codec_context.sample_rate
        frames = sum(1 for _ in c.decode(video=0))
    with av.open(io.BytesIO(data)) as c:
        samples = sum(f.samples for f in c.decode(audio=0))
        rate = c.streams.audio[0].codec_context.sample_rate
    info["video_frames"] = frames
    info["video_seconds"] = frames / float(info["fps"])
    info["audio_seconds"] = samples / rate
    return info


def median_pitch(wav: bytes) -> float:
    """Median fundamental frequency (Hz) of the voiced 40 ms frames of a WAV, by autocorrelation."""
    with wave.open(io.BytesIO(wav)) as w:
        rate = w.getframerate()
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
    return median_pitch_of(x, rate)


def median_pitch_of(x: npt.NDArray[np.float32], rate: int) -> float:
    """Median fundamental frequency (Hz) of the voiced 40 ms frames of mono samples in [-1, 1]."""
    n = int(0.04 * rate)
    lo, hi = rate // 400, rate // 60
    pitches = []
    for start in range(0, len(x) - n, n // 2):
        frame = x[start : start + n] - x[start : start + n].mean()
        if np.sqrt(np.mean(frame**2)) < 0.02:
            continue
        ac = np.correlate(frame, frame, "full")[n - 1 :]
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] > 0.3 * ac[0]:  # clearly periodic: voiced
            pitches.append(rate / lag)
    return float(np.median(pitches)) if pitches else 0.0
