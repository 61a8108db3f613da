"""Streaming Converse helpers: stream a file at real-time pace and read typed events."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from avatar.v1 import avatar_pb2 as pb

CHUNK_SECONDS = 0.02  # 20 ms, as a browser or telephony client sends


def pcm16_chunks(pcm: bytes, rate: int, chunk_seconds: float = CHUNK_SECONDS) -> list[bytes]:
    step = max(2, int(rate * chunk_seconds) * 2)
    return [pcm[i : i + step] for i in range(0, len(pcm), step)]


@dataclass
class StreamClock:
    """When each request left, so callers can relate server events to the audio they sent."""

    started: float = 0.0
    finished_sending: float = 0.0


async def paced_requests(
    config: pb.ConverseConfig,
    pcm: bytes,
    rate: int,
    *,
    trailing_silence: float = 2.0,
    end_of_utterance: bool = False,
    clock: StreamClock | None = None,
    speed: float = 1.0,
    hold_open: asyncio.Event | None = None,
) -> AsyncIterator[pb.ConverseRequest]:
    """The config, then PCM16 chunks at real-time pace (plus silence so the server's VAD sees the end).
    `speed` 2 sends twice as fast, the most a server accepts (it refuses audio faster than 2x real time)."""
    yield pb.ConverseRequest(config=config)
    clock = clock or StreamClock()
    clock.started = time.perf_counter()
    silence = bytes(int(rate * trailing_silence) * 2)
    sent = 0.0
    for chunk in pcm16_chunks(pcm + silence, rate):
        if speed > 0:
            delay = clock.started + sent / speed - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        yield pb.ConverseRequest(audio=chunk)
        sent += len(chunk) / 2 / rate
    if end_of_utterance:
        yield pb.ConverseRequest(end_of_utterance=pb.EndOfUtterance())
    clock.finished_sending = time.perf_counter()
    if hold_open is not None:
        await hold_open.wait()
