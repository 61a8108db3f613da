"""Lip-sync benchmark: how far the mouth runs ahead of (or behind) the voice, in the track and in the MP4.

For each reply the avatar's real voice speaks, the embedded animator builds the track and the video, and the
mouth's opening is cross-correlated with the loudness envelope of the audio's 300-3000 Hz band (RMS over
20 ms windows, 200 Hz):

- track: mouth opening per track frame (jawOpen minus mouthClose: the lips pressed for p/b/m close the
  mouth whatever the jaw does), held as a viewer sees it (frame k on screen during [k/fps, (k+1)/fps));
- video: the MP4 decoded with PyAV (frame pts, audio pts after the demuxer's edit list and the decoder's
  AAC priming skip), mouth opening = mean darkening of `PortraitRenderer.mouth_box` against the renderer's
  neutral face (`render({})`; a pixel darkens when it is darker than every pixel within 2 px of it at rest, so
  idle head motion does not count), held per frame; the envelope of the decoded audio.

The lag is that of the best normalized cross-correlation within +-200 ms; positive = the mouth moves
before the sound (ahead), negative = behind. Targets (issue 10): lag in [-20, +60] ms, correlation at that
lag >= 0.5. The measuring functions are imported by tests/integration/test_lipsync.py.
Saves bench/results/lipsync-latest.json.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

if TYPE_CHECKING:
    from avatar_server.engines.animator.portrait import PortraitAnimator
    from avatar_server.engines.tts.base import TextToSpeech
    from avatar_server.values import Track

RATE = 200  # Hz: the common clock of mouth and loudness
WINDOW = 0.020  # s: RMS window of the loudness envelope
MAX_LAG = 0.200  # s: lags searched either way
TARGET_LAG = (-0.020, 0.060)  # s: from 20 ms behind to 60 ms ahead
TARGET_CORRELATION = 0.5

# Typical avatar replies (the default avatar is Grace Hopper): greetings, facts, questions, lists.
REPLIES = (
    "Hello! I'm Grace Hopper. It's lovely to meet you.",
    "The first compiler I wrote was the A-0 System, in 1952. It turned mathematical notation into machine code.",
    "A ship in port is safe, but that's not what ships are built for.",
    "Of course. What would you like to know about computers?",
    "Humans are allergic to change. They love to say, we've always done it this way. I try to fight that.",
    "A nanosecond is a piece of wire about a foot long. That's how far light travels in one billionth of a second.",
    "Good morning! How can I help you today?",
    "We found a moth stuck in a relay of the Mark Two, so we taped it into the logbook. It was the first actual "
    "bug ever found.",
)

Signal = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Offset:
    """Best lag (s, positive = mouth ahead of the voice) and the normalized correlation there."""

    lag: float
    correlation: float

    def meets_target(self) -> bool:
        return TARGET_LAG[0] - 1e-9 <= self.lag <= TARGET_LAG[1] + 1e-9 and self.correlation >= TARGET_CORRELATION


def speech_envelope(samples: npt.NDArray[np.floating], rate: int, duration: float) -> Signal:
    """The loudness envelope of the band 300-3000 Hz, where the mouth's opening shapes the sound (the first
    formant rises as the jaw opens). Below it, nasals are loud with the lips closed: in Festival's HTS voice
    an /n/ is louder than the vowels around it, which lowers the correlation over the whole band
    (bench/README.md, "Lip-sync")."""
    from scipy.signal import butter, sosfiltfilt

    sos = butter(4, [300, min(3000, 0.45 * rate)], btype="bandpass", fs=rate, output="sos")
    return loudness_envelope(sosfiltfilt(sos, np.asarray(samples, dtype=np.float64)), rate, duration)


def loudness_envelope(samples: npt.NDArray[np.floating], rate: int, duration: float) -> Signal:
    """RMS over WINDOW-long windows centred at k / RATE for k covering [0, duration)."""
    x = np.asarray(samples, dtype=np.float64)
    n = max(1, int(np.ceil(duration * RATE)))
    power = np.concatenate([[0.0], np.cumsum(x * x)])
    centres = np.arange(n) / RATE * rate
    half = WINDOW * rate / 2
    lo = np.clip(np.round(centres - half).astype(int), 0, len(x))
    hi = np.clip(np.round(centres + half).astype(int), 0, len(x))
    width = np.maximum(hi - lo, 1)
    return np.asarray(np.sqrt(np.maximum(power[hi] - power[lo], 0.0) / width), dtype=np.float64)


def held(values: npt.ArrayLike, starts: npt.ArrayLike, duration: float) -> Signal:
    """Zero-order hold at RATE: at time t the value of the last frame that started at or before t."""
    v = np.asarray(values, dtype=np.float64)
    s = np.asarray(starts, dtype=np.float64)
    t = np.arange(max(1, int(np.ceil(duration * RATE)))) / RATE
    idx = np.searchsorted(s, t + 1e-9, side="right") - 1
    return np.asarray(v[np.clip(idx, 0, len(v) - 1)], dtype=np.float64)


def best_lag(mouth: Signal, envelope: Signal, max_lag: float = MAX_LAG) -> Offset:
    """The lag of best normalized cross-correlation; positive when the mouth moves before the sound."""
    n = min(len(mouth), len(envelope))
    m, e = mouth[:n], envelope[:n]
    best = Offset(0.0, -1.0)
    for lag in range(-round(max_lag * RATE), round(max_lag * RATE) + 1):
        # mouth(t) against envelope(t + lag): a mouth `lag` ahead of the sound peaks here.
        x, y = (m[: n - lag], e[lag:]) if lag >= 0 else (m[-lag:], e[: n + lag])
        if len(x) < 2 or x.std() == 0 or y.std() == 0:
            continue
        r = float(np.corrcoef(x, y)[0, 1])
        if r > best.correlation:
            best = Offset(lag / RATE, r)
    return best


def track_opening(track: Track) -> npt.NDArray[np.float32]:
    """Per frame, how open the mouth is: the jaw's opening less the lips' closure."""
    return np.clip(track.column("jawOpen") - track.column("mouthClose"), 0.0, 1.0)


def track_offset(track: Track, samples: npt.NDArray[np.floating], rate: int) -> Offset:
    duration = len(samples) / rate
    mouth = held(track_opening(track), np.arange(len(track.weights)) / track.fps, duration)
    return best_lag(mouth, speech_envelope(samples, rate, duration))


@dataclass
class DecodedMp4:
    frame_times: Signal  # s: when each frame goes on screen (pts)
    frame_interval: float
    mouth: Signal  # per frame: mean darkening of the mouth box against the reference (0-255)
    audio: npt.NDArray[np.float32]  # mono, on the presentation clock: sample 0 is at t = 0
    audio_rate: int


def _luma(rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """BT.601 luma, as the encoder's RGB->YUV conversion (video.py) computes it."""
    r, g, b = (rgb[..., c].astype(np.float32) for c in range(3))
    return np.asarray(0.299 * r + 0.587 * g + 0.114 * b, dtype=np.float32)


