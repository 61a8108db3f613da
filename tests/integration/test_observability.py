"""Metrics and traces of a real server process: /metrics behind the API key, parsed by the Prometheus text
parser after served, refused and invalid turns; spans exported over OTLP/HTTP to a local collector, one trace
per turn with a "turn" span and its stages, parented on the traceparent the caller sent; trace ids in the log."""

from __future__ import annotations

import queue
import secrets
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from avatar.v1 import avatar_pb2 as pb
from avatar.v1 import avatar_pb2_grpc as pb_grpc
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ServerProcess, free_port, start_server, stop_server
from tests.otlp_collector import CollectedSpan, OtlpCollector

pytestmark = pytest.mark.slow

KEY = "itest-metrics-" + secrets.token_hex(12)
AUTH = (("authorization", f"Bearer {KEY}"),)
TRACE_ID = secrets.token_hex(16)
PARENT_ID = secrets.token_hex(8)
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
SPEAK = pb.OutputOptions(audio=True, video=False, animation=False)
INTERACT = "/avatar.v1.AvatarService/Interact"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@dataclass
class Observed:
    server: ServerProcess
    metrics_url: str
    collector: OtlpCollector
    stub: pb_grpc.AvatarServiceStub


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observed]:
    port = free_port()
    env = {
        "AVATAR_API_KEYS": KEY,
        "AVATAR_METRICS_PORT": str(port),
        # One turn at a time and no queue: a second turn at once is refused for load.
        "AVATAR_MAX_RUNNING_TURNS": "1",
        "AVATAR_MAX_WAITING_TURNS": "0",
        # Lighter start-up: no turn model, the espeak voice, short replies.
        "AVATAR_TURN_MODEL": "false",
        "AVATAR_TTS_ENGINE": "espeak",
        "AVATAR_LLM_LIVE_CONTEXTS": "0",
        "AVATAR_LLM_MAX_TOKENS": "24",
    }
    with OtlpCollector() as collector:
        env |= {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"}
        server = start_server(tmp_path_factory.mktemp("observability") / "server.log", env)
        try:
            with grpc.insecure_channel(server.target) as channel:
                yield Observed(
                    server, f"http://127.0.0.1:{port}/metrics", collector, pb_grpc.AvatarServiceStub(channel)
                )
        finally:
            stop_server(server)


def scrape(url: str, key: str | None = KEY) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def parse(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def get(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_need_the_key(observed: Observed) -> None:
    assert scrape(observed.metrics_url, None)[0] == 401
    assert scrape(observed.metrics_url, "not-" + KEY)[0] == 401
    status, text = scrape(observed.metrics_url)
    assert status == 200 and "avatar_turns_total" in text
    assert KEY not in observed.server.log()


def test_turns_are_counted_by_outcome_and_stage(observed: Observed) -> None:
    stub = observed.stub
    before = parse(scrape(observed.metrics_url)[1])
    served = 0
    for text in ("Hello! Who are you?", "What did you build?"):
        reply = stub.Interact(pb.InteractRequest(text=text, outputs=SPEAK), metadata=AUTH, timeout=120)
        assert reply.reply_text
        served += 1
    with pytest.raises(grpc.RpcError) as err:
        stub.Interact(pb.InteractRequest(text="hi", language="xx"), metadata=AUTH, timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # Two at once with room for one: one served, one refused at once for load.
    with ThreadPoolExecutor(2) as pool:
        calls = [
            pool.submit(
                stub.Interact, pb.InteractRequest(text="Tell me a fact.", outputs=SPEAK), metadata=AUTH, timeout=120
            )
            for _ in range(2)
        ]
        codes = []
        for call in calls:
            try:
                call.result()
                codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as exc:
                codes.append(exc.code())
    assert sorted(c.name for c in codes) == ["OK", "RESOURCE_EXHAUSTED"]
    served += 1

    after = parse(scrape(observed.metrics_url)[1])

    def delta(name: str, **labels: str) -> float:
        return get(after, name, **labels) - get(before, name, **labels)

    assert delta("avatar_turns_total", rpc="interact", outcome="ok") == served
    assert delta("avatar_turns_total", rpc="interact", outcome="rejected") == 1
    assert delta("avatar_turns_total", rpc="interact", outcome="INVALID_ARGUMENT") == 1
    # Every served turn wrote and spoke: those stages counted once per turn; typed turns had no speech to hear.
    for stage in ("llm_first_token", "llm", "tts_first_byte", "tts"):
        assert delta("avatar_stage_seconds_count", stage=stage) == served, stage
        assert delta("avatar_stage_seconds_bucket", stage=stage, le="+Inf") == served, stage
    assert delta("avatar_stage_seconds_count", stage="stt") == 0
    assert delta("avatar_stage_seconds_count", stage="animation") == 0  # not asked for
    assert delta("avatar_grpc_requests_total", method=INTERACT, code="OK") == served
    assert delta("avatar_grpc_requests_total", method=INTERACT, code="INVALID_ARGUMENT") == 1
    assert delta("avatar_grpc_requests_total", method=INTERACT, code="RESOURCE_EXHAUSTED") == 1
    assert delta("avatar_grpc_request_seconds_count", method=INTERACT) == served + 2
    # The health polls of the start-up are counted too (open without a key).
    assert get(after, "avatar_grpc_requests_total", method="/grpc.health.v1.Health/Check", code="OK") >= 1
    assert delta("avatar_engine_busy_seconds_total", engine="llm") > 0
    assert delta("avatar_engine_busy_seconds_total", engine="tts") > 0
    assert get(after, "avatar_active_sessions") == 0
    assert get(after, "avatar_queue_depth", queue="admission") == 0


def _turns(spans: list[CollectedSpan], turn_id: str) -> list[CollectedSpan]:
    return [s for s in spans if s.name == "turn" and s.attributes.get("turn.id") == turn_id]


def test_a_turn_is_one_trace_under_the_callers_span(observed: Observed) -> None:
    metadata = (*AUTH, ("traceparent", TRACEPARENT))
    reply = observed.stub.Interact(
        pb.InteractRequest(text="Good morning!", outputs=SPEAK), metadata=metadata, timeout=120
    )
    spans = observed.collector.wait_for(lambda spans: bool(_turns(spans, reply.turn_id)))
    [turn] = _turns(spans, reply.turn_id)
    assert (turn.trace_id, turn.parent_span_id) == (TRACE_ID, PARENT_ID)
    assert turn.service == "avatar-server"
    assert turn.attributes["rpc"] == "interact" and turn.attributes["session.id"] == reply.session_id
    assert turn.attributes["language"] == "en" and turn.attributes["avatar"]
    assert turn.attributes["timing.llm_first_token"] > 0
    # The stage spans end before the turn's, so they are exported with it or before it.
    children = [s for s in spans if s.parent_span_id == turn.span_id]
    assert {"llm", "tts"} <= {s.name for s in children}
    assert all(s.trace_id == TRACE_ID for s in children)
    assert all(turn.start_ns <= s.start_ns and s.end_ns <= turn.end_ns for s in children)
    # Only this turn joined the caller's trace; a turn without a traceparent starts its own.
    assert [s for s in spans if s.trace_id == TRACE_ID and s.name == "turn"] == [turn]
    other = observed.stub.Interact(pb.InteractRequest(text="Thanks.", outputs=SPEAK), metadata=AUTH, timeout=120)
    spans = observed.collector.wait_for(lambda spans: bool(_turns(spans, other.turn_id)))
    [second] = _turns(spans, other.turn_id)
    assert second.parent_span_id == "" and second.trace_id != TRACE_ID
    # Log lines written inside the turn carry its trace id.
    assert f"trace_id={TRACE_ID}" in observed.server.log()


def test_metrics_port_in_use_is_a_clear_start_up_error(observed: Observed, tmp_path: Path) -> None:
    taken = observed.metrics_url.split(":")[2].split("/")[0]
    with pytest.raises(RuntimeError, match=rf"cannot serve /metrics on 127.0.0.1:{taken}"):
        start_server(tmp_path / "second.log", {"AVATAR_METRICS_PORT": taken}, timeout=60)


def test_a_live_session_is_counted_while_it_lasts(observed: Observed) -> None:
    before = parse(scrape(observed.metrics_url)[1])
    requests: queue.Queue[pb.ConverseRequest | None] = queue.Queue()
    requests.put(pb.ConverseRequest(config=pb.ConverseConfig(outputs=SPEAK)))
    requests.put(pb.ConverseRequest(text="Hello there!"))
    events = observed.stub.Converse(iter(requests.get, None), metadata=AUTH, timeout=120)
    during = None
    for event in events:
        if event.WhichOneof("event") == "turn_completed":
            during = parse(scrape(observed.metrics_url)[1])
            requests.put(None)  # the client is done: the stream ends
    assert during is not None
    assert get(during, "avatar_active_sessions") == 1
    after = parse(scrape(observed.metrics_url)[1])
    assert get(after, "avatar_active_sessions") == 0
    ok = ("avatar_turns_total", (("outcome", "ok"), ("rpc", "converse")))
    assert after.get(ok, 0) - before.get(ok, 0) == 1
    converse = "/avatar.v1.AvatarService/Converse"
    assert get(after, "avatar_grpc_requests_total", method=converse, code="OK") == 1
