"""Admission control: bounded running and waiting turns, bounded live sessions, refusals with a retry hint.

Latency must not grow without bound under load: beyond the limits a call is refused at once with
RESOURCE_EXHAUSTED and a hint of when to retry, and a call whose deadline cannot be met given the queue
is refused before any work is done.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from avatar_server.errors import Overloaded, ShuttingDown

_MARGIN = 1.5  # turns vary: an estimate this much above the moving average covers most of them


class Admission:
    def __init__(
        self, *, max_running: int, max_waiting: int, max_sessions: int, typical_turn_seconds: float = 3.0
    ) -> None:
        self.max_running = max(1, max_running)
        self.max_waiting = max(0, max_waiting)
        self.max_sessions = max(0, max_sessions)
        self.running = 0
        self.sessions = 0
        self.draining = False
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._typical = typical_turn_seconds  # a moving average of served turns' durations

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def retry_after_ms(self) -> int:
        """When a refused call may expect a free place: the queue ahead of it, served max_running at a time."""
        ahead = self.running + len(self._waiters)
        seconds = self._typical * max(1.0, ahead / self.max_running)
        return int(min(30.0, max(0.25, seconds)) * 1000)

    @asynccontextmanager
    async def turn(self, *, time_remaining: float | None = None) -> AsyncIterator[None]:
        """Hold a running place for one Interact turn (waiting in line if the line is short)."""
        if self.draining:
            raise ShuttingDown("The server is shutting down; retry on another replica or shortly.")
        if self.running >= self.max_running or self._waiters:
            if len(self._waiters) >= self.max_waiting:
                raise Overloaded(
                    f"The server is busy ({self.running} turns running, {len(self._waiters)} waiting); retry shortly.",
                    self.retry_after_ms(),
                )
            if time_remaining is not None:
                # The wait for a place plus its own run; turns vary, so a margin keeps refusals early rather
                # than letting a call die of its deadline after the work was done.
                expected = _MARGIN * self._typical * (1 + (len(self._waiters) + 1) / self.max_running)
                if expected > time_remaining:
                    raise Overloaded(
                        f"The server is busy: this turn would take about {expected:.1f} s, "
                        f"more than the {time_remaining:.1f} s left of its deadline.",
                        self.retry_after_ms(),
                    )
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter  # the place is handed over by the turn that leaves (running already counted)
            except asyncio.CancelledError:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                elif waiter.done() and not waiter.cancelled():
                    self._leave()  # the place was handed to us just as we were cancelled: pass it on
                raise
        else:
            self.running += 1
        started = time.monotonic()
        try:
            yield
        finally:
            # Every turn counts, also one cut off by its deadline (its time is a lower bound): the estimate
            # must grow when turns get slow, or calls that cannot make their deadline would still be let in.
            self._typical = 0.8 * self._typical + 0.2 * (time.monotonic() - started)
            self._leave()

    def _leave(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # hand this place to the next in line
                return
        self.running -= 1

    @asynccontextmanager
    async def session(self) -> AsyncIterator[None]:
        """Hold a place for one live session."""
        if self.draining:
            raise ShuttingDown("The server is shutting down; reconnect shortly.")
        if self.sessions >= self.max_sessions:
            raise Overloaded(
                f"The server already holds {self.sessions} live conversations, its limit; retry shortly.",
                retry_after_ms=5000,
            )
        self.sessions += 1
        try:
            yield
        finally:
            self.sessions -= 1