def _reference(luma: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Each pixel's darkest neighbour within 2 px: the face's idle motion (a few pixels) darkens nothing."""
    import cv2

    return np.asarray(cv2.erode(luma, np.ones((5, 5), np.uint8)), dtype=np.float32)


def decode_mp4(
    mp4: bytes, mouth_box: tuple[int, int, int, int], neutral: npt.NDArray[np.uint8] | None = None
) -> DecodedMp4:
    """Frames (their pts and the mouth region's darkening against `neutral`, an RGB frame of the face at rest;
    the first frame without it) and audio placed at its pts, as a player shows them."""
    import av

    x0, y0, x1, y1 = mouth_box
    times: list[float] = []
    mouth: list[float] = []
    reference = None if neutral is None else _reference(_luma(neutral)[y0:y1, x0:x1])
    with av.open(io.BytesIO(mp4)) as container:
        vstream = container.streams.video[0]
        rate = float(vstream.average_rate or vstream.guessed_rate or 25)
        for frame in container.decode(vstream):
            luma = np.asarray(frame.to_ndarray(format="gray"), dtype=np.float32)[y0:y1, x0:x1]
            if reference is None:
                reference = _reference(luma)
            assert frame.pts is not None and frame.time_base is not None
            times.append(float(frame.pts * frame.time_base))
            mouth.append(float(np.clip(reference - luma, 0, None).mean()))
    with av.open(io.BytesIO(mp4)) as container:
        astream = container.streams.audio[0]
        audio_rate = int(astream.rate)
        pieces: list[tuple[int, npt.NDArray[np.float32]]] = []
        for aframe in container.decode(astream):
            assert aframe.pts is not None and aframe.time_base is not None
            start = round(float(aframe.pts * aframe.time_base) * audio_rate)
            pcm = np.asarray(aframe.to_ndarray(), dtype=np.float32)
            pieces.append((start, pcm.mean(axis=0) if pcm.ndim == 2 else pcm))
    end = max((s + len(p) for s, p in pieces), default=0)
    audio = np.zeros(max(0, end), dtype=np.float32)
    for start, pcm in pieces:  # the pts decide where each decoded frame lies, not the order of decoding
        lo = max(0, start)
        audio[lo : start + len(pcm)] = pcm[lo - start :]
    order = np.argsort(times)
    return DecodedMp4(
        frame_times=np.asarray(times, dtype=np.float64)[order],
        frame_interval=1.0 / rate,
        mouth=np.asarray(mouth, dtype=np.float64)[order],
        audio=audio,
        audio_rate=audio_rate,
    )


def video_offset(
    mp4: bytes, mouth_box: tuple[int, int, int, int], neutral: npt.NDArray[np.uint8] | None = None
) -> Offset:
    d = decode_mp4(mp4, mouth_box, neutral)
    duration = min(len(d.audio) / d.audio_rate, float(d.frame_times[-1]) + d.frame_interval)
    mouth = held(d.mouth, d.frame_times, duration)
    return best_lag(mouth, speech_envelope(d.audio, d.audio_rate, duration))


def audio_shift(mp4: bytes, samples: npt.NDArray[np.floating], rate: int) -> float:
    """Seconds by which the MP4's decoded audio plays later than the reply audio (AAC priming, edit lists)."""
    d = decode_mp4(mp4, (0, 0, 1, 1))
    duration = min(len(d.audio) / d.audio_rate, len(samples) / rate)
    a = loudness_envelope(samples, rate, duration)
    b = loudness_envelope(d.audio, d.audio_rate, duration)
    return -best_lag(a, b, max_lag=0.1).lag  # a leading b by x = b later by x


@dataclass(frozen=True)
class ReplyResult:
    text: str
    seconds: float
    track: Offset
    video: Offset
    audio_shift: float


def measure(tts: TextToSpeech, animator: PortraitAnimator, avatar_id: str, text: str, voice: str = "") -> ReplyResult:
    """Synthesize one reply (in `voice`, else the engine's first), build its track and MP4, measure both offsets."""
    spec = next((v for v in tts.capabilities.voices if v.id == voice), tts.capabilities.voices[0])
    speech = tts.synthesize(text, voice=spec.id, language=spec.languages[0])
    track = animator.track(speech, text)
    mp4, _ = animator.video(avatar_id, speech, track)
    renderer = animator._renderers[avatar_id]
    return ReplyResult(
        text=text,
        seconds=speech.duration,
        track=track_offset(track, speech.samples, speech.sample_rate),
        video=video_offset(mp4, renderer.mouth_box, renderer.render({})),
        audio_shift=audio_shift(mp4, speech.samples, speech.sample_rate),
    )


def build_engines(avatar_id: str = "") -> tuple[TextToSpeech, PortraitAnimator, str, str]:
    """An avatar's voice engine (the default avatar's: Festival) and the embedded animator, as the server builds
    them; and the avatar and voice ids."""
    from avatar_server.engines.animator.portrait import PortraitAnimator
    from avatar_server.engines.factory import build_tts
    from avatar_server.personas import load_avatars
    from avatar_server.settings import Settings

    settings = Settings()
    avatars = load_avatars(settings.avatars_dir)
    animator = PortraitAnimator(avatars, video_fps=settings.video_fps, video_size=settings.video_size)
    avatar = avatars[avatar_id or settings.default_avatar]
    return build_tts(avatar.voice.split(":", 1)[0], settings), animator, avatar.id, avatar.voice


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:+.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replies", type=int, default=len(REPLIES), help="how many of the replies to use")
    parser.add_argument("--avatar", default="", help="whose face and voice (default: the default avatar)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "lipsync-latest.json")
    args = parser.parse_args()

    tts, animator, avatar_id, voice = build_engines(args.avatar)
    print(f"avatar {avatar_id}, voice {voice}")
    results = [measure(tts, animator, avatar_id, text, voice) for text in REPLIES[: args.replies]]
    print("track: lag of best correlation (ms, + = mouth ahead) and correlation; the same for the MP4")
    print(f"{'reply':<44} {'s':>5} {'track':>6} {'r':>5} {'video':>6} {'r':>5} {'audio':>6}")
    for r in results:
        print(
            f"{r.text[:44]:<44} {r.seconds:5.2f} {_ms(r.track.lag):>6} {r.track.correlation:5.2f} "
            f"{_ms(r.video.lag):>6} {r.video.correlation:5.2f} {_ms(r.audio_shift):>6}"
        )
    med = {
        "track_lag": statistics.median(r.track.lag for r in results),
        "track_correlation": statistics.median(r.track.correlation for r in results),
        "video_lag": statistics.median(r.video.lag for r in results),
        "video_correlation": statistics.median(r.video.correlation for r in results),
        "audio_shift": statistics.median(r.audio_shift for r in results),
    }
    print(
        f"{'median':<44} {'':>5} {_ms(med['track_lag']):>6} {med['track_correlation']:5.2f} "
        f"{_ms(med['video_lag']):>6} {med['video_correlation']:5.2f} {_ms(med['audio_shift']):>6}"
    )
    met = {which: sum(getattr(r, which).meets_target() for r in results) for which in ("track", "video")}
    lo, hi = TARGET_LAG
    print(
        f"target (lag {lo * 1000:+.0f}..{hi * 1000:+.0f} ms and r >= {TARGET_CORRELATION}) met by "
        f"{met['track']}/{len(results)} replies' tracks, {met['video']}/{len(results)} replies' videos"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "replies": [asdict(r) for r in results],
                "median": med,
                "replies_on_target": met,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
