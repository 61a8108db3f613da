"""The turn-taking set, built at test time from recordings that ship in packages and from speech synthesizers.

- `mid`: a whole sentence with a pause inserted at a word boundary inside it (it must stay one turn).
- `end`: two sentences with a pause between them (the turn may end there).
- `whole`: a sentence as recorded (voice-to-first-audio).
- `backchannel`: a listener sound ("mm-hm", "yeah", a cough, a laugh) to play over a reply (must not interrupt).
- `interruption`: speech that takes the turn over a reply (must stop it).

Real speech: five LibriVox sentences (Sense and Sensibility, read for LibriVox, public domain) from the
pocketsphinx 5.1.1 sdist's test data with their transcripts, CMU ARCTIC a0007, and CMU Sphinx's "cards" clip;
synthetic: espeak-ng, flite and Festival. Word boundaries come from Whisper's word timestamps (the embedded
model), moved to the quietest 10 ms near them, so a pause never cuts into a word.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from avatar_server.media.audio import decode_audio

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / ".data"
RATE = 16000
LIBRIVOX = DATA / "librivox"


@dataclass(frozen=True)
class TurnClip:
    name: str
    kind: str  # mid | end | whole | backchannel | interruption
    samples: npt.NDArray[np.float32]  # 16 kHz mono
    text: str
    source: str
    pause_at: float = 0.0  # seconds: where the inserted pause starts
    pause: float = 0.0  # seconds of inserted pause

    @property
    def seconds(self) -> float:
        return len(self.samples) / RATE


# (clip name, the words after which a pause goes in) for the real recordings.
_REAL_CUTS = {
    "librivox-0870": ("and mister john dashwood had then leisure to consider how much", "LibriVox (human)"),
    "librivox-0880": ("he was not an ill", "LibriVox (human)"),
    "librivox-0890": ("unless to be rather cold hearted and rather", "LibriVox (human)"),
    "librivox-0920": ("had he married a more amiable woman he might have been made", "LibriVox (human)"),
    "librivox-0930": ("he might even have", "LibriVox (human)"),
    "arctic": ("and you always want to see it in the", "CMU ARCTIC (human)"),
}
_SYNTHETIC = [
    ("espeak", "I was wondering how much the tickets to the museum cost.", "I was wondering how much"),
    ("flite", "Could you tell me what the first compiler was called?", "Could you tell me what"),
    ("festival", "My sister told me that you worked on the Harvard Mark One.", "My sister told me that"),
    ("espeak", "What did you do after the war ended?", "What did you do after"),
]
_BACKCHANNELS = [
    ("espeak", "Mm-hm."),
    ("flite", "Uh-huh."),
    ("festival", "Yeah."),
    ("espeak", "Okay."),
    ("flite", "Right."),
    ("festival", "I see."),
]
_INTERRUPTIONS = [
    ("flite", "Wait, stop."),
    ("espeak", "No, I meant the other one."),
    ("festival", "Hold on, that is not what I asked you about."),
]


def synthesize(engine: str, text: str) -> npt.NDArray[np.float32]:
    """`text` spoken by a command-line synthesizer, as 16 kHz mono float32."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "s.wav"
        if engine == "espeak":
            subprocess.run(["espeak-ng", "-w", str(out), text], check=True)
        elif engine == "flite":
            subprocess.run(["flite", "-t", text, "-o", str(out)], check=True)
        elif engine == "festival":
            subprocess.run(["text2wave", "-o", str(out)], input=text.encode(), check=True)
        else:
            raise ValueError(engine)
        return decode_audio(out.read_bytes(), "audio/wav", max_seconds=60)


def _load(path: Path) -> npt.NDArray[np.float32]:
    return decode_audio(path.read_bytes(), "audio/wav", max_seconds=60)


def real_recordings() -> dict[str, tuple[npt.NDArray[np.float32], str, str]]:
    """name → (samples, transcript, source)."""
    out: dict[str, tuple[npt.NDArray[np.float32], str, str]] = {}
    for line in (LIBRIVOX / "transcription").read_text().splitlines():
        text, _, ident = line.replace("<s>", "").replace("</s>", "").rpartition("(")
        ident = ident.strip(") ")
        name = "librivox-" + ident.rsplit("-", 1)[1]
        out[name] = (_load(LIBRIVOX / f"{ident}.wav"), " ".join(text.split()), "LibriVox (human)")
    out["arctic"] = (
        _load(DATA / "arctic_a0007.wav"),
        "And you always want to see it in the superlative degree.",
        "CMU ARCTIC (human)",
    )
    return out


@functools.cache
def _whisper() -> object:
    from faster_whisper import WhisperModel

    from avatar_server import models
    from avatar_server.settings import Settings

    return WhisperModel(str(models.whisper_base(Settings().models_dir)), device="cpu", cpu_threads=2)


def _norm(word: str) -> str:
    return "".join(c for c in word.lower() if c.isalnum())


