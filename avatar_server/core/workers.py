"""One worker thread per engine, each with its own bounded priority queue, and one compute budget.

Why workers: engines are blocking and serialize themselves (one llama context, one Whisper decoder). In a
shared thread pool a job can wait behind threads that are themselves blocked on an engine held by a job
that waits for this one: a deadlock. With one thread per engine a job only ever waits behind work for the
same engine, and an engine never waits for another engine's queue.

Why a budget: every heavy engine already uses all the cores (llama.cpp, Whisper and ONNX run `threads`
threads each, and their thread pools spin while they wait for each other). Two of them at once on 2 cores
do not share the machine, they thrash it. So a heavy job runs only while it holds a slot of the compute
budget (one slot per `threads` cores), and live turns get a free slot before Interact turns do. A job holds
its slot only while it computes: never while it waits for anything else (the LLM takes it per token), so
the budget cannot take part in a deadlock.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import enum
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from avatar_server.cooperation import yielding
from avatar_server.errors import Overloaded

T = TypeVar("T")
log = logging.getLogger(__name__)


class JobAbandoned(Exception):
    """Raised inside a running job at a yield point when nobody waits for its result any more."""


class Priority(enum.IntEnum):
    LIVE = 0  # a person is listening to this turn as it is made
    BATCH = 1  # Interact: the answer comes back whole


class ComputeBudget:
    """A priority semaphore over the machine's cores: a live job never waits behind a queued batch job."""

    def __init__(self, slots: int) -> None:
        self._free = max(1, slots)
        self._cond = threading.Condition()
        self._waiting = [0, 0]  # by priority

    @contextmanager
    def hold(self, priority: Priority) -> Iterator[None]:
        with self._cond:
            self._waiting[priority] += 1
            try:
                while self._free == 0 or (priority == Priority.BATCH and self._waiting[Priority.LIVE]):
                    self._cond.wait()
            finally:
                self._waiting[priority] -= 1
            self._free -= 1
        try:
            yield
        finally:
            with self._cond:
                self._free += 1
                self._cond.notify_all()

    def step_aside(self, priority: Priority) -> None:
        """Called by a batch job holding a slot: if live work waits, give it the slot and take one back after."""
        if priority != Priority.BATCH:
            return
        with self._cond:
            if not self._waiting[Priority.LIVE]:
                return
            self._free += 1
            self._cond.notify_all()
            self._waiting[priority] += 1
            try:
                while self._free == 0 or self._waiting[Priority.LIVE]:
                    self._cond.wait()
            finally:
                self._waiting[priority] -= 1
            self._free -= 1


class EngineWorker:
    """A daemon thread running one engine's jobs in priority order; `await run(fn, ...)` from the loop.

    Cancelling the awaiting task drops a job that has not started. A running job finishes (engines check
    their turn's stop flag where they can, e.g. the LLM at every token). Long jobs call `beat()` to show
    progress to the watchdog. A `compute` job runs holding a slot of the budget; light jobs, jobs that wait
    on the network (cloud engines) and jobs that take slots themselves (the LLM, per token) do not.
    """

    def __init__(self, name: str, *, budget: ComputeBudget | None = None, max_queue: int = 64) -> None:
        self.name = name
        self.max_queue = max_queue
        self.budget = budget
        self._queue: queue.PriorityQueue[tuple[int, int, Any]] = queue.PriorityQueue()
        self._seq = itertools.count()
        self._busy_since: float | None = None
        self.busy_seconds = 0.0  # time spent running jobs (read by the metrics; written by this thread only)
        self._last_progress = time.monotonic()
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name=f"engine-{name}", daemon=True)
        self._thread.start()

    async def run(
        self,
        fn: Callable[..., T],
        *args: Any,
        priority: Priority = Priority.BATCH,
        compute: bool = False,
        **kwargs: Any,
    ) -> T:
        if self._queue.qsize() >= self.max_queue:
            raise Overloaded(f"The {self.name} engine has {self.max_queue} jobs waiting.", retry_after_ms=1000)
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        abandoned = threading.Event()
        self._queue.put((int(priority), next(self._seq), (future, fn, args, kwargs, compute, abandoned)))
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            # A job not started is dropped; a running one stops at its next `yield_cores()` (a frame, a
            # sentence), so the engine is free for the next turn, not busy with an answer nobody waits for.
            abandoned.set()
            raise

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
        while True:
            priority, _, item = self._queue.get()
            if item is None:
                return
            future, fn, args, kwargs, compute, abandoned = item
            if self._stopped or not future.set_running_or_notify_cancel():
                continue
            started = time.perf_counter()
            try:
                result = self._execute(Priority(priority), compute, abandoned, fn, args, kwargs)
            except BaseException as exc:  # handed to the awaiting task, which decides
                future.set_exception(exc)
            else:
                future.set_result(result)
            finally:
                self._busy_since = None
                self.busy_seconds += time.perf_counter() - started

    def _execute(
        self,
        priority: Priority,
        compute: bool,
        abandoned: threading.Event,
        fn: Callable[..., T],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> T:
        budget = self.budget if compute else None

        def checkpoint() -> None:  # `yield_cores()` inside the job
            if abandoned.is_set():
                raise JobAbandoned(f"the {self.name} job was cancelled")
            if budget is not None:
                budget.step_aside(priority)
            self.beat()

        with budget.hold(priority) if budget is not None else contextlib.nullcontext(), yielding(checkpoint):
            self._busy_since = self._last_progress = time.monotonic()
            return fn(*args, **kwargs)


class Workers:
    """The workers of one server: a stage name → its own thread.

    Heavy jobs of local engines (STT, TTS, video) hold a compute slot; the LLM holds one per token (its job
    spans the whole reply, and pauses in it must not hold the cores); decoding, VAD and animation tracks are
    light (milliseconds) and never wait for a slot, so endpointing and lip-sync keep pace under load.
    """

    STAGES = ("decode", "vad", "turn", "stt", "llm", "tts", "animation", "video")

    def __init__(self, compute_slots: int = 1, extra: tuple[str, ...] = ()) -> None:
        self.budget = ComputeBudget(compute_slots)
        self._workers = {name: EngineWorker(name, budget=self.budget) for name in (*self.STAGES, *extra)}

    def __getitem__(self, stage: str) -> EngineWorker:
        return self._workers[stage]

    def all(self) -> list[EngineWorker]:
        return list(self._workers.values())

    def shutdown(self) -> None:
        for worker in self._workers.values():
            worker.shutdown()
