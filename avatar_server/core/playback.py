"""Which live replies are close to running dry, so new work can step aside for them.

On a small machine a new turn's speech-to-text or first tokens compete for the same cores as the
next sentence of a reply that is already playing. A reply that has less than `margin` seconds of audio
queued at its listener is urgent: new turns wait (briefly, bounded) until it has audio in hand again.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field


@dataclass(eq=False)
class Playback:
    """One reply being spoken: the wall time its first audio went out and the audio seconds sent since."""

    started: float = field(default_factory=time.perf_counter)
    sent_seconds: float = 0.0
    source: object = None  # the turn; its `generating` says whether more of the reply is being written

    @property
    def generating(self) -> bool:
        return bool(getattr(self.source, "generating", False))

    def slack(self, now: float) -> float:
        """Seconds of audio the listener still has queued."""
        return self.started + self.sent_seconds - now


class PlaybackGuard:
    def __init__(self, margin: float = 2.5, generating_margin: float = 6.0, max_wait: float = 0.5) -> None:
        self.margin = margin
        # While a reply is still being generated its next sentences need the LLM and the TTS, so it is
        # protected over a longer horizon than one that only has audio left to play.
        self.generating_margin = generating_margin
        self.max_wait = max_wait
        self._active: set[Playback] = set()

    def add(self, playback: Playback) -> None:
        self._active.add(playback)

    def discard(self, playback: Playback) -> None:
        self._active.discard(playback)

    def urgent(self, exclude: Playback | None = None) -> bool:
        now = time.perf_counter()
        return any(
            p is not exclude and p.slack(now) < (self.generating_margin if p.generating else self.margin)
            for p in self._active
        )

    async def yield_to_playback(self, limit: float | None = None) -> float:
        """Wait while another reply is running dry (at most `limit`, default `max_wait`); returns the time waited."""
        start = time.perf_counter()
        limit = self.max_wait if limit is None else limit
        # Urgency is a function of the clock as much as of events, so it is polled every 20 ms.
        while self.urgent() and time.perf_counter() - start < limit:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        return time.perf_counter() - start