def boundary_after(samples: npt.NDArray[np.float32], words_before: str) -> float:
    """The time (s) between the last of `words_before` and the next word, at the quietest 10 ms near it."""
    model = _whisper()
    segments, _ = model.transcribe(samples, language="en", word_timestamps=True, beam_size=1)  # type: ignore[attr-defined]
    words = [w for s in segments for w in s.words]
    target = [_norm(w) for w in words_before.split()]
    k = len(target)
    heard = [_norm(w.word) for w in words]
    # The first place the heard words match the last two target words; else the k-th word.
    idx = next(
        (i for i in range(1, len(heard)) if heard[i - 1 : i + 1] == target[-2:] and i < len(heard) - 1),
        min(k, len(heard) - 1) - 1,
    )
    lo, hi = words[idx].end, words[idx + 1].start
    centre = (lo + hi) / 2
    a, b = int((min(lo, centre - 0.08)) * RATE), int((max(hi, centre + 0.08)) * RATE)
    hop = RATE // 100
    frames = samples[a : a + (b - a) // hop * hop].reshape(-1, hop)
    quietest = int(np.argmin((frames**2).mean(axis=1)))
    return (a + quietest * hop + hop // 2) / RATE


def with_pause(samples: npt.NDArray[np.float32], at: float, pause: float, seed: int = 0) -> npt.NDArray[np.float32]:
    """`samples` with `pause` seconds of room noise (-60 dBFS) inserted at `at` seconds."""
    noise = np.random.default_rng(seed).normal(0, 0.001, int(pause * RATE)).astype(np.float32)
    cut = int(at * RATE)
    return np.concatenate([samples[:cut], noise, samples[cut:]])


def mid_sentence(pauses: tuple[float, ...] = (0.7,), synthetic: bool = True) -> list[TurnClip]:
    out: list[TurnClip] = []
    for name, (samples, text, source) in real_recordings().items():
        words, _ = _REAL_CUTS.get(name, ("", ""))
        if not words:
            continue
        at = boundary_after(samples, words)
        out += [TurnClip(name, "mid", with_pause(samples, at, p), text, source, at, p) for p in pauses]
    if synthetic:
        for engine, text, words in _SYNTHETIC:
            if shutil.which({"espeak": "espeak-ng", "festival": "text2wave"}.get(engine, engine)) is None:
                continue
            samples = synthesize(engine, text)
            at = boundary_after(samples, words)
            out += [
                TurnClip(f"{engine}-{words.split()[-1]}", "mid", with_pause(samples, at, p), text, engine, at, p)
                for p in pauses
            ]
    return out


def sentence_ends(pause: float = 0.7) -> list[TurnClip]:
    real = real_recordings()
    pairs = [("librivox-0880", "librivox-0930"), ("librivox-0890", "arctic")]
    out = []
    for a, b in pairs:
        first, second = real[a][0], real[b][0]
        samples = np.concatenate([first, np.zeros(int(pause * RATE), np.float32), second])
        out.append(
            TurnClip(f"{a}+{b}", "end", samples, f"{real[a][1]} {real[b][1]}", "LibriVox", len(first) / RATE, pause)
        )
    return out


def whole() -> list[TurnClip]:
    return [TurnClip(name, "whole", s, text, source) for name, (s, text, source) in real_recordings().items()]


def cough(seed: int = 1) -> npt.NDArray[np.float32]:
    """A cough: a 60 ms burst of band-passed noise with a fast attack, then a 180 ms decaying tail."""
    rng = np.random.default_rng(seed)
    n = int(0.24 * RATE)
    noise = rng.normal(0, 1, n).astype(np.float32)
    spectrum = np.fft.rfft(noise)
    freqs = np.fft.rfftfreq(n, 1 / RATE)
    spectrum[(freqs < 300) | (freqs > 3500)] = 0
    shaped = np.fft.irfft(spectrum, n).astype(np.float32)
    t = np.arange(n) / RATE
    envelope = np.minimum(t / 0.01, 1.0) * np.exp(-np.maximum(t - 0.06, 0) / 0.05)
    x = shaped * envelope
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def laugh() -> npt.NDArray[np.float32]:
    """A short laugh: "ha ha" from espeak-ng."""
    return synthesize("espeak", "ha ha")


def backchannels() -> list[TurnClip]:
    out = [TurnClip(f"{e}-{t.strip('.').lower()}", "backchannel", synthesize(e, t), t, e) for e, t in _BACKCHANNELS]
    out.append(TurnClip("cough", "backchannel", cough(), "", "synthetic noise burst"))
    out.append(TurnClip("laugh", "backchannel", laugh(), "ha ha", "espeak"))
    return out


def interruptions() -> list[TurnClip]:
    return [
        TurnClip(f"{e}-{t.split(',')[0].lower()}", "interruption", synthesize(e, t), t, e) for e, t in _INTERRUPTIONS
    ]


def speech_bounds(x: npt.NDArray[np.float32], rate: int = RATE) -> tuple[float, float]:
    """The first and last voiced 20 ms of `x` (energy above -40 dBFS), in seconds."""
    hop = rate // 50
    frames = x[: len(x) // hop * hop].reshape(-1, hop)
    loud = np.nonzero(20 * np.log10(np.sqrt((frames**2).mean(axis=1)) + 1e-9) > -40)[0]
    if not len(loud):
        return 0.0, 0.0
    return float(loud[0] * hop / rate), float((loud[-1] + 1) * hop / rate)
