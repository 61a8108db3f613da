"""Prometheus metrics of one server, in a registry of its own (tests build several; nothing global).

The names are a stable interface (README "Observability"): dashboards and autoscalers depend on them.
Turns and calls are counted as they end (a few counter/histogram updates per turn); the gauges and the
engines' busy time are read from the core only when /metrics is scraped, so the hot path pays nothing for them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from avatar_server.errors import AvatarError, ErrorCode, Overloaded, ShuttingDown
from avatar_server.values import Timings

# Seconds: resolve 50 ms steps at the short end, and a slow turn up to 30 s.
BUCKETS = (0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 30.0)
# A Timings field → the `stage` label; observed only when the stage ran (its time is above zero).
STAGES = ("stt", "llm_first_token", "llm", "tts_first_byte", "tts", "animation", "voice_to_first_audio", "end_of_turn")
RPCS = ("interact", "converse")
OK, REJECTED, CANCELLED = "ok", "rejected", "cancelled"


class _Worker(Protocol):
    name: str
    busy_seconds: float

    @property
    def waiting(self) -> int: ...


class _Admission(Protocol):
    sessions: int

    @property
    def waiting(self) -> int: ...


def outcome(error: BaseException | None) -> str:
    """The `outcome` label of a turn that ended with `error`: refused for load (RESOURCE_EXHAUSTED with a retry
    hint, or draining) is `rejected`; a cancel (client gone, deadline, barge-in) `cancelled`; any other
    error its code's name (an unexpected exception is INTERNAL, as the client sees it)."""
    if error is None or isinstance(error, asyncio.CancelledError):
        return CANCELLED
    if isinstance(error, Overloaded | ShuttingDown):
        return REJECTED
    if isinstance(error, AvatarError):
        return error.code.value
    return ErrorCode.INTERNAL.value


def outcome_of_code(code: str) -> str:
    """The `outcome` of a live turn that ended with an error event of this code (its exception is gone by then):
    RESOURCE_EXHAUSTED for a turn is a load refusal (the session's pending-turn limit, a full engine queue)."""
    return REJECTED if code in (ErrorCode.RESOURCE_EXHAUSTED.value, ErrorCode.UNAVAILABLE.value) else code


class Metrics:
    """Every metric of the server. `watch(admission, workers)` once the core is loaded."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.stage_seconds = Histogram(
            "avatar_stage_seconds",
            "Seconds a completed turn spent in each stage (only stages that ran).",
            ["stage"],
            buckets=BUCKETS,
            registry=r,
        )
        self.turns = Counter(
            "avatar_turns",
            "Turns by RPC and how they ended: ok, rejected, cancelled or an error code.",
            ["rpc", "outcome"],
            registry=r,
        )
        self.grpc_requests = Counter(
            "avatar_grpc_requests", "gRPC calls by method and status code.", ["method", "code"], registry=r
        )
        self.grpc_seconds = Histogram(
            "avatar_grpc_request_seconds",
            "Seconds per gRPC call (a streaming call: its whole duration).",
            ["method"],
            buckets=BUCKETS,
            registry=r,
        )
        self.memory_errors = Counter(
            "avatar_memory_errors",
            "Conversation-memory (Redis) calls that failed: those turns went on without memory.",
            registry=r,
        )
        # Children resolved once: observing then costs a lock and an add, no label lookup.
        self._stages = {stage: self.stage_seconds.labels(stage) for stage in STAGES}
        for rpc in RPCS:  # present from the start at 0, so rates work from the first scrape
            self.turns.labels(rpc, OK)
        self._core: _CoreCollector | None = None

    def watch(self, admission: _Admission, workers: Callable[[], Sequence[_Worker]]) -> None:
        """Report live sessions, queue depths and the engines' busy time from the core's own counters."""
        if self._core is not None:
            self.registry.unregister(self._core)
        self._core = _CoreCollector(admission, workers)
        self.registry.register(self._core)

    def turn_served(self, rpc: str, timings: Timings) -> None:
        """A turn that completed: counted `ok`, its stages observed."""
        self.turns.labels(rpc, OK).inc()
        for stage, child in self._stages.items():
            seconds: float = getattr(timings, stage)
            if seconds > 0:
                child.observe(seconds)

    def turn_ended(self, rpc: str, result: str) -> None:
        """A turn that did not complete, with its `outcome` label (see `outcome`)."""
        self.turns.labels(rpc, result).inc()

    def call_ended(self, method: str, code: str, seconds: float) -> None:
        self.grpc_requests.labels(method, code).inc()
        self.grpc_seconds.labels(method).observe(seconds)


class _CoreCollector(Collector):
    """Gauges and counters read from the core at scrape time."""

    def __init__(self, admission: _Admission, workers: Callable[[], Sequence[_Worker]]) -> None:
        self._admission = admission
        self._workers = workers

    def describe(self) -> Iterable[Metric]:
        return list(self._families())

    def collect(self) -> Iterable[Metric]:
        return list(self._families())

    def _families(self) -> Iterator[Metric]:
        sessions = GaugeMetricFamily("avatar_active_sessions", "Live Converse sessions.")
        sessions.add_metric([], self._admission.sessions)
        yield sessions
        queue = GaugeMetricFamily(
            "avatar_queue_depth",
            "Work waiting: queue=admission is Interact turns waiting for a place; the others are jobs waiting "
            "at each engine's worker.",
            labels=["queue"],
        )
        busy = CounterMetricFamily(
            "avatar_engine_busy_seconds", "Seconds each engine's worker spent running jobs.", labels=["engine"]
        )
        queue.add_metric(["admission"], self._admission.waiting)
        for worker in self._workers():
            queue.add_metric([worker.name], worker.waiting)
            busy.add_metric([worker.name], worker.busy_seconds)
        yield queue
        yield busy
