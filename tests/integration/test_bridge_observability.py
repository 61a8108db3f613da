"""The bridge's /metrics and traces against a real avatar_server, both exporting spans to a local OTLP collector."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import BridgeProcess, ServerProcess, start_bridge, start_server, stop_bridge, stop_server
from tests.integration.test_bridge_converse import receive_turn, ws_url
from tests.otlp_collector import CollectedSpan, OtlpCollector

pytestmark = pytest.mark.slow
INTERACT = "/api/v1/avatar/interact"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def collector() -> Iterator[OtlpCollector]:
    with OtlpCollector() as c:
        yield c


@pytest.fixture(scope="module")
def traced(collector: OtlpCollector, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BridgeProcess]:
    """A server and a bridge, tracing on through the standard environment, exporting to `collector`."""
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    folder = tmp_path_factory.mktemp("observability")
    server: ServerProcess = start_server(folder / "server.log", extra_env=env)
    try:
        bridge = start_bridge(folder, server.target, extra_env=env)
        yield bridge
        stop_bridge(bridge)
    finally:
        stop_server(server)


@pytest.fixture(scope="module")
def http(traced: BridgeProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=traced.url, timeout=120) as client:
        yield client


def scrape(http: httpx.Client) -> Samples:
    resp = http.get("/metrics")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(resp.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def test_metrics_count_requests_by_route_and_code(http: httpx.Client) -> None:
    before = scrape(http)
    for text in ("Hello there.", "What is your name?"):
        resp = http.post(INTERACT, data={"text": text, "outputs": "audio"})
        assert resp.status_code == 200, resp.text
    audio_url = resp.json()["audio_url"]
    assert http.get(audio_url).status_code == 200
    assert http.get("/static/audio/no-such-file.wav").status_code == 404
    assert http.post(INTERACT, data={"text": ""}).status_code == 400
    assert http.get("/healthz").status_code == 200
    after = scrape(http)
    requests = "avatar_http_requests_total"
    assert delta(before, after, requests, method="POST", route=INTERACT, code="200") == 2
    assert delta(before, after, requests, method="POST", route=INTERACT, code="400") == 1
    media = {"method": "GET", "route": "/static/{kind}/{filename}"}
    assert delta(before, after, requests, **media, code="200") == 1
    assert delta(before, after, requests, **media, code="404") == 1
    assert delta(before, after, requests, method="GET", route="/healthz", code="200") == 1
    assert not any("no-such-file" in dict(labels).get("route", "") for _, labels in after)
    # The histogram saw the three interact requests; the two turns took longer than the refusal's bucket.
    seconds = {"method": "POST", "route": INTERACT}
    assert delta(before, after, "avatar_http_request_seconds_count", **seconds) == 3
    assert delta(before, after, "avatar_http_request_seconds_sum", **seconds) > 0
    assert delta(before, after, "avatar_http_request_seconds_bucket", **seconds, le="+Inf") == 3
    # The bridge's own gRPC calls: two Interact turns, a health check.
    grpc_calls = "avatar_bridge_grpc_requests_total"
    assert delta(before, after, grpc_calls, method="/avatar.v1.AvatarService/Interact", code="OK") == 2
    assert delta(before, after, grpc_calls, method="/grpc.health.v1.Health/Check", code="OK") == 1


def wait_until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def _trace_of(spans: list[CollectedSpan], trace_id: str) -> dict[str, CollectedSpan]:
    return {s.span_id: s for s in spans if s.trace_id == trace_id}


def _turn(spans: list[CollectedSpan], turn_id: str) -> CollectedSpan | None:
    return next((s for s in spans if s.name == "turn" and s.attributes.get("turn.id") == turn_id), None)


def bridge_parent_of_turn(collector: OtlpCollector, turn_id: str, bridge_span: str) -> tuple[CollectedSpan, ...]:
    """Wait for the turn's trace; the bridge's span named `bridge_span` must be the turn span's nearest bridge
    ancestor (the server may put its own span for the call between them), in one trace. Returns (bridge, turn)."""

    def ready(spans: list[CollectedSpan]) -> bool:
        turn = _turn(spans, turn_id)
        return turn is not None and any(s.name == bridge_span for s in _trace_of(spans, turn.trace_id).values())

    spans = collector.wait_for(ready)
    turn = _turn(spans, turn_id)
    assert turn is not None and turn.service == "avatar-server"
    trace = _trace_of(spans, turn.trace_id)
    bridge = [s for s in trace.values() if s.service == "avatar-bridge"]
    assert [s.name for s in bridge] == [bridge_span], [s.name for s in bridge]
    ancestor = turn
    while ancestor.service != "avatar-bridge":
        assert ancestor.parent_span_id in trace, f"{ancestor.name}'s parent is not in the trace"
        ancestor = trace[ancestor.parent_span_id]
    assert ancestor is bridge[0]
    stages = [s for s in trace.values() if s.parent_span_id == turn.span_id]
    assert stages, "the turn has no stage spans"
    return bridge[0], turn


def test_one_typed_turn_is_one_trace_from_the_bridge_to_the_stages(
    http: httpx.Client, collector: OtlpCollector
) -> None:
    resp = http.post(INTERACT, data={"text": "Tell me a short story.", "outputs": "audio"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    bridge, turn = bridge_parent_of_turn(collector, body["turn_id"], f"POST {INTERACT}")
    assert bridge.parent_span_id == ""  # no traceparent came in: the bridge's span is the root
    assert bridge.attributes["http.route"] == INTERACT and bridge.attributes["http.response.status_code"] == 200
    assert turn.attributes.get("session.id") == body["session_id"]
    assert bridge.start_ns <= turn.start_ns and turn.end_ns <= bridge.end_ns


def test_an_incoming_traceparent_is_continued(http: httpx.Client, collector: OtlpCollector) -> None:
    trace_id, parent = "5d8f1c2e9a7b4c3d2e1f0a9b8c7d6e5f", "a1b2c3d4e5f60718"
    resp = http.post(
        INTERACT, data={"text": "Hi.", "outputs": "audio"}, headers={"traceparent": f"00-{trace_id}-{parent}-01"}
    )
    assert resp.status_code == 200, resp.text
    bridge, turn = bridge_parent_of_turn(collector, resp.json()["turn_id"], f"POST {INTERACT}")
    assert bridge.trace_id == turn.trace_id == trace_id and bridge.parent_span_id == parent


async def test_a_websocket_session_is_one_span_and_counted(
    traced: BridgeProcess, http: httpx.Client, collector: OtlpCollector
) -> None:
    before = scrape(http)
    async with websockets.connect(ws_url(traced), max_size=None) as ws:
        await ws.send(json.dumps({"type": "config"}))
        await ws.send(json.dumps({"type": "text", "text": "Say hello."}))
        events, _ = await receive_turn(ws)
        assert events[-1]["type"] == "turn_completed", events[-1]
        assert value(scrape(http), "avatar_bridge_websockets_active") == 1
    wait_until(lambda: value(scrape(http), "avatar_bridge_websockets_active") == 0)
    after = scrape(http)
    assert delta(before, after, "avatar_bridge_ws_messages_total", direction="in") == 2
    assert delta(before, after, "avatar_bridge_ws_messages_total", direction="out") >= len(events)
    converse = {"method": "/avatar.v1.AvatarService/Converse"}
    assert (
        sum(delta(before, after, "avatar_bridge_grpc_requests_total", **converse, code=c) for c in ("OK", "CANCELLED"))
        == 1
    )
    bridge, _ = bridge_parent_of_turn(collector, events[-1]["turn_id"], "WS /api/v1/avatar/converse")
    assert bridge.attributes["http.route"] == "/api/v1/avatar/converse"


def test_metrics_need_the_key_when_keys_are_set(traced: BridgeProcess, tmp_path: Path) -> None:
    target = "127.0.0.1:1"  # the key check comes first: no server is needed
    bridge = start_bridge(tmp_path, target, extra_env={"AVATAR_API_KEYS": "k-observability-it"})
    try:
        assert httpx.get(f"{bridge.url}/metrics").status_code == 401
        assert httpx.get(f"{bridge.url}/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        ok = httpx.get(f"{bridge.url}/metrics", headers={"Authorization": "Bearer k-observability-it"})
        assert (
            ok.status_code == 200
            and 'avatar_http_requests_total{code="401",method="GET",route="/metrics"} 2.0' in ok.text
        )
    finally:
        stop_bridge(bridge)
