"""How each avatar's voice sounds, by proxy: its pitch, whether Whisper understands it, and its speed.

Every English reply of the last reply harness run (bench/results/eval-latest.json, `make eval`; a fixed set
of sentences without one) is spoken by each voice, one sentence at a time as the server speaks it, then:

- median pitch (Hz) of the voiced frames (a man's voice is about 85-155 Hz, a woman's 165-255 Hz);
- round-trip word error rate: the embedded Whisper (base) transcribes the audio, compared with the text;
- real-time factor (compute seconds per second of speech) and the first sentence's synthesis time.

Prints a table and saves bench/results/voice-latest.json. Usage:
    python bench/bench_voice.py [--voices festival:cmu_us_slt_arctic_hts piper:en_US-joe-medium ...]
Without --voices, the avatars' own voices, the other embedded English voices and flite's `slt` (for comparison).
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
import wave
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from avatar_server.engines import factory  # noqa: E402
from avatar_server.engines.llm.sentences import split_sentences  # noqa: E402
from avatar_server.media.audio import resample  # noqa: E402
from avatar_server.personas import load_avatars  # noqa: E402
from avatar_server.settings import Settings  # noqa: E402
from avatar_server.values import Speech  # noqa: E402
from tests.helpers import median_pitch_of, word_error_rate  # noqa: E402

RESULTS = ROOT / "bench" / "results"
FALLBACK_TEXTS = [
    "I'm Grace Hopper, and I wrote the first compiler in 1952.",
    "A compiler turns words a person can read into instructions a machine can run.",
    "I programmed the Harvard Mark I during the Second World War.",
    "My work led to COBOL, a language for business data processing.",
    "I retired from the Navy as a rear admiral in 1986.",
    "Goodbye, and remember: it is easier to ask forgiveness than it is to get permission.",
]
OTHER_VOICES = ["piper:en_US-joe-medium", "espeak:en-us", "espeak:en-us+f3", "flite:slt"]


class FliteVoice:
    """flite's command line (Debian `flite`, a test dependency): a voice the server has no engine for, measured
    for comparison only."""

    def synthesize(self, text: str, *, voice: str, language: str) -> Speech:
        import subprocess

        out = subprocess.run(
            ["flite", "-voice", voice.split(":", 1)[1], "-t", text, "-o", "/dev/stdout"],
            capture_output=True,
            check=True,
        ).stdout
        with wave.open(io.BytesIO(out)) as w:
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
            return Speech(samples=pcm.astype(np.float32) / 32768.0, sample_rate=w.getframerate())


def reply_texts(limit: int) -> tuple[list[str], str]:
    path = RESULTS / "eval-latest.json"
    if path.is_file():
        data = json.loads(path.read_text())
        texts = [r["reply"] for r in data["replies"] if r["lang"] == "en" and r["reply"].strip()]
        if texts:
            return texts[:limit], f"{path.name} ({data.get('date', '?')})"
    return FALLBACK_TEXTS, "fixed sentences"


def measure(voice: str, texts: list[str], settings: Settings, stt: object) -> dict[str, object]:
    name = voice.split(":", 1)[0]
    engine = FliteVoice() if name == "flite" else factory.build_tts(name, settings)
    pitches, wers, compute, spoken, firsts = [], [], 0.0, 0.0, []
    for text in texts:
        pieces = []
        for k, sentence in enumerate(split_sentences(text) or [text]):
            t0 = time.perf_counter()
            speech = engine.synthesize(sentence, voice=voice, language="en")
            took = time.perf_counter() - t0
            compute += took
            if k == 0:
                firsts.append(took)
            pieces.append(resample(speech.samples, speech.sample_rate, 16000))
        audio = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
        spoken += len(audio) / 16000
        pitches.append(median_pitch_of(audio, 16000))
        heard = stt.transcribe(audio, language="en").text  # type: ignore[attr-defined]
        wers.append(word_error_rate(text, heard))
    close = getattr(engine, "close", None)
    if close is not None:
        close()
    return {
        "voice": voice,
        "replies": len(texts),
        "median_pitch_hz": round(statistics.median(pitches), 1),
        "wer": round(statistics.mean(wers), 4),
        "rtf": round(compute / max(spoken, 1e-9), 4),
        "first_sentence_s_median": round(statistics.median(firsts), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--voices", nargs="*", help="voice ids (default: the avatars' and the embedded ones)")
    parser.add_argument("--limit", type=int, default=27, help="at most this many replies")
    parser.add_argument("--out", type=Path, default=RESULTS / "voice-latest.json")
    args = parser.parse_args()
    settings = Settings()
    avatars = load_avatars(settings.avatars_dir)
    voices = args.voices or list(dict.fromkeys([a.voice for a in avatars.values()] + OTHER_VOICES))
    texts, source = reply_texts(args.limit)
    stt = factory.build_stt(settings)
    rows = [measure(v, texts, settings, stt) for v in voices]
    print(f"{len(texts)} English replies from {source}\n")
    print("| voice | median pitch, Hz | Whisper round-trip WER | real-time factor | first sentence, s |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['voice']} | {r['median_pitch_hz']:.0f} | {100 * float(r['wer']):.1f} % | {r['rtf']:.3f} "  # type: ignore[arg-type]
            f"| {r['first_sentence_s_median']:.3f} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"date": datetime.now(UTC).isoformat(timespec="seconds"), "texts": source, "voices": rows}, indent=2)
    )


if __name__ == "__main__":
    main()
