"""Load benchmark: live Converse sessions and Interact clients at once, against one real server process.

For `--seconds` (120) on loopback: `--live` (2) Converse sessions speak the clips at real-time pace (PCM16
chunks of 20-40 ms, a pause before the speech and 1.5 s of silence after it so the server's VAD ends the
turn; the next clip follows the reply's TurnCompleted, an error, or 20 s), while `--interact` (6) clients
call Interact in a loop (audio clips and typed questions, 30 s deadline each). Per kind it counts turns
served, refused (RESOURCE_EXHAUSTED: the client sleeps the trailing `retry-after-ms` before it goes on),
failed (any other error, deadlines included) and hangs (a call or turn not over within 60 s), with p50/p90
latency: Interact's call wall time; for live turns the server's voice-to-first-audio (TurnCompleted timings)
and the client's (last voiced chunk sent -> first audio_chunk received). It also reads the server's RSS
after SERVING and one warm-up Interact, and at the end. Prints a markdown table, saves
bench/results/load.json.

Everything is bounded: every RPC has a deadline, in-flight work gets at most 60 s after `--seconds` to end,
then whatever is left is cancelled and the server is stopped (killed if SIGTERM does not stop it). The exit
status is non-zero only when this script itself crashes; missed targets are reported, not raised.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402
from avatar.v1 import avatar_pb2 as pb  # noqa: E402
from avatar.v1 import avatar_pb2_grpc as pb_grpc  # noqa: E402

from bench.bench_converse import LEAD  # noqa: E402
from bench.load_clients import CHANNEL_OPTIONS, HANG, TRAILING_SILENCE, Clip, Run, load_clips, rss_kib  # noqa: E402
from bench.load_report import SETTLE_SECONDS, TARGETS, evaluate, fmt, no_nan, report, summarize  # noqa: E402
from tests.conftest import ServerProcess, start_server, stop_server  # noqa: E402


async def warm_up(target: str) -> str:
    async with grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS) as channel:
        try:
            await pb_grpc.AvatarServiceStub(channel).Interact(pb.InteractRequest(text="Who are you?"), timeout=60)
            return "ok"
        except grpc.aio.AioRpcError as exc:
            return f"{exc.code().name}: {exc.details()}"


async def sample_rss(pid: int, samples: list[tuple[float, int]], t0: float) -> None:
    while True:
        value = rss_kib(pid)
        if value is not None:
            samples.append((round(time.perf_counter() - t0, 1), value))
        await asyncio.sleep(2.0)


async def load(server: ServerProcess, clips: list[Clip], args: argparse.Namespace) -> dict[str, object]:
    warm = await warm_up(server.target)
    rss_start = rss_kib(server.proc.pid)
    run = Run(server.target, clips, args.seconds, args.seed)
    samples: list[tuple[float, int]] = []
    sampler = asyncio.create_task(sample_rss(server.proc.pid, samples, run.started))
    tasks = [asyncio.create_task(run.live_session(k)) for k in range(args.live)]
    tasks += [asyncio.create_task(run.interact_client(k)) for k in range(args.interact)]
    # Each client stops by itself: no new work after --seconds, pending work gets HANG s. This bound is
    # the backstop for anything that would not stop.
    bound = args.seconds + max(c.speech_end + LEAD for c in clips) + TRAILING_SILENCE + HANG + 45
    done, stuck = await asyncio.wait(tasks, timeout=bound)
    for task in stuck:
        task.cancel()
    if stuck:
        await asyncio.wait(stuck, timeout=15)
    crashed = [t.exception() for t in done if not t.cancelled() and t.exception() is not None]
    if crashed:
        raise crashed[0]  # type: ignore[misc]
    for a in run.attempts:
        if a.outcome == "pending":
            a.finish("hang", "HANG", "still running when the run's bound was reached")
    rss_end = rss_kib(server.proc.pid)
    exit_code = server.proc.poll()
    sampler.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sampler
    elapsed = time.perf_counter() - run.started
    return {
        "warm_up": warm,
        "server_exit_code_during_run": exit_code,
        "elapsed_seconds": round(elapsed, 1),
        "clients_cancelled_at_bound": len(stuck),
        "stream_refusals": run.stream_refusals,
        "stream_errors": run.stream_errors,
        "rss_start_kib": rss_start,
        "rss_end_kib": rss_end,
        "rss_peak_kib": max([v for _, v in samples] + ([rss_end] if rss_end else []), default=None),
        "rss_samples": samples,
        "attempts": [asdict(a) for a in run.attempts],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=120.0, help="how long to start new work (default 120)")
    parser.add_argument("--live", type=int, default=2, help="live Converse sessions (default 2)")
    parser.add_argument("--interact", type=int, default=6, help="Interact clients (default 6)")
    parser.add_argument("--seed", type=int, default=1, help="picks the chunk sizes and the inputs' order")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-load-"))
    clips = load_clips(tmp)
    log_path = tmp / "server.log"
    server = start_server(log_path)  # env passes through (AVATAR_* settings apply)
    stop_note = ""
    try:
        measured = asyncio.run(load(server, clips, args))
    finally:
        try:
            rc = stop_server(server)
            stop_note = f"stopped by SIGTERM, exit {rc}"
        except Exception as exc:  # stop_server kills it on a timeout, then raises
            if server.proc.poll() is None:
                server.proc.kill()
                server.proc.wait(timeout=10)
            stop_note = f"did not stop on SIGTERM within 30 s ({type(exc).__name__}); killed"
        print(f"server {stop_note}; log: {log_path}", file=sys.stderr)

    attempts: list[dict[str, object]] = measured.pop("attempts")  # type: ignore[assignment]
    live = summarize(attempts, "live", int(measured["stream_refusals"]))  # type: ignore[call-overload]
    inter = summarize(attempts, "interact")
    start, end, settled, growth, settled_growth, checks = evaluate(measured, live, inter)
    result: dict[str, object] = {
        "benchmark": "load",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "seconds": args.seconds,
        "live_sessions": args.live,
        "interact_clients": args.interact,
        "clips": [c.name for c in clips],
        "server_statuses": server.statuses,
        "server_stop": stop_note,
        "server_log": str(log_path),
        **{k: v for k, v in measured.items() if k != "rss_samples"},
        "rss_growth_pct": growth,
        "rss_settled_kib": settled,
        "rss_settled_growth_pct": settled_growth,
        "live": live,
        "interact": inter,
        "checks": checks,
        "targets": TARGETS,
        "rss_samples": measured["rss_samples"],
        "attempts": attempts,
    }
    text = report(result)
    print(text)
    print(
        f"\nserver RSS: {fmt(start)} KiB after warm-up, {fmt(settled)} KiB after {SETTLE_SECONDS:.0f} s of load, "
        f"{fmt(end)} KiB at the end, "
        f"peak {fmt(measured['rss_peak_kib'])} KiB"
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "load.json"
    path.write_text(json.dumps(no_nan(result), indent=2, ensure_ascii=False, default=str))
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
