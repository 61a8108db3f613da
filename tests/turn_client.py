"""A Converse client that behaves like a person at a browser, for the turn-taking tests and benchmark.

It sends microphone audio at real-time pace in 20 ms chunks without a break (silence when the person says
nothing), plays the reply as the widget does (each turn's clock starts 80 ms after its first chunk
arrives; an interrupted TurnCompleted stops it), and hears that reply back in its microphone at `echo_db`
(the part of the avatar's voice that the browser's echo cancellation lets through).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
import numpy as np
import numpy.typing as npt
from avatar.v1 import avatar_pb2 as pb
from avatar.v1 import avatar_pb2_grpc as pb_grpc

from avatar_server.media.audio import resample, to_pcm16

RATE = 16000
CHUNK = RATE // 50
LEAD = 0.08  # as the widget: a turn's first chunk plays this long after it arrives
PCM16 = pb.AudioFormat(encoding=pb.AUDIO_ENCODING_PCM16, sample_rate_hertz=RATE)


@dataclass
class Seen:
    wall: float
    event: pb.ConverseResponse

    @property
    def kind(self) -> str:
        return str(self.event.WhichOneof("event"))


@dataclass
class Person:
    """One live session: `say` queues speech, the microphone streams it (plus the reply's echo)."""

    target: str
    config: pb.ConverseConfig
    echo_db: float | None = -20.0
    seen: list[Seen] = field(default_factory=list)
    started: float = 0.0
    _speech: deque[npt.NDArray[np.float32]] = field(default_factory=deque)
    _said: list[tuple[float, float]] = field(default_factory=list)  # (wall of first sample, seconds)
    _playback: npt.NDArray[np.float32] = field(default_factory=lambda: np.zeros(0, np.float32))
    _anchors: dict[str, float] = field(default_factory=dict)
    _stopped: set[str] = field(default_factory=set)
    _texts: deque[str] = field(default_factory=deque)
    _closing: bool = False
    _wake: asyncio.Event = field(default_factory=asyncio.Event)

    # -- what a test does -------------------------------------------------------------------------

    def say(self, samples: npt.NDArray[np.float32]) -> float:
        """Queue speech; returns the wall time its first sample will be sent (after what is queued)."""
        queued = sum(len(s) for s in self._speech) / RATE
        self._speech.append(np.asarray(samples, np.float32))
        return time.perf_counter() + queued

    def type(self, text: str) -> None:
        """Send a typed turn (between two microphone chunks)."""
        self._texts.append(text)

    def said(self) -> list[tuple[float, float]]:
        return list(self._said)

    async def wait_for(self, predicate: object, within: float = 60.0) -> Seen:
        """The first event (seen so far or to come) for which `predicate(seen)` is true."""
        deadline = time.perf_counter() + within
        checked = 0
        while True:
            for s in self.seen[checked:]:
                if predicate(s):  # type: ignore[operator]
                    return s
            checked = len(self.seen)
            if time.perf_counter() > deadline:
                raise TimeoutError(f"no such event in {within} s; saw {[s.kind for s in self.seen]}")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 0.1)

    async def spoken(self) -> None:
        """Wait until everything queued with `say` has been sent."""
        while self._speech:  # noqa: ASYNC110 - the microphone loop empties it at real-time pace
            await asyncio.sleep(0.05)

    def playing(self, now: float | None = None) -> bool:
        now = time.perf_counter() if now is None else now
        index = int((now - self.started) * RATE)
        return index < len(self._playback) and bool(np.any(self._playback[index:] != 0))

    async def run(self, script: object, deadline: float = 120.0) -> list[Seen]:
        """Run the session while `script(self)` (a coroutine function) acts; returns every event seen."""
        async with grpc.aio.insecure_channel(self.target) as channel:
            call = pb_grpc.AvatarServiceStub(channel).Converse(self._requests(), timeout=deadline)

            async def read() -> None:
                async for ev in call:
                    self._receive(ev)

            reader = asyncio.create_task(read())
            try:
                await script(self)  # type: ignore[operator]
            finally:
                self._closing = True
            await reader
        return self.seen

    # -- the microphone and the speaker -----------------------------------------------------------

    async def _requests(self) -> AsyncIterator[pb.ConverseRequest]:
        yield pb.ConverseRequest(config=self.config)
        self.started = time.perf_counter()
        n = 0
        current: npt.NDArray[np.float32] = np.zeros(0, np.float32)
        while not self._closing:
            delay = self.started + n * CHUNK / RATE - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            while self._texts:
                yield pb.ConverseRequest(text=self._texts.popleft())
            if not len(current) and self._speech:
                current = self._speech.popleft()
                self._said.append((time.perf_counter(), len(current) / RATE))
            mic = np.zeros(CHUNK, np.float32)
            take = current[:CHUNK]
            mic[: len(take)] = take
            current = current[CHUNK:]
            if self.echo_db is not None:
                lo = n * CHUNK
                echo = self._playback[lo : lo + CHUNK]
                mic[: len(echo)] += echo * 10 ** (self.echo_db / 20)
            yield pb.ConverseRequest(audio=to_pcm16(np.clip(mic, -1, 1)))
            n += 1

    def _receive(self, ev: pb.ConverseResponse) -> None:
        now = time.perf_counter()
        self.seen.append(Seen(now, ev))
        self._wake.set()
        kind = ev.WhichOneof("event")
        if kind == "audio_chunk" and ev.turn_id not in self._stopped:
            anchor = self._anchors.setdefault(ev.turn_id, now + LEAD)
            chunk = ev.audio_chunk
            x = np.frombuffer(chunk.pcm, dtype="<i2").astype(np.float32) / 32768.0
            x = resample(x, chunk.sample_rate_hertz, RATE)
            start = max(int((anchor + chunk.start_seconds - self.started) * RATE), int((now - self.started) * RATE))
            if len(self._playback) < start + len(x):
                self._playback = np.concatenate(
                    [self._playback, np.zeros(start + len(x) - len(self._playback), np.float32)]
                )
            self._playback[start : start + len(x)] += x
        elif kind == "turn_completed" and ev.turn_completed.interrupted:
            self._stopped.add(ev.turn_id)
            cut = max(0, int((now - self.started) * RATE))
            self._playback[cut:] = 0.0  # the widget stops the interrupted reply at once


def interrupted(seen: Seen) -> bool:
    return seen.kind == "turn_completed" and seen.event.turn_completed.interrupted
