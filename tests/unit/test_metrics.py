"""Prometheus metrics: what a turn observes, outcomes, the core's gauges read at scrape time, the gRPC edge's
counts (an in-process server), and the /metrics endpoint with and without keys."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest
from avatar.v1 import avatar_pb2 as pb
from avatar.v1 import avatar_pb2_grpc as pb_grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from avatar_server.core.service import AvatarCore
from avatar_server.engines.vad import SileroModel
from avatar_server.errors import EngineFailure, InvalidInput, Overloaded, ShuttingDown, StageTimeout, TooLarge
from avatar_server.observability.http import MetricsServer
from avatar_server.observability.interceptor import ObservabilityInterceptor
from avatar_server.observability.metrics import STAGES, Metrics, outcome, outcome_of_code
from avatar_server.settings import Settings
from avatar_server.transport.auth import ApiKeyInterceptor, KeyRing
from avatar_server.transport.grpc_service import AvatarService, add_to_server
from avatar_server.values import Outputs, Timings, TurnRequest
from tests.unit.fakes import FakeLLM, fake_core

SPEAK = Outputs(audio=True, video=False, animation=True)
AUDIO = pb.OutputOptions(audio=True, video=False, animation=False)


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the registry as text → parsed back: (name, sorted labels) → value."""
    from prometheus_client import generate_latest

    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(metrics: Metrics, name: str, **labels: str) -> float:
    return samples(metrics).get((name, tuple(sorted(labels.items()))), 0.0)


def test_a_served_turn_observes_only_the_stages_that_ran() -> None:
    m = Metrics()
    m.turn_served("interact", Timings(llm=0.8, llm_first_token=0.12, tts=0.3, tts_first_byte=0.3, total=1.2))
    m.turn_served("converse", Timings(stt=0.2, llm=0.5, voice_to_first_audio=0.9, end_of_turn=0.16))
    assert value(m, "avatar_turns_total", rpc="interact", outcome="ok") == 1
    assert value(m, "avatar_turns_total", rpc="converse", outcome="ok") == 1
    counts = {stage: value(m, "avatar_stage_seconds_count", stage=stage) for stage in STAGES}
    assert counts == {
        "stt": 1,
        "llm_first_token": 1,
        "llm": 2,
        "tts_first_byte": 1,
        "tts": 1,
        "animation": 0,
        "voice_to_first_audio": 1,
        "end_of_turn": 1,
    }
    assert value(m, "avatar_stage_seconds_sum", stage="llm") == pytest.approx(1.3)
    # Buckets resolve the short end: 0.12 s lies between the 0.1 and the 0.15 bound.
    assert value(m, "avatar_stage_seconds_bucket", stage="llm_first_token", le="0.1") == 0
    assert value(m, "avatar_stage_seconds_bucket", stage="llm_first_token", le="0.15") == 1


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (None, "cancelled"),
        (asyncio.CancelledError(), "cancelled"),
        (Overloaded("busy", 1000), "rejected"),
        (ShuttingDown("draining"), "rejected"),
        (TooLarge("too big"), "RESOURCE_EXHAUSTED"),  # over a cap: not a load refusal
        (InvalidInput("bad"), "INVALID_ARGUMENT"),
        (StageTimeout("slow"), "DEADLINE_EXCEEDED"),
        (EngineFailure("boom"), "INTERNAL"),
        (ZeroDivisionError("bug"), "INTERNAL"),
    ],
)
def test_outcome_names(error: BaseException | None, expected: str) -> None:
    assert outcome(error) == expected


def test_outcome_of_a_live_turns_error_event() -> None:
    assert outcome_of_code("RESOURCE_EXHAUSTED") == "rejected"
    assert outcome_of_code("INVALID_ARGUMENT") == "INVALID_ARGUMENT"


