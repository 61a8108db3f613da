"""Converse benchmark: clips streamed at real-time pace over gRPC, against a real server process.

Measures, from the client's side, voice-to-first-audio (the last voiced sample sent → the first reply
audio chunk received), whether the first animation frames arrive no later than the first audio, the
ratio to Interact's processing_time on the same clip, and whether 4 concurrent sessions keep real time
(a reply chunk arriving after the moment a player would need it is a gap). Saves bench/results/converse-latest.json.

Each round runs Converse on one fresh server and Interact on another, both sampling with the same seed
(AVATAR_LLM_SEED, a different one per round) and fed the clips in the same order, so llama.cpp's prompt
cache is in the same state on both: the two paths then write the same reply to the same clip (the share
is reported), and the ratio compares the same work done two ways, not two replies of different length.
The servers take turns; an idle one costs nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402
import numpy as np  # noqa: E402
from avatar.v1 import avatar_pb2 as pb  # noqa: E402
from avatar.v1 import avatar_pb2_grpc as pb_grpc  # noqa: E402
from avatar_client.converse import StreamClock, paced_requests  # noqa: E402

from avatar_server.media.audio import decode_audio, to_pcm16  # noqa: E402
from bench.bench_interact import make_clips, pct  # noqa: E402
from tests.conftest import start_server, stop_server  # noqa: E402
from tests.turn_set import speech_bounds  # noqa: E402

LEAD = 0.5  # silence before the speech, as a person draws breath


def speech_end_seconds(x: np.ndarray, rate: int = 16000) -> float:
    """The end of the last voiced 20 ms frame (energy above -40 dBFS)."""
    return speech_bounds(x, rate)[1]


async def converse_once(target: str, name: str, wav: bytes) -> dict[str, object]:
    x = decode_audio(wav, "audio/wav", max_seconds=60)
    x = np.concatenate([np.zeros(int(LEAD * 16000), np.float32), x])
    speech_end = speech_end_seconds(x)
    config = pb.ConverseConfig(input_format=pb.AudioFormat(encoding=pb.AUDIO_ENCODING_PCM16, sample_rate_hertz=16000))
    clock = StreamClock()
    first_audio = first_frames = None
    arrivals: list[tuple[float, float, float]] = []  # (arrival, start on turn clock, seconds)
    done: pb.TurnCompleted | None = None
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.AvatarServiceStub(channel)
        async for ev in stub.Converse(paced_requests(config, to_pcm16(x), 16000, clock=clock), timeout=300):
            now = time.perf_counter()
            if ev.HasField("animation_frames") and first_frames is None:
                first_frames = now
            if ev.HasField("audio_chunk"):
                c = ev.audio_chunk
                first_audio = first_audio or now
                arrivals.append((now, c.start_seconds, len(c.pcm) / 2 / c.sample_rate_hertz))
            if ev.HasField("turn_completed"):
                done = ev.turn_completed
    assert done is not None and first_audio is not None, f"{name}: no reply"
    voice_end_wall = clock.started + speech_end
    play_start = arrivals[0][0]
    gaps = [max(0.0, arrival - (play_start + start)) for arrival, start, _ in arrivals]
    # The same with a 0.3 s playout buffer, as a browser's jitter buffer would hold.
    buffered = [max(0.0, arrival - (play_start + 0.3 + start)) for arrival, start, _ in arrivals]
    return {
        "name": name,
        "transcription": done.transcription,
        "reply_text": done.reply_text,
        "voice_to_first_audio_client": first_audio - voice_end_wall,
        "voice_to_first_audio_server": done.timings.voice_to_first_audio_seconds,
        "stt": done.timings.stt_seconds,
        "llm_first_token": done.timings.llm_first_token_seconds,
        "tts_first_byte": done.timings.tts_first_byte_seconds,
        "frames_before_audio": first_frames is not None and first_frames <= first_audio,
        "max_gap": max(gaps),
        "max_gap_buffered": max(buffered),
        "reply_seconds": sum(a[2] for a in arrivals),
    }


def interact(target: str, wav: bytes) -> pb.InteractResponse:
    with grpc.insecure_channel(target, options=[("grpc.max_receive_message_length", 64 << 20)]) as channel:
        return pb_grpc.AvatarServiceStub(channel).Interact(
            pb.InteractRequest(audio=pb.AudioInput(data=wav, mime_type="audio/wav")), timeout=300
        )


async def run(folder: Path, clips: list[tuple[str, bytes]], rounds: int) -> dict[str, object]:
    rows = []
    for k in range(rounds):
        seed = {"AVATAR_LLM_SEED": str(1000 + k)}
        server = start_server(folder / f"server-{k}.log", extra_env=seed)
        twin = start_server(folder / f"server-{k}-interact.log", extra_env=seed)
        try:
            for name, wav in clips:
                row = await converse_once(server.target, name, wav)
                resp = interact(twin.target, wav)
                row["interact_processing_time"] = resp.timings.total_seconds
                row["same_reply"] = resp.reply_text.split() == str(row["reply_text"]).split()
                rows.append(row)
            if k == rounds - 1:
                concurrent = await asyncio.gather(
                    *(converse_once(server.target, name, wav) for name, wav in (clips * 4)[:4])
                )
        finally:
            stop_server(server)
            stop_server(twin)
    v2fa = [float(r["voice_to_first_audio_client"]) for r in rows]  # type: ignore[arg-type]
    ratio = [float(r["voice_to_first_audio_client"]) / float(r["interact_processing_time"]) for r in rows]  # type: ignore[arg-type]
    return {
        "voice_to_first_audio_p50": pct(v2fa, 0.5),
        "voice_to_first_audio_p90": pct(v2fa, 0.9),
        "server_voice_to_first_audio_p50": pct([float(r["voice_to_first_audio_server"]) for r in rows], 0.5),  # type: ignore[arg-type]
        "stt_p50": pct([float(r["stt"]) for r in rows], 0.5),  # type: ignore[arg-type]
        "llm_first_token_p50": pct([float(r["llm_first_token"]) for r in rows], 0.5),  # type: ignore[arg-type]
        "tts_first_byte_p50": pct([float(r["tts_first_byte"]) for r in rows], 0.5),  # type: ignore[arg-type]
        "frames_before_audio_all": all(bool(r["frames_before_audio"]) for r in rows + list(concurrent)),
        "converse_over_interact_p50": statistics.median(ratio),
        "same_reply_share": sum(bool(r["same_reply"]) for r in rows) / len(rows),
        "interact_processing_time_p50": pct([float(r["interact_processing_time"]) for r in rows], 0.5),  # type: ignore[arg-type]
        "concurrent_sessions": 4,
        "concurrent_max_gap": max(float(r["max_gap"]) for r in concurrent),  # type: ignore[arg-type]
        "concurrent_max_gap_with_0.3s_buffer": max(float(r["max_gap_buffered"]) for r in concurrent),  # type: ignore[arg-type]
        "concurrent_voice_to_first_audio_p50": pct(
            [float(r["voice_to_first_audio_client"]) for r in concurrent],
            0.5,  # type: ignore[arg-type]
        ),
        "rows": rows,
        "concurrent_rows": list(concurrent),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-converse-"))
    result = asyncio.run(run(tmp, make_clips(tmp), args.rounds))
    result = {"benchmark": "converse", "when": datetime.now(UTC).isoformat(timespec="seconds"), **result}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "converse-latest.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))
    print(f"Converse benchmark ({len(result['rows'])} turns at real-time pace), seconds")  # type: ignore[arg-type]
    for key, value in result.items():
        if not key.endswith("rows") and key not in ("benchmark", "when"):
            print(f"  {key:38s} {value:.3f}" if isinstance(value, float) else f"  {key:38s} {value}")
    print(f"saved {out / 'converse-latest.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
