"""Interact benchmark: real server process, real clips, per-stage p50/p90, saved as JSON.

Usage: python bench/bench_interact.py [--rounds N] [--target HOST:PORT]
Without --target it starts `python -m avatar_server` on a free loopback port.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from avatar.v1 import avatar_pb2 as pb  # noqa: E402
from avatar.v1 import avatar_pb2_grpc as pb_grpc  # noqa: E402

from tests.conftest import start_server, stop_server  # noqa: E402

QUESTIONS = [
    "Who are you?",
    "What did you build in 1952?",
    "Tell me about the Harvard Mark I.",
    "Why should I learn to program?",
]


def wav_seconds(data: bytes) -> float:
    with wave.open(io.BytesIO(data)) as w:
        return w.getnframes() / w.getframerate()


def make_clips(folder: Path) -> list[tuple[str, bytes]]:
    clips = []
    espeak, flite = shutil.which("espeak-ng"), shutil.which("flite")
    if espeak:
        path = folder / "espeak3s.wav"
        subprocess.run([espeak, "-w", str(path), "What was the name of the first compiler you wrote?"], check=True)
        clips.append(("espeak", path.read_bytes()))
    if flite:
        path = folder / "flite.wav"
        subprocess.run([flite, "-t", "Hello, how are you doing today?", "-o", str(path)], check=True)
        clips.append(("flite", path.read_bytes()))
    arctic = ROOT / "tests" / ".data" / "arctic_a0007.wav"
    if arctic.is_file():
        clips.append(("arctic", arctic.read_bytes()))
    alsa = Path("/usr/share/sounds/alsa/Front_Center.wav")
    if alsa.is_file():
        clips.append(("alsa", alsa.read_bytes()))
    return clips


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--target")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()

    import grpc

    tmp = Path(tempfile.mkdtemp(prefix="bench-"))
    server = None
    target = args.target
    if not target:
        server = start_server(tmp / "server.log")
        target = server.target
    channel = grpc.insecure_channel(target, options=[("grpc.max_receive_message_length", 64 << 20)])
    stub = pb_grpc.AvatarServiceStub(channel)
    clips = make_clips(tmp)
    rows = []
    try:
        for r in range(args.rounds):
            for name, data in clips:
                t0 = time.perf_counter()
                resp = stub.Interact(
                    pb.InteractRequest(audio=pb.AudioInput(data=data, mime_type="audio/wav")), timeout=300
                )
                rows.append(row("audio", name, wav_seconds(data), resp, time.perf_counter() - t0))
            q = QUESTIONS[r % len(QUESTIONS)]
            t0 = time.perf_counter()
            resp = stub.Interact(pb.InteractRequest(text=q), timeout=300)
            rows.append(row("text", q, 0.0, resp, time.perf_counter() - t0))
    finally:
        channel.close()
        if server:
            stop_server(server)

    stages = ["stt", "llm", "tts", "animation", "total", "client"]
    summary = {s: {"p50": pct([x[s] for x in rows], 0.5), "p90": pct([x[s] for x in rows], 0.9)} for s in stages}
    audio_rows = [x for x in rows if x["input"] == "audio"]
    # Whisper's cost is nearly flat up to its 30 s window, so STT is reported on the 2-4 s clips;
    # TTS + animation scale with the reply, so they are normalized to 5 s of reply audio.
    mid = [float(x["stt"]) for x in audio_rows if 2.0 <= float(x["input_seconds"]) <= 4.0]
    summary["stt_clips_2_to_4s"] = {"p50": pct(mid, 0.5), "p90": pct(mid, 0.9)}
    summary["tts_plus_animation_per_5s_reply"] = {
        "p50": pct([(x["tts"] + x["animation"]) / x["reply_seconds"] * 5 for x in rows], 0.5),
        "p90": pct([(x["tts"] + x["animation"]) / x["reply_seconds"] * 5 for x in rows], 0.9),
    }
    result = {
        "benchmark": "interact",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": __import__("os").cpu_count(), "platform": platform.platform()},
        "rounds": args.rounds,
        "turns": len(rows),
        "summary": summary,
        "rows": rows,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "interact-latest.json"
    path.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    print(f"Interact benchmark: {len(rows)} turns ({args.rounds} rounds), seconds")
    print(f"{'stage':34s} {'p50':>7s} {'p90':>7s}")
    for k, v in summary.items():
        print(f"{k:34s} {v['p50']:7.3f} {v['p90']:7.3f}")
    print(f"saved {path}")
    return 0


def row(kind: str, name: str, input_seconds: float, resp: pb.InteractResponse, client: float) -> dict[str, object]:
    t = resp.timings
    return {
        "input": kind,
        "name": name,
        "input_seconds": round(input_seconds, 3),
        "reply_seconds": round(resp.audio.duration_seconds, 3),
        "reply_chars": len(resp.reply_text),
        "transcription": resp.transcription,
        "stt": t.stt_seconds,
        "llm": t.llm_seconds,
        "tts": t.tts_seconds,
        "animation": t.animation_seconds,
        "total": t.total_seconds,
        "client": client,
    }


if __name__ == "__main__":
    raise SystemExit(main())