@pytest.fixture
def core() -> Iterator[AvatarCore]:
    settings = Settings(max_running_turns=1, max_waiting_turns=1)
    made, _ = fake_core(FakeLLM("Hello there. I am fine."), settings, vad=SileroModel())
    assert isinstance(made, AvatarCore)
    yield made
    made.shutdown()


async def test_gauges_and_busy_time_come_from_the_core(core: AvatarCore) -> None:
    m = core.metrics
    assert value(m, "avatar_active_sessions") == 0
    assert value(m, "avatar_queue_depth", queue="admission") == 0
    assert value(m, "avatar_engine_busy_seconds_total", engine="tts") == 0
    await core.interact(TurnRequest(text="hi", outputs=SPEAK))
    assert value(m, "avatar_engine_busy_seconds_total", engine="tts") > 0
    assert value(m, "avatar_engine_busy_seconds_total", engine="llm") > 0
    assert value(m, "avatar_engine_busy_seconds_total", engine="stt") == 0  # a typed turn
    # One turn runs, one waits (the limit is 1): the gauge sees the waiting one while it waits.
    async with core.admission.session(), core.admission.turn():
        waiting = asyncio.create_task(core.interact(TurnRequest(text="hi", outputs=SPEAK)))
        await asyncio.sleep(0.05)
        assert value(m, "avatar_queue_depth", queue="admission") == 1
        assert value(m, "avatar_active_sessions") == 1
    await waiting
    assert value(m, "avatar_queue_depth", queue="admission") == 0
    assert value(m, "avatar_active_sessions") == 0
    assert {"stt", "llm", "tts", "animation", "video"} <= {
        dict(labels)["queue"] for name, labels in samples(m) if name == "avatar_queue_depth"
    }


@pytest.fixture
async def grpc_edge(core: AvatarCore) -> AsyncIterator[tuple[grpc.aio.Channel, Metrics]]:
    """A real grpc.aio server with the interceptor first and a key check behind it, around the fake core."""
    metrics = core.metrics
    server = grpc.aio.server(
        interceptors=[ObservabilityInterceptor(metrics), ApiKeyInterceptor(KeyRing([SecretStr("k1")]))]
    )
    add_to_server(AvatarService(core), server)
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield channel, metrics
    await server.stop(None)


async def test_the_grpc_edge_counts_calls_and_turns(grpc_edge: tuple[grpc.aio.Channel, Metrics]) -> None:
    channel, m = grpc_edge
    stub = pb_grpc.AvatarServiceStub(channel)
    key = (("authorization", "Bearer k1"),)
    reply = await stub.Interact(pb.InteractRequest(text="hi", outputs=AUDIO), metadata=key)
    assert reply.reply_text
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Interact(pb.InteractRequest(text="hi", language="xx"), metadata=key)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Interact(pb.InteractRequest(text="hi"))  # no key
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())  # open without a key
    # A live session: one typed turn, counted as it completes.
    call = stub.Converse(metadata=key)
    await call.write(pb.ConverseRequest(config=pb.ConverseConfig(outputs=AUDIO)))
    await call.write(pb.ConverseRequest(text="hello"))
    async for event in call:
        if event.WhichOneof("event") == "turn_completed":
            break
    await call.done_writing()
    async for _ in call:
        pass

    interact = "/avatar.v1.AvatarService/Interact"
    assert value(m, "avatar_grpc_requests_total", method=interact, code="OK") == 1
    assert value(m, "avatar_grpc_requests_total", method=interact, code="INVALID_ARGUMENT") == 1
    assert value(m, "avatar_grpc_requests_total", method=interact, code="UNAUTHENTICATED") == 1
    assert value(m, "avatar_grpc_requests_total", method="/grpc.health.v1.Health/Check", code="OK") == 1
    assert value(m, "avatar_grpc_request_seconds_count", method=interact) == 3
    converse = "/avatar.v1.AvatarService/Converse"
    assert value(m, "avatar_grpc_requests_total", method=converse, code="OK") == 1
    # The refused-by-key call never reached the service: it is no turn.
    assert value(m, "avatar_turns_total", rpc="interact", outcome="ok") == 1
    assert value(m, "avatar_turns_total", rpc="interact", outcome="INVALID_ARGUMENT") == 1
    assert value(m, "avatar_turns_total", rpc="converse", outcome="ok") == 1
    assert value(m, "avatar_stage_seconds_count", stage="llm") == 2
    assert value(m, "avatar_stage_seconds_count", stage="tts") == 2
    assert value(m, "avatar_stage_seconds_count", stage="stt") == 0


