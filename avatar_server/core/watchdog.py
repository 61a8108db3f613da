"""Health that tells the truth: NOT_SERVING while an engine makes no progress, SERVING again when it does."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from avatar_server.core.workers import Workers

log = logging.getLogger(__name__)


class Watchdog:
    def __init__(
        self, workers: Workers, *, stall_seconds: float, interval: float, on_change: Callable[[bool], Awaitable[None]]
    ) -> None:
        self._workers = workers
        self._stall = stall_seconds
        self._interval = interval
        self._on_change = on_change
        self.healthy = True

    def stalled(self) -> list[tuple[str, float]]:
        now = time.monotonic()
        return [(w.name, s) for w in self._workers.all() if (s := w.stalled_for(now)) > self._stall]

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            stalled = self.stalled()
            if stalled and self.healthy:
                self.healthy = False
                for name, seconds in stalled:
                    log.error("stage %s made no progress for %.1f s: health NOT_SERVING", name, seconds)
                await self._on_change(False)
            elif not stalled and not self.healthy:
                self.healthy = True
                log.warning("every stage makes progress again: health SERVING")
                await self._on_change(True)
