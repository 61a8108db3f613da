"""One worker thread per engine, each with its own bounded priority queue.

Why: engines are blocking and serialize themselves (one llama context, one Whisper decoder). In a shared
thread pool a job can wait behind threads that are themselves blocked on an engine held by a job that waits
for this one: a deadlock. With one thread per engine a job only ever waits behind work for the same engine,
and an engine never waits for another engine's queue. Live turns go ahead of Interact turns at each engine.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from avatar_server.errors import Overloaded

T = TypeVar("T")
log = logging.getLogger(__name__)


class Priority(enum.IntEnum):
    LIVE = 0  # a person is listening to this turn as it is made
    BATCH = 1  # Interact: the answer comes back whole


class EngineWorker:
    """A daemon thread running one engine's jobs in priority order; `await run(fn, ...)` from the loop.

    Cancelling the awaiting task drops a job that has not started. A running job finishes (engines check
    their turn's stop flag where they can, e.g. the LLM at every token). Long jobs call `beat()` to show
    progress to the watchdog.
    """

    def __init__(
        self,
        name: str,
        *,
        max_queue: int = 64,
        live_busy: Callable[[], bool] | None = None,
        max_defer: float = 1.5,
    ) -> None:
        self.name = name
        self.max_queue = max_queue
        # 2 cores: while a live turn is being made, an Interact job waits (at most `max_defer`) before it
        # starts, so the live reply does not share the cores with other people's batch work.
        self._live_busy = live_busy
        self._max_defer = max_defer
        self._queue: queue.PriorityQueue[tuple[int, int, Any]] = queue.PriorityQueue()
        self._seq = itertools.count()
        self._busy_since: float | None = None
        self._last_progress = time.monotonic()
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name=f"engine-{name}", daemon=True)
        self._thread.start()

    async def run(self, fn: Callable[..., T], *args: Any, priority: Priority = Priority.BATCH, **kwargs: Any) -> T:
        if self._queue.qsize() >= self.max_queue:
            raise Overloaded(f"The {self.name} engine has {self.max_queue} jobs waiting.", retry_after_ms=1000)
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._queue.put((int(priority), next(self._seq), (future, fn, args, kwargs)))
        return await asyncio.wrap_future(future)

    def beat(self) -> None:
        """The running job made progress (called from the worker thread)."""
        self._last_progress = time.monotonic()

    @property
    def waiting(self) -> int:
        """Jobs queued and not started."""
        return self._queue.qsize()

    def stalled_for(self, now: float | None = None) -> float:
        """Seconds the running job has gone without progress; 0 when idle."""
        if self._busy_since is None:
            return 0.0
        return (now if now is not None else time.monotonic()) - self._last_progress

    def shutdown(self) -> None:
        """Stop taking jobs; queued ones are cancelled. A stuck job cannot hold the process (daemon thread)."""
        self._stopped = True
        while True:
            try:
                _, _, item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item[0].cancel()
        self._queue.put((-1, -1, None))

    def _loop(self) -> None:
        deferred: dict[int, float] = {}  # batch job → when it was first held back
        while True:
            priority, seq, item = self._queue.get()
            if item is None:
                return
            future, fn, args, kwargs = item
            if priority == Priority.BATCH and self._live_busy is not None and not future.cancelled():
                first = deferred.setdefault(seq, time.monotonic())
                if time.monotonic() - first < self._max_defer and self._live_busy():
                    self._queue.put((priority, seq, item))  # a live job that arrives meanwhile goes first
                    time.sleep(0.01)
                    continue
            deferred.pop(seq, None)
            if self._stopped or not future.set_running_or_notify_cancel():
                continue
            self._busy_since = self._last_progress = time.monotonic()
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:  # handed to the awaiting task, which decides
                future.set_exception(exc)
            else:
                future.set_result(result)
            finally:
                self._busy_since = None


class Workers:
    """The workers of one server: a stage name → its own thread."""

    STAGES = ("decode", "vad", "stt", "llm", "tts", "animation", "video")

    def __init__(self, live_busy: Callable[[], bool] | None = None) -> None:
        self._workers = {name: EngineWorker(name, live_busy=live_busy) for name in self.STAGES}

    def __getitem__(self, stage: str) -> EngineWorker:
        return self._workers[stage]

    def all(self) -> list[EngineWorker]:
        return list(self._workers.values())

    def shutdown(self) -> None:
        for worker in self._workers.values():
            worker.shutdown()