def _get(url: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_the_endpoint_needs_a_key_when_keys_are_set() -> None:
    m = Metrics()
    m.turn_served("interact", Timings(llm=0.5))
    keys = KeyRing([SecretStr("secret-key")])
    server = MetricsServer(m.registry, "127.0.0.1", 0, keys.accepts).start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        assert _get(base + "/metrics")[0] == 401
        status, body = _get(base + "/metrics", "wrong")
        assert (status, body.strip()) == (401, "Invalid API key")
        status, body = _get(base + "/metrics", "secret-key")
        assert status == 200
        families = {f.name: f for f in text_string_to_metric_families(body)}
        assert families["avatar_stage_seconds"].type == "histogram"
        assert _get(base + "/other", "secret-key")[0] == 404
    finally:
        server.close()
    open_server = MetricsServer(m.registry, "127.0.0.1", 0).start()
    try:
        assert _get(f"http://127.0.0.1:{open_server.port}/metrics")[0] == 200
    finally:
        open_server.close()


def test_serve_metrics_follows_the_settings() -> None:
    from avatar_server.server import serve_metrics
    from avatar_server.transport.security import StartupRefused
    from tests.conftest import free_port

    registry = Metrics().registry
    assert serve_metrics(Settings(), registry) is None  # off unless a port is set
    with pytest.raises(StartupRefused, match="AVATAR_METRICS_OPEN=true"):
        serve_metrics(Settings(metrics_port=free_port(), metrics_host="0.0.0.0"), registry)
    keyed = serve_metrics(Settings(metrics_port=free_port(), api_keys="k1"), registry)
    opened = serve_metrics(Settings(metrics_port=free_port(), api_keys="k1", metrics_open=True), registry)
    assert keyed is not None and opened is not None
    try:
        assert _get(f"http://127.0.0.1:{keyed.port}/metrics")[0] == 401
        assert _get(f"http://127.0.0.1:{keyed.port}/metrics", "k1")[0] == 200
        assert _get(f"http://127.0.0.1:{opened.port}/metrics")[0] == 200
        with pytest.raises(StartupRefused, match=f"cannot serve /metrics on 127.0.0.1:{keyed.port}"):
            serve_metrics(Settings(metrics_port=keyed.port), registry)
    finally:
        keyed.close()
        opened.close()


async def test_a_streaming_handler_that_yields_is_counted() -> None:
    """Handlers written as async generators (the interceptor keeps them generators) and aborted ones."""

    async def count(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> AsyncIterator[bytes]:
        for i in range(int(request or b"0")):
            yield str(i).encode()
        if not request:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "say how many")

    m = Metrics()
    server = grpc.aio.server(interceptors=[ObservabilityInterceptor(m)])
    handler = grpc.unary_stream_rpc_method_handler(count)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Counter", {"Count": handler}),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_stream("/test.Counter/Count")
            assert [r async for r in call(b"3")] == [b"0", b"1", b"2"]
            with pytest.raises(grpc.aio.AioRpcError) as err:
                [r async for r in call(b"")]
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    finally:
        await server.stop(None)
    assert value(m, "avatar_grpc_requests_total", method="/test.Counter/Count", code="OK") == 1
    assert value(m, "avatar_grpc_requests_total", method="/test.Counter/Count", code="FAILED_PRECONDITION") == 1
