"""Load, limits, cancels and shutdown against a real server with small limits (issue 9's rules)."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import websockets
from avatar.v1 import avatar_pb2 as pb
from avatar.v1 import avatar_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import BridgeProcess, ServerProcess, start_bridge, start_server, stop_bridge, stop_server

pytestmark = pytest.mark.slow

LIMITS = {
    "AVATAR_MAX_RUNNING_TURNS": "2",
    "AVATAR_MAX_WAITING_TURNS": "2",
    "AVATAR_MAX_LIVE_SESSIONS": "2",
    "AVATAR_CONVERSE_IDLE_TIMEOUT_SECONDS": "2",
    "AVATAR_CONVERSE_WRITE_TIMEOUT_SECONDS": "3",
    "AVATAR_CONVERSE_EVENT_QUEUE": "64",
    # Long replies, so a turn lasts long enough to be cancelled, refused or interrupted mid-way.
    "AVATAR_LLM_MAX_TOKENS": "160",
    "AVATAR_REPLY_MAX_SENTENCES": "6",
    "AVATAR_REPLY_MAX_CHARS": "500",
}
AUDIO_ONLY = pb.OutputOptions(audio=True, video=False, animation=False)
LONG_QUESTION = "Tell me the long story of your life, in as much detail as you can."
PCM16 = pb.AudioFormat(encoding=pb.AUDIO_ENCODING_PCM16, sample_rate_hertz=16000)


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start_server(tmp_path_factory.mktemp("limited") / "server.log", extra_env=LIMITS)
    yield srv
    stop_server(srv)


@pytest.fixture(scope="module")
def limited_bridge(limited: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BridgeProcess]:
    b = start_bridge(tmp_path_factory.mktemp("limited-bridge"), limited.target)
    yield b
    stop_bridge(b)


def rss_mb(server: ServerProcess) -> float:
    for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def retry_after(err: grpc.aio.AioRpcError) -> int | None:
    value = dict(err.trailing_metadata() or ()).get("retry-after-ms")
    return int(value) if value is not None else None


def completed_turns(log: str) -> list[str]:
    """The session ids of the Interact turns the server logged as completed, in order."""
    return re.findall(r"turn \S+ session=(\S+) interact ", log)


async def interact(stub: pb_grpc.AvatarServiceStub, text: str, deadline: float = 60) -> tuple[str, float, object]:
    """("served" | status name, seconds, response or error)."""
    t0 = time.perf_counter()
    try:
        resp = await stub.Interact(pb.InteractRequest(text=text, outputs=AUDIO_ONLY), timeout=deadline)
        return "served", time.perf_counter() - t0, resp
    except grpc.aio.AioRpcError as err:
        return err.code().name, time.perf_counter() - t0, err


async def live_text_turn(
    stub: pb_grpc.AvatarServiceStub, text: str, outputs: pb.OutputOptions = AUDIO_ONLY
) -> list[pb.ConverseResponse]:
    async def requests() -> AsyncIterator[pb.ConverseRequest]:
        yield pb.ConverseRequest(config=pb.ConverseConfig(outputs=outputs))
        yield pb.ConverseRequest(text=text)

    return [ev async for ev in stub.Converse(requests(), timeout=60)]


async def test_a_live_turn_and_eight_interacts_all_end_and_the_server_recovers(limited: ServerProcess) -> None:
    async with grpc.aio.insecure_channel(limited.target) as channel:
        stub = pb_grpc.AvatarServiceStub(channel)
        t0 = time.perf_counter()
        live = asyncio.create_task(live_text_turn(stub, LONG_QUESTION))
        await asyncio.sleep(0.3)  # the live turn holds the model first
        outcomes = await asyncio.wait_for(
            asyncio.gather(*(interact(stub, f"{LONG_QUESTION} ({k})") for k in range(8))), 60
        )
        events = await asyncio.wait_for(live, 60)
        assert time.perf_counter() - t0 < 60
        assert {kind for kind, _, _ in outcomes} <= {"served", "RESOURCE_EXHAUSTED"}, outcomes
        assert sum(kind == "served" for kind, _, _ in outcomes) >= 2
        assert any(e.HasField("turn_completed") for e in events), events
        kind, seconds, _ = await interact(stub, "Hello!", deadline=20)
        assert kind == "served" and seconds < 5, (kind, seconds)


async def test_excess_interacts_are_refused_within_a_second_with_a_retry_hint(limited: ServerProcess) -> None:
    async with grpc.aio.insecure_channel(limited.target) as channel:
        stub = pb_grpc.AvatarServiceStub(channel)
        outcomes = await asyncio.gather(*(interact(stub, f"Question number {k}?", deadline=30) for k in range(24)))
    refused = [(s, e) for kind, s, e in outcomes if kind == "RESOURCE_EXHAUSTED"]
    served = [s for kind, s, _ in outcomes if kind == "served"]
    assert len(served) + len(refused) == 24, [k for k, _, _ in outcomes]
    assert len(served) >= 4 and len(refused) >= 12
    assert max(s for s, _ in refused) < 1.0
    for _, err in refused:
        assert isinstance(err, grpc.aio.AioRpcError)
        assert (retry_after(err) or 0) > 0 and "busy" in (err.details() or "")
    assert max(served) < 30


async def test_rest_answers_429_with_retry_after(limited_bridge: BridgeProcess) -> None:
    url = f"{limited_bridge.url}/api/v1/avatar/interact"
    async with httpx.AsyncClient(timeout=60) as client:
        responses = await asyncio.gather(
            *(client.post(url, data={"text": f"Question {k}?", "outputs": "audio"}) for k in range(10))
        )
    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 429} and 429 in codes and 200 in codes, codes
    refused = next(r for r in responses if r.status_code == 429)
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.json()["error"]["code"] == "RESOURCE_EXHAUSTED"


async def test_a_live_session_past_the_limit_is_closed_with_1013(limited_bridge: BridgeProcess) -> None:
    url = limited_bridge.url.replace("http://", "ws://") + "/api/v1/avatar/converse"
    config = json.dumps({"type": "config", "sample_rate": 16000, "outputs": ["audio"]})
    async with websockets.connect(url) as first, websockets.connect(url) as second:
        for ws in (first, second):
            await ws.send(config)
            await ws.send(bytes(640))  # the sessions are live
        await asyncio.sleep(0.5)
        async with websockets.connect(url) as third:
            await third.send(config)
            message = json.loads(await asyncio.wait_for(third.recv(), 10))
            assert message["type"] == "error" and message["code"] == "RESOURCE_EXHAUSTED", message
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(third.recv(), 10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013


async def _converse_status(
    stub: pb_grpc.AvatarServiceStub, requests: AsyncIterator[pb.ConverseRequest]
) -> tuple[list[pb.ConverseResponse], grpc.StatusCode, str]:
    events: list[pb.ConverseResponse] = []
    call = stub.Converse(requests, timeout=60)
    try:
        async for ev in call:
            events.append(ev)
        return events, grpc.StatusCode.OK, ""
    except grpc.aio.AioRpcError as err:
        return events, err.code(), err.details() or ""


async def test_converse_limits_each_get_a_clear_error_and_memory_stays_flat(limited: ServerProcess) -> None:
    async with grpc.aio.insecure_channel(limited.target, options=[("grpc.max_send_message_length", 64 << 20)]) as ch:
        stub = pb_grpc.AvatarServiceStub(ch)
        await interact(stub, "Hello!")

        async def one_huge_message() -> AsyncIterator[pb.ConverseRequest]:
            yield pb.ConverseRequest(config=pb.ConverseConfig(input_format=PCM16))
            yield pb.ConverseRequest(audio=bytes(200 * 16000 * 2))  # 200 s in one message

        async def abuse(round_: int) -> None:

            async def flood() -> AsyncIterator[pb.ConverseRequest]:
                yield pb.ConverseRequest(config=pb.ConverseConfig(outputs=AUDIO_ONLY))
                for k in range(1000):
                    yield pb.ConverseRequest(text=f"Question {k}?")

            t0 = time.perf_counter()
            events, code, _ = await _converse_status(stub, flood())
            errors = [e.error for e in events if e.HasField("error")]
            assert code == grpc.StatusCode.OK
            assert len(errors) >= 990 and all(e.code == "RESOURCE_EXHAUSTED" for e in errors)
            assert "already waiting" in errors[0].message
            completed = sum(e.HasField("turn_completed") for e in events)
            assert completed >= 1 and completed + len(errors) == 1000  # a freed place takes the next typed turn
            assert time.perf_counter() - t0 < 60

            _, code, details = await _converse_status(stub, one_huge_message())
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "at most 1 s of audio" in details

            async def too_fast() -> AsyncIterator[pb.ConverseRequest]:
                yield pb.ConverseRequest(config=pb.ConverseConfig(input_format=PCM16))
                noise = (np.random.default_rng(0).normal(0, 300, 1600)).astype("<i2").tobytes()
                for _ in range(600):  # 60 s of audio in about 2 s
                    yield pb.ConverseRequest(audio=noise)
                    await asyncio.sleep(0.0033)

            _, code, details = await _converse_status(stub, too_fast())
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "faster than 2x real time" in details

            async def silent() -> AsyncIterator[pb.ConverseRequest]:
                yield pb.ConverseRequest(config=pb.ConverseConfig())
                await asyncio.sleep(30)

            t0 = time.perf_counter()
            _, code, details = await _converse_status(stub, silent())
            assert code == grpc.StatusCode.DEADLINE_EXCEEDED and "No message for 2 s" in details
            assert time.perf_counter() - t0 < 5

            # A client that stops reading: the server closes it; meanwhile another session is served.
            stop_reading = asyncio.Event()

            async def talk_then_wait() -> AsyncIterator[pb.ConverseRequest]:
                yield pb.ConverseRequest(config=pb.ConverseConfig())  # audio + animation: large events
                for k in range(3):
                    yield pb.ConverseRequest(text=f"{LONG_QUESTION} ({k})")
                await stop_reading.wait()

            # A small receive window, so the transport does not buffer what the client does not read.
            slow_options = [("grpc.http2.lookahead_bytes", 16384), ("grpc.http2.bdp_probe", 0)]
            slow_channel = grpc.aio.insecure_channel(limited.target, options=slow_options)
            call = pb_grpc.AvatarServiceStub(slow_channel).Converse(talk_then_wait(), timeout=60)
            await call.read()  # then reads nothing more
            other = await asyncio.wait_for(live_text_turn(stub, "Hello!"), 30)
            assert any(e.HasField("turn_completed") for e in other)
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < 30 and limited.log().count("the client read nothing") <= round_:  # noqa: ASYNC110
                await asyncio.sleep(0.2)
            stop_reading.set()
            with pytest.raises(grpc.aio.AioRpcError) as err:
                while await call.read() is not grpc.aio.EOF:
                    pass
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err.value
            assert "read nothing" in (err.value.details() or "")
            await slow_channel.close()

        # Round 0 allocates what first use needs (the portrait's warp maps and the encoder, the allocator
        # keeps blocks of a 6 MB message, the model contexts' caches fill, ...); round 1, the same again,
        # must not grow: that would be a leak.
        await abuse(0)
        start_rss = rss_mb(limited)
        await abuse(1)
        assert rss_mb(limited) - start_rss < 50, (start_rss, rss_mb(limited))


async def test_a_cancelled_interact_frees_the_engine_and_writes_nothing(
    limited: ServerProcess, limited_bridge: BridgeProcess
) -> None:
    async with grpc.aio.insecure_channel(limited.target) as channel:
        stub = pb_grpc.AvatarServiceStub(channel)
        completed_before = completed_turns(limited.log())
        call = stub.Interact(pb.InteractRequest(text=LONG_QUESTION), timeout=60)
        await asyncio.sleep(0.5)
        call.cancel()
        t0 = time.perf_counter()
        kind, seconds, resp = await interact(stub, "Hi.", deadline=20)
        # Served at once: it waited for nothing (its own turn, up to 160 tokens here, is most of the time).
        assert kind == "served" and seconds - resp.timings.total_seconds < 1, (kind, seconds)  # type: ignore[attr-defined]
        assert time.perf_counter() - t0 < 10
    # Only "Hi." completed: the cancelled turn never did, so nothing of it was remembered.
    assert completed_turns(limited.log()) == [*completed_before, resp.session_id]  # type: ignore[attr-defined]

    # REST: a client that leaves mid-turn gets its gRPC call cancelled and no media is stored.
    before = set(limited_bridge.media_dir.rglob("*")) if limited_bridge.media_dir.exists() else set()
    async with httpx.AsyncClient(timeout=60) as client:
        post = asyncio.create_task(
            client.post(f"{limited_bridge.url}/api/v1/avatar/interact", data={"text": LONG_QUESTION})
        )
        await asyncio.sleep(1.0)
        post.cancel()
        with pytest.raises(asyncio.CancelledError):
            await post
    await asyncio.sleep(8)  # longer than the turn would have taken
    after = set(limited_bridge.media_dir.rglob("*")) if limited_bridge.media_dir.exists() else set()
    assert {p for p in after - before if p.is_file()} == set()


async def test_interrupt_with_video_on_answers_within_200_ms(limited: ServerProcess) -> None:
    interrupt = asyncio.Event()

    async def requests() -> AsyncIterator[pb.ConverseRequest]:
        yield pb.ConverseRequest(
            config=pb.ConverseConfig(outputs=pb.OutputOptions(audio=True, video=True, animation=True))
        )
        yield pb.ConverseRequest(text=LONG_QUESTION)
        await interrupt.wait()
        yield pb.ConverseRequest(interrupt=pb.Interrupt())

    async with grpc.aio.insecure_channel(limited.target) as channel:
        stub = pb_grpc.AvatarServiceStub(channel)
        sent = 0.0
        async for ev in stub.Converse(requests(), timeout=60):
            if ev.HasField("audio_chunk") and not interrupt.is_set():
                interrupt.set()
                sent = time.perf_counter()
            if ev.HasField("turn_completed"):
                assert ev.turn_completed.interrupted
                assert time.perf_counter() - sent < 0.2
                break


def test_sigterm_lets_the_turn_finish_tells_live_sessions_and_exits(tmp_path: Path) -> None:
    grace = 6.0
    server = start_server(tmp_path / "server.log", extra_env={"AVATAR_GRACE_SECONDS": str(grace)})

    async def scenario() -> tuple[str, list[pb.ConverseResponse], float]:
        async with grpc.aio.insecure_channel(server.target) as channel:
            stub = pb_grpc.AvatarServiceStub(channel)
            hold = asyncio.Event()

            async def live_requests() -> AsyncIterator[pb.ConverseRequest]:
                yield pb.ConverseRequest(config=pb.ConverseConfig())
                await hold.wait()

            live_events: list[pb.ConverseResponse] = []

            async def live() -> None:
                with_status = stub.Converse(live_requests(), timeout=60)
                try:
                    async for ev in with_status:
                        live_events.append(ev)
                except grpc.aio.AioRpcError as err:
                    assert err.code() == grpc.StatusCode.UNAVAILABLE

            live_task = asyncio.create_task(live())
            turn = asyncio.create_task(interact(stub, LONG_QUESTION, deadline=60))
            await asyncio.sleep(0.8)
            server.proc.send_signal(signal.SIGTERM)
            signalled = time.perf_counter()
            health = health_pb2_grpc.HealthStub(channel)
            status = await health.Check(health_pb2.HealthCheckRequest(service="avatar.v1.AvatarService"), timeout=2)
            assert status.status == health_pb2.HealthCheckResponse.NOT_SERVING
            kind, _, _ = await turn
            await asyncio.wait_for(live_task, 30)
            hold.set()
            return kind, live_events, signalled

    try:
        kind, live_events, signalled = asyncio.run(scenario())
        code = server.proc.wait(timeout=grace + 5)
        exited_after = time.perf_counter() - signalled
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
    assert kind == "served", server.log()
    final = [e.error for e in live_events if e.HasField("error")]
    assert final and final[-1].code == "UNAVAILABLE" and "shutting down" in final[-1].message
    assert code == 0 and exited_after < grace + 2, (code, exited_after)


def test_a_second_sigterm_exits_at_once(tmp_path: Path) -> None:
    server = start_server(tmp_path / "server.log", extra_env={"AVATAR_GRACE_SECONDS": "30"})

    async def scenario() -> float:
        async with grpc.aio.insecure_channel(server.target) as channel:
            stub = pb_grpc.AvatarServiceStub(channel)
            turn = asyncio.create_task(interact(stub, LONG_QUESTION, deadline=60))
            await asyncio.sleep(0.3)
            server.proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.3)
            server.proc.send_signal(signal.SIGTERM)
            t0 = time.perf_counter()
            turn.cancel()
            return t0

    try:
        t0 = asyncio.run(scenario())
        code = server.proc.wait(timeout=10)
        assert time.perf_counter() - t0 < 2 and code != 0, (code, server.log())
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
    assert "second signal: exiting now" in server.log()
