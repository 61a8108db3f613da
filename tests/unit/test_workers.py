"""Engine workers, the compute budget, live model contexts and the watchdog (timing-sensitive logic, fakes)."""

from __future__ import annotations

import asyncio
import threading
import time

from avatar_server.cooperation import yield_cores
from avatar_server.core.contexts import LiveContexts
from avatar_server.core.watchdog import Watchdog
from avatar_server.core.workers import EngineWorker, Priority, Workers
from tests.unit.fakes import FakeLLM


async def test_live_jobs_go_ahead_of_queued_batch_jobs() -> None:
    worker = EngineWorker("test")
    order: list[str] = []
    gate = threading.Event()
    blocker = asyncio.ensure_future(worker.run(gate.wait, 2.0))
    await asyncio.sleep(0.05)
    batch = [asyncio.ensure_future(worker.run(order.append, f"b{k}")) for k in range(3)]
    live = asyncio.ensure_future(worker.run(order.append, "live", priority=Priority.LIVE))
    await asyncio.sleep(0.05)
    gate.set()
    await asyncio.gather(blocker, live, *batch)
    assert order[0] == "live"
    worker.shutdown()


async def test_the_watchdog_reports_a_stalled_stage_and_its_recovery() -> None:
    workers = Workers()
    changes: list[bool] = []

    async def on_change(serving: bool) -> None:
        changes.append(serving)

    watchdog = Watchdog(workers, stall_seconds=0.2, interval=0.05, on_change=on_change)
    task = asyncio.create_task(watchdog.run())
    stuck = threading.Event()
    job = asyncio.ensure_future(workers["tts"].run(stuck.wait, 5.0))
    for _ in range(100):
        await asyncio.sleep(0.02)
        if changes:
            break
    assert changes == [False] and watchdog.stalled()[0][0] == "tts"
    stuck.set()
    await job
    for _ in range(100):
        await asyncio.sleep(0.02)
        if len(changes) == 2:
            break
    assert changes == [False, True]
    task.cancel()
    workers.shutdown()


async def test_heavy_jobs_take_the_compute_budget_in_priority_order() -> None:
    """One slot: heavy jobs of different engines never compute at once, and live jobs get the slot first."""
    workers = Workers(compute_slots=1)
    running = {"now": 0, "max": 0}
    order: list[str] = []
    lock = threading.Lock()

    def heavy(name: str) -> None:
        with lock:
            running["now"] += 1
            running["max"] = max(running["max"], running["now"])
        time.sleep(0.05)
        with lock:
            running["now"] -= 1
            order.append(name)

    first = asyncio.ensure_future(workers["stt"].run(heavy, "first", compute=True))
    await asyncio.sleep(0.01)
    batch = [asyncio.ensure_future(workers["video"].run(heavy, f"video{k}", compute=True)) for k in range(2)]
    await asyncio.sleep(0.01)
    live = asyncio.ensure_future(workers["tts"].run(heavy, "live-tts", priority=Priority.LIVE, compute=True))
    light = asyncio.ensure_future(workers["animation"].run(heavy, "light"))  # takes no slot
    await asyncio.gather(first, live, light, *batch)
    assert order.index("live-tts") < order.index("video1")
    assert running["max"] == 2  # the light job only ran beside a heavy one
    workers.shutdown()


async def test_a_long_batch_job_steps_aside_for_live_work_at_its_yield_points() -> None:
    workers = Workers(compute_slots=1)
    done: list[str] = []

    def long_video() -> None:
        for _ in range(100):  # 2 s of work in 20 ms steps, like frames
            time.sleep(0.02)
            yield_cores()
        done.append("video")

    video = asyncio.ensure_future(workers["video"].run(long_video, compute=True))
    await asyncio.sleep(0.2)
    t0 = time.perf_counter()
    await workers["tts"].run(lambda: done.append("live"), priority=Priority.LIVE, compute=True)
    assert time.perf_counter() - t0 < 0.2 and done == ["live"]  # not after the whole video
    await video
    assert done == ["live", "video"]
    workers.shutdown()


async def test_live_contexts_keep_a_session_on_its_own_context_and_never_share_one() -> None:
    contexts = LiveContexts((FakeLLM(), FakeLLM()))
    async with contexts.take("a") as a:
        async with contexts.take("b") as b:
            assert a != b
            third = asyncio.create_task(contexts.take("c").__aenter__())
            await asyncio.sleep(0.05)
            assert not third.done()  # both are in use: it waits
        assert await asyncio.wait_for(third, 1) == b  # "c" now holds b until the end of the test
    async with contexts.take("a") as again:
        assert again == a  # the session's conversation is still in that context's prompt cache


async def test_a_cancelled_running_job_stops_at_its_next_yield_point() -> None:
    workers = Workers(compute_slots=1)
    steps = {"n": 0}

    def long_video() -> None:
        for _ in range(200):  # 4 s of work in 20 ms steps
            time.sleep(0.02)
            steps["n"] += 1
            yield_cores()

    video = asyncio.ensure_future(workers["video"].run(long_video, compute=True))
    await asyncio.sleep(0.3)
    video.cancel()
    t0 = time.perf_counter()
    await workers["video"].run(lambda: None, compute=True)  # the same engine, free again at once
    assert time.perf_counter() - t0 < 0.3 and steps["n"] < 50
    workers.shutdown()
