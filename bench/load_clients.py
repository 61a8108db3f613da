"""The load benchmark's clients (bench/bench_load.py): live Converse sessions speaking clips at real-time pace
and Interact clients in a loop, each attempt recorded with its outcome and latency."""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
from avatar.v1 import avatar_pb2 as pb
from avatar.v1 import avatar_pb2_grpc as pb_grpc

from avatar_server.media.audio import decode_audio, to_pcm16
from bench.bench_converse import LEAD, speech_end_seconds
from bench.bench_interact import QUESTIONS, make_clips

RATE = 16000
TRAILING_SILENCE = 1.5  # after the speech, so the server's VAD ends the turn
NEXT_CLIP_AFTER = 20.0  # at the latest, when no TurnCompleted or error came
INTERACT_DEADLINE = 30.0
HANG = 60.0  # a call or turn not over by then is a hang
DEFAULT_RETRY_AFTER = 1.0  # when a refusal names no retry-after-ms
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]


@dataclass
class Clip:
    name: str
    wav: bytes
    pcm: bytes  # LEAD of silence, then the clip, mono PCM16 at RATE
    speech_end: float  # seconds into `pcm` where the last voiced 20 ms ends


@dataclass
class Attempt:
    """One Interact call or one live turn (a clip spoken into a Converse stream)."""

    kind: str  # "live" | "interact"
    client: int
    input: str
    started: float  # perf_counter when the call began / the clip's first chunk was sent
    outcome: str = "pending"  # served | refused | failed | hang
    code: str = ""
    message: str = ""
    latency: float | None = None  # interact: call wall time
    server_v2fa: float | None = None  # live: TurnCompleted.timings.voice_to_first_audio_seconds
    client_v2fa: float | None = None  # live: last voiced chunk sent -> first audio_chunk received
    voice_end_sent: float | None = None  # live: when the chunk with the last voiced sample was sent
    first_audio: float | None = None
    ended: float | None = None
    turn_ids: list[str] = field(default_factory=list)

    def finish(self, outcome: str, code: str = "", message: str = "") -> None:
        if self.outcome == "pending":
            self.outcome, self.code, self.message, self.ended = outcome, code, message[:300], time.perf_counter()


def retry_after_seconds(metadata: object, message: str = "") -> float:
    """The `retry-after-ms` trailing metadata (or a number of ms in the message), in seconds."""
    for key, value in metadata or ():  # type: ignore[attr-defined]
        if key == "retry-after-ms":
            with contextlib.suppress(ValueError):
                return max(0.0, int(value) / 1000)
    match = re.search(r"retry[- ]after[^0-9]{0,20}(\d+)\s*ms", message, re.IGNORECASE)
    return int(match.group(1)) / 1000 if match else DEFAULT_RETRY_AFTER


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def load_clips(folder: Path) -> list[Clip]:
    clips = []
    for name, wav in make_clips(folder):
        x = decode_audio(wav, "audio/wav", max_seconds=60, rate=RATE)
        x = np.concatenate([np.zeros(int(LEAD * RATE), np.float32), x])
        clips.append(Clip(name, wav, to_pcm16(x), speech_end_seconds(x, RATE)))
    if not clips:
        raise RuntimeError("no speech clips: install espeak-ng or flite (make setup does)")
    return clips


