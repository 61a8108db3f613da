"""Engine benchmark: each embedded engine alone, in this process, on the test clips and texts.

The figures the README quotes for single engines come from here: Whisper base per encoder window (30 s is
faster-whisper's own window, the reference) and the Silero speech check in front of it, Piper vs espeak-ng
real-time factor on a whole reply and Piper's time for a short first piece, SmolLM2's time to first token
and decode rate. Medians of a few runs each. Saves bench/results/engines-latest.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from avatar_server.engines.factory import build_llm, build_stt, build_tts  # noqa: E402
from avatar_server.engines.llm.reply import build_messages  # noqa: E402
from avatar_server.media.audio import decode_audio  # noqa: E402
from avatar_server.personas import load_avatars  # noqa: E402
from avatar_server.settings import Settings  # noqa: E402
from bench.bench_interact import make_clips  # noqa: E402

REPLY = (
    "The first compiler I wrote was the A-0 System, in 1952. It turned mathematical notation into "
    "machine code, and people told me computers could only do arithmetic."
)
PIECES = ["I'm Grace Hopper,", "The first compiler I wrote", "The first compiler I wrote was the A-0 System,"]
QUESTIONS = [
    "What was the name of the first compiler you wrote?",
    "Hello, how are you doing today?",
    "Front center.",
]


def median_time(fn: Callable[[], object], runs: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def bench_stt(settings: Settings, clips: list[tuple[str, bytes]], runs: int) -> list[dict[str, object]]:
    stt = build_stt(settings)
    rows = []
    for window in (30.0, 10.0, settings.whisper_encoder_window_seconds):
        stt._min_window_frames = int(window * 100)  # type: ignore[attr-defined]
        for name, wav in clips:
            x = decode_audio(wav, "audio/wav", max_seconds=60)
            stt.transcribe(x, language=None)  # warm
            seconds, transcript = median_time(lambda x=x: stt.transcribe(x, language=None), runs)
            vad_seconds, _ = median_time(lambda x=x: stt._speech(x), runs)  # type: ignore[attr-defined]
            rows.append(
                {
                    "speech_check_seconds": vad_seconds,
                    "window_seconds": window,
                    "clip": name,
                    "clip_seconds": len(x) / 16000,
                    "seconds": seconds,
                    "text": getattr(transcript, "text", ""),
                }
            )
    return rows


def bench_tts(settings: Settings, runs: int) -> dict[str, object]:
    out: dict[str, object] = {}
    for name in ("piper", "espeak"):
        tts = build_tts(name, settings)
        tts.synthesize(REPLY, voice="", language="en")
        seconds, speech = median_time(lambda tts=tts: tts.synthesize(REPLY, voice="", language="en"), runs)
        audio = float(getattr(speech, "duration", 0.0))
        out[name] = {"synthesis_seconds": seconds, "audio_seconds": audio, "real_time_factor": seconds / audio}
    piper = build_tts("piper", settings)
    out["piper_pieces"] = [
        {
            "text": text,
            "words": len(text.split()),
            "seconds": median_time(lambda text=text: piper.synthesize(text, voice="", language="en"), runs)[0],
        }
        for text in PIECES
    ]
    return out


def bench_llm(settings: Settings, runs: int) -> dict[str, object]:
    llm = build_llm(settings)
    avatar = load_avatars(settings.avatars_dir)[settings.default_avatar]
    firsts, rates = [], []
    for _ in range(runs):
        for question in QUESTIONS:
            messages = build_messages(avatar.system_prompt("en"), [], question)
            t0 = time.perf_counter()
            tokens = llm.stream(messages, max_tokens=40, temperature=settings.llm_temperature)
            next(tokens)
            first = time.perf_counter() - t0
            n = sum(1 for _ in tokens)
            firsts.append(first)
            if n:
                rates.append(n / (time.perf_counter() - t0 - first))
    return {"first_token_p50": statistics.median(firsts), "tokens_per_second_p50": statistics.median(rates)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    settings = Settings()
    clips = make_clips(Path(tempfile.mkdtemp(prefix="bench-engines-")))
    result = {
        "benchmark": "engines",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "stt": bench_stt(settings, clips, args.runs),
        "tts": bench_tts(settings, args.runs),
        "llm": bench_llm(settings, args.runs),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "engines-latest.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))
    print("Engines, seconds (medians)")
    for row in result["stt"]:  # type: ignore[union-attr]
        window, clip, took, check = row["window_seconds"], row["clip"], row["seconds"], row["speech_check_seconds"]
        print(f"  STT window {window:4.0f} s  {clip:7s} {took:.3f} (speech check {check:.3f})  {row['text']}")
    tts = result["tts"]
    for name in ("piper", "espeak"):
        r = tts[name]  # type: ignore[index]
        took, audio = r["synthesis_seconds"], r["audio_seconds"]
        print(f"  TTS {name:7s} RTF {r['real_time_factor']:.3f} ({took:.3f} s for {audio:.1f} s of audio)")
    for r in tts["piper_pieces"]:  # type: ignore[index]
        print(f"  Piper piece of {r['words']:2d} words {r['seconds']:.3f}")
    llm = result["llm"]
    print(f"  LLM first token {llm['first_token_p50']:.3f}, {llm['tokens_per_second_p50']:.0f} tokens/s")  # type: ignore[index]
    print(f"saved {out / 'engines-latest.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
