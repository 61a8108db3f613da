"""Turn-taking benchmark over gRPC Converse at real-time pace, from the client's side (tests/turn_client.py).

- voice-to-first-audio: whole real recordings (five LibriVox sentences, CMU ARCTIC), from the last voiced
  20 ms sent to the first reply audio received; p50 / p90;
- false end of turn: sentences with a pause of 300, 500 and 700 ms inserted at a word boundary inside them
  (real and synthetic speech): the share answered as more than one turn;
- sentence ends: two sentences with 700 ms between them: the share where the turn ended at the gap
  (allowed, reported);
- backchannels ("mm-hm", "yeah", "okay", a cough, a laugh, ...) played over a reply, with the reply's echo
  in the microphone at -20 dB: the share that interrupted it;
- interruptions ("wait, stop", ...) over a reply: the time from the moment they can be told from a
  backchannel (the fragment's pause, or `backchannel_max_ms` of speech) to the interrupted TurnCompleted.

`--root` runs the server of another checkout (e.g. a `git worktree` of an earlier commit) for a before/after.
Saves bench/results/turns-latest.json (or --out).
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

import numpy as np  # noqa: E402
from avatar.v1 import avatar_pb2 as pb  # noqa: E402

from bench.bench_interact import pct  # noqa: E402
from tests import turn_set  # noqa: E402
from tests.conftest import start_server, stop_server  # noqa: E402
from tests.turn_client import PCM16, Person, interrupted  # noqa: E402

QUESTION = "Tell me the story of your life, from your childhood to the Navy, in detail."
TAIL = np.zeros(int(2.2 * turn_set.RATE), np.float32)


async def first_audio(target: str, clip: turn_set.TurnClip) -> dict[str, object]:
    person = Person(target, pb.ConverseConfig(input_format=PCM16), echo_db=None)
    out: dict[str, object] = {"clip": clip.name}

    async def script(p: Person) -> None:
        p.say(np.zeros(8000, np.float32))
        sent = p.say(clip.samples)
        p.say(TAIL)
        audio = await p.wait_for(lambda s: s.kind == "audio_chunk", 60)
        _, end = turn_set.speech_bounds(clip.samples)
        out["voice_to_first_audio"] = audio.wall - (sent + end)
        done = await p.wait_for(lambda s: s.kind == "turn_completed", 60)
        t = done.event.turn_completed.timings
        out.update(end_of_turn=t.end_of_turn_seconds, probability=t.end_of_turn_probability)
        out["server_voice_to_first_audio"] = t.voice_to_first_audio_seconds

    await person.run(script, deadline=120)
    return out


async def turns_in(target: str, clip: turn_set.TurnClip) -> int:
    person = Person(target, pb.ConverseConfig(input_format=PCM16), echo_db=None)

    async def script(p: Person) -> None:
        p.say(np.zeros(8000, np.float32))
        p.say(clip.samples)
        p.say(TAIL)
        await p.spoken()
        await p.wait_for(lambda s: s.kind == "turn_completed", 60)

    seen = await person.run(script, deadline=120)
    return len([s for s in seen if s.kind == "speech_ended"])


async def over_reply(target: str, clip: turn_set.TurnClip) -> dict[str, object]:
    """Play `clip` 1.5 s into a reply (its echo in the microphone); did it interrupt, and how fast?"""
    person = Person(target, pb.ConverseConfig(input_format=PCM16, barge_in=True), echo_db=-20.0)
    out: dict[str, object] = {"clip": clip.name, "kind": clip.kind}

    async def script(p: Person) -> None:
        p.type(QUESTION)
        first = await p.wait_for(lambda s: s.kind == "audio_chunk", 60)
        await asyncio.sleep(1.5)
        sent = p.say(clip.samples)
        start, end = turn_set.speech_bounds(clip.samples)
        try:
            stop = await p.wait_for(lambda s: interrupted(s) and s.event.turn_id == first.event.turn_id, 4.0)
        except TimeoutError:
            out["interrupted"] = False
            return
        out["interrupted"] = True
        out["stop_after_speech_start"] = stop.wall - (sent + start)
        decidable = sent + min(end + 0.064, start + 1.0)
        out["stop_after_decidable"] = stop.wall - decidable

    await person.run(script, deadline=120)
    return out


async def run(target: str, rounds: int) -> dict[str, object]:
    whole = turn_set.whole()
    mids = turn_set.mid_sentence(pauses=(0.3, 0.5, 0.7))
    ends = turn_set.sentence_ends()
    sounds = turn_set.backchannels()
    cuts = turn_set.interruptions()
    firsts = [await first_audio(target, clip) for _ in range(rounds) for clip in whole]
    mid_turns = {f"{c.name}@{c.pause:.1f}": await turns_in(target, c) for c in mids}
    end_turns = {c.name: await turns_in(target, c) for c in ends}
    over = [await over_reply(target, c) for c in sounds + cuts]
    v2a = [float(f["voice_to_first_audio"]) for f in firsts]  # type: ignore[arg-type]
    false_eot = [k for k, n in mid_turns.items() if n > 1]
    bc = [o for o in over if o["kind"] == "backchannel"]
    ints = [o for o in over if o["kind"] == "interruption"]
    stops = [float(o["stop_after_decidable"]) for o in ints if o.get("interrupted")]  # type: ignore[arg-type]
    return {
        "voice_to_first_audio": {"p50": pct(v2a, 0.5), "p90": pct(v2a, 0.9), "n": len(v2a), "runs": firsts},
        "false_end_of_turn": {"rate": len(false_eot) / len(mid_turns), "n": len(mid_turns), "clips": false_eot},
        "sentence_end_turns": end_turns,
        "backchannel_false_interrupts": {
            "rate": sum(bool(o["interrupted"]) for o in bc) / len(bc),
            "n": len(bc),
            "interrupted": [o["clip"] for o in bc if o["interrupted"]],
        },
        "interruptions": {
            "stopped": sum(bool(o.get("interrupted")) for o in ints),
            "n": len(ints),
            "stop_after_decidable_median": statistics.median(stops) if stops else None,
            "runs": ints,
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--root", default=str(ROOT), help="the checkout whose server to run")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the server")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "turns-latest.json"))
    args = parser.parse_args()
    env = dict(e.split("=", 1) for e in args.env)
    server = start_server(Path(tempfile.mkdtemp(prefix="bench-turns-")) / "server.log", env, root=Path(args.root))
    try:
        t0 = time.perf_counter()
        result = asyncio.run(run(server.target, args.rounds))
    finally:
        stop_server(server)
    result.update(root=args.root, env=env, seconds=time.perf_counter() - t0, date=datetime.now(UTC).isoformat())
    v, f = result["voice_to_first_audio"], result["false_end_of_turn"]
    b, i = result["backchannel_false_interrupts"], result["interruptions"]
    print(f"voice-to-first-audio p50 {v['p50']:.3f} s, p90 {v['p90']:.3f} s over {v['n']} turns")  # type: ignore[index]
    print(f"false end of turn {f['rate']:.0%} of {f['n']} mid-sentence pauses: {f['clips']}")  # type: ignore[index]
    print(f"sentence-end pauses, turns seen: {result['sentence_end_turns']}")
    print(f"backchannels that interrupted: {b['rate']:.0%} of {b['n']} {b['interrupted']}")  # type: ignore[index]
    print(
        f"interruptions stopped {i['stopped']}/{i['n']}, median {i['stop_after_decidable_median']} s "  # type: ignore[index]
        "after they could be told from a backchannel"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