class Run:
    def __init__(self, target: str, clips: list[Clip], seconds: float, seed: int) -> None:
        self.target = target
        self.clips = clips
        self.started = time.perf_counter()
        self.stop_at = self.started + seconds
        self.attempts: list[Attempt] = []
        self.seed = seed
        self.stream_refusals = 0  # Converse streams refused before a clip was spoken into them
        self.stream_errors: list[str] = []

    def over(self) -> bool:
        return time.perf_counter() >= self.stop_at

    async def sleep_until_stop(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, min(seconds, self.stop_at - time.perf_counter())))

    # -- Interact -----------------------------------------------------------------------------------

    async def interact_client(self, k: int) -> None:
        rng = random.Random(self.seed * 100 + k)
        inputs: list[tuple[str, pb.InteractRequest]] = [
            (f"audio:{c.name}", pb.InteractRequest(audio=pb.AudioInput(data=c.wav, mime_type="audio/wav")))
            for c in self.clips
        ] + [(f"text:{q}", pb.InteractRequest(text=q)) for q in QUESTIONS]
        async with grpc.aio.insecure_channel(self.target, options=CHANNEL_OPTIONS) as channel:
            stub = pb_grpc.AvatarServiceStub(channel)
            while not self.over():
                name, request = rng.choice(inputs)
                request = pb.InteractRequest.FromString(request.SerializeToString())
                request.session_id = f"load-interact-{k}"
                attempt = Attempt("interact", k, name, time.perf_counter())
                self.attempts.append(attempt)
                pause = 0.0
                try:
                    call = stub.Interact(request, timeout=INTERACT_DEADLINE)
                    await asyncio.wait_for(call, HANG)
                    attempt.latency = time.perf_counter() - attempt.started
                    attempt.finish("served")
                except TimeoutError:
                    attempt.finish(
                        "hang", "HANG", f"no answer in {HANG:.0f} s despite a {INTERACT_DEADLINE:.0f} s deadline"
                    )
                except grpc.aio.AioRpcError as exc:
                    code = exc.code()
                    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                        attempt.finish("refused", code.name, exc.details() or "")
                        pause = retry_after_seconds(exc.trailing_metadata(), exc.details() or "")
                    else:
                        attempt.finish("failed", code.name, exc.details() or "")
                        pause = 0.5  # no hot loop against a server that is down
                if pause:
                    await self.sleep_until_stop(pause)

    # -- Converse -----------------------------------------------------------------------------------

    async def live_session(self, k: int) -> None:
        rng = random.Random(self.seed * 100 + 50 + k)
        order = list(range(len(self.clips)))
        rng.shuffle(order)
        n = k  # sessions start at different clips
        config = pb.ConverseConfig(
            input_format=pb.AudioFormat(encoding=pb.AUDIO_ENCODING_PCM16, sample_rate_hertz=RATE)
        )
        async with grpc.aio.insecure_channel(self.target, options=CHANNEL_OPTIONS) as channel:
            stub = pb_grpc.AvatarServiceStub(channel)
            while not self.over():
                n = await self._one_stream(k, stub, config, rng, order, n)

    async def _one_stream(
        self,
        k: int,
        stub: pb_grpc.AvatarServiceStub,
        config: pb.ConverseConfig,
        rng: random.Random,
        order: list[int],
        n: int,
    ) -> int:
        """One Converse stream, clip after clip until the run is over or the stream ends; returns the clip index."""
        timeout = self.stop_at - time.perf_counter() + HANG + 30
        call = stub.Converse(timeout=timeout)
        mine: list[Attempt] = []
        by_turn: dict[str, Attempt] = {}
        current: list[Attempt | None] = [None]
        turn_over = asyncio.Event()
        stream_error: list[grpc.aio.AioRpcError] = []

        async def read() -> None:
            try:
                while True:
                    ev = await call.read()
                    if ev is grpc.aio.EOF:
                        return
                    now = time.perf_counter()
                    attempt = by_turn.get(ev.turn_id)
                    if attempt is None and current[0] is not None:
                        attempt = current[0]
                        by_turn[ev.turn_id] = attempt
                        attempt.turn_ids.append(ev.turn_id)
                    if attempt is None:
                        continue
                    kind = ev.WhichOneof("event")
                    late = attempt.voice_end_sent is not None and now - attempt.voice_end_sent > HANG
                    if late and kind in ("turn_completed", "error") and attempt.outcome == "pending":
                        attempt.finish(
                            "hang", "HANG", f"{kind} only {now - attempt.voice_end_sent:.0f} s after the speech"
                        )
                        turn_over.set()
                    elif kind == "audio_chunk" and attempt.first_audio is None:
                        attempt.first_audio = now
                    elif kind == "turn_completed" and attempt.outcome == "pending":
                        attempt.server_v2fa = ev.turn_completed.timings.voice_to_first_audio_seconds
                        if attempt.first_audio is not None and attempt.voice_end_sent is not None:
                            attempt.client_v2fa = attempt.first_audio - attempt.voice_end_sent
                        attempt.finish("served")
                        turn_over.set()
                    elif kind == "error" and attempt.outcome == "pending":
                        refused = ev.error.code == "RESOURCE_EXHAUSTED"
                        attempt.finish("refused" if refused else "failed", ev.error.code, ev.error.message)
                        turn_over.set()
            except grpc.aio.AioRpcError as exc:
                stream_error.append(exc)
            finally:
                turn_over.set()

        reader = asyncio.create_task(read())
        try:
            await asyncio.wait_for(call.write(pb.ConverseRequest(config=config)), HANG)
            while not self.over() and not reader.done():
                clip = self.clips[order[n % len(order)]]
                n += 1
                attempt = Attempt("live", k, clip.name, time.perf_counter())
                self.attempts.append(attempt)
                mine.append(attempt)
                current[0] = attempt
                turn_over.clear()
                await self._speak(call, clip, attempt, rng)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(turn_over.wait(), NEXT_CLIP_AFTER)
                if attempt.code == "RESOURCE_EXHAUSTED":
                    await self.sleep_until_stop(retry_after_seconds((), attempt.message))
            # The run is over: let pending turns of this stream end, up to HANG after their speech.
            pending = [a for a in mine if a.outcome == "pending"]
            last = max((a.voice_end_sent or a.started for a in pending), default=0.0)
            while any(a.outcome == "pending" for a in pending) and not reader.done():
                left = last + HANG - time.perf_counter()
                if left <= 0:
                    break
                turn_over.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(turn_over.wait(), left)
            current[0] = None
            if not reader.done():
                with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError, TimeoutError):
                    await asyncio.wait_for(call.done_writing(), 5)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(reader), 10)
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError, TimeoutError):
            pass  # the stream ended (or would not take a write for HANG s); the reader knows why
        finally:
            if not reader.done():
                call.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(reader, 5)

        code, details, retry = "", "", 0.0
        if stream_error:
            exc = stream_error[0]
            code, details = exc.code().name, exc.details() or ""
            if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                retry = retry_after_seconds(exc.trailing_metadata(), details)
        elif call.done() and not self.over():
            code, details = "STREAM_ENDED", "the server ended the stream"
        now = time.perf_counter()
        refused_turn = False
        for a in mine:
            if a.outcome != "pending":
                continue
            if now - (a.voice_end_sent or a.started) >= HANG:
                a.finish("hang", "HANG", f"no TurnCompleted or error within {HANG:.0f} s of the speech's end")
            elif code == "RESOURCE_EXHAUSTED":
                a.finish("refused", code, details)
                refused_turn = True
            else:
                a.finish("failed", code or "NO_REPLY", details or "the stream ended without an answer")
        if code:
            self.stream_errors.append(f"{code}: {details[:200]}")
            if code == "RESOURCE_EXHAUSTED" and not refused_turn:
                self.stream_refusals += 1  # refused with no turn of its own in flight
            await self.sleep_until_stop(retry or 0.5)
        return n

    async def _speak(self, call: grpc.aio.StreamStreamCall, clip: Clip, attempt: Attempt, rng: random.Random) -> None:
        """The clip then TRAILING_SILENCE, in 20-40 ms chunks, each sent when a microphone would have it."""
        pcm = clip.pcm + bytes(int(TRAILING_SILENCE * RATE) * 2)
        voiced_end = int(clip.speech_end * RATE) * 2
        start = time.perf_counter()
        pos = 0
        while pos < len(pcm):
            step = int(RATE * rng.choice((0.02, 0.03, 0.04))) * 2
            chunk = pcm[pos : pos + step]
            delay = start + (pos + len(chunk)) / 2 / RATE - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await asyncio.wait_for(call.write(pb.ConverseRequest(audio=chunk)), HANG)
            if attempt.voice_end_sent is None and pos + len(chunk) >= voiced_end:
                attempt.voice_end_sent = time.perf_counter()
            pos += len(chunk)
