"""OpenTelemetry tracing with an in-memory exporter: a turn's span and its stages' children, the caller's
trace context from gRPC metadata as their parent, the trace id in log records, and the no-op path when off."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from avatar.v1 import avatar_pb2 as pb
from avatar.v1 import avatar_pb2_grpc as pb_grpc
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from avatar_server.core.service import AvatarCore
from avatar_server.engines.vad import SileroModel
from avatar_server.observability import tracing
from avatar_server.observability.interceptor import ObservabilityInterceptor
from avatar_server.transport.grpc_service import AvatarService, add_to_server
from avatar_server.values import Outputs, TurnRequest
from tests.unit.fakes import FakeLLM, fake_core

ROOT = Path(__file__).resolve().parents[2]
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracing.use(provider)
    yield memory
    tracing.use(None)
    provider.shutdown()


@pytest.fixture
def core() -> Iterator[AvatarCore]:
    made, _ = fake_core(FakeLLM("Hello there. I am fine."), vad=SileroModel())
    assert isinstance(made, AvatarCore)
    yield made
    made.shutdown()


def _hex(number: int, digits: int) -> str:
    return format(number, f"0{digits}x")


def _by_name(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def test_off_is_a_shared_no_op() -> None:
    tracing.use(None)
    assert not tracing.enabled()
    assert tracing.stage_span("stt") is tracing.turn_span(turn_id="t", session_id="s", rpc="interact", avatar="a")
    assert tracing.extract([("traceparent", TRACEPARENT)]) is None


@pytest.mark.parametrize(
    ("setting", "env", "on"),
    [
        (None, {}, False),
        (None, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        (None, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        (None, {"OTEL_TRACES_EXPORTER": "console"}, True),
        (None, {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
        (True, {}, True),
        (False, {"OTEL_TRACES_EXPORTER": "otlp"}, False),
    ],
)
def test_when_tracing_is_wanted(setting: bool | None, env: dict[str, str], on: bool) -> None:
    assert tracing.wanted(setting, env) is on


async def test_one_turn_is_one_span_with_a_child_per_stage(exporter: InMemorySpanExporter, core: AvatarCore) -> None:
    result = await core.interact(TurnRequest(text="hi", outputs=Outputs(audio=True, video=False, animation=True)))
    spans = exporter.get_finished_spans()
    [turn] = _by_name(spans, "turn")
    assert turn.parent is None  # no caller's context: a root
    attributes = dict(turn.attributes or {})
    assert attributes["turn.id"] == result.turn_id
    assert attributes["session.id"] == result.session_id
    assert (attributes["rpc"], attributes["language"], attributes["avatar"]) == ("interact", "en", "grace")
    assert attributes["turn.completed"] is True
    assert attributes["timing.llm_first_token"] > 0 and attributes["timing.tts"] > 0
    children = [s for s in spans if s.parent is not None and s.parent.span_id == turn.context.span_id]
    assert {s.name for s in children} == {"llm", "tts", "animation"}  # typed: no stt
    assert all(s.context.trace_id == turn.context.trace_id for s in spans)
    assert len(spans) == 1 + len(children)


async def test_a_failed_stage_marks_its_span(exporter: InMemorySpanExporter, core: AvatarCore) -> None:
    llm = core.engines.llm
    assert isinstance(llm, FakeLLM)
    llm.fail_next = True
    with pytest.raises(Exception, match="model crashed"):
        await core.interact(TurnRequest(text="hi", outputs=Outputs(audio=False, video=False, animation=False)))
    spans = exporter.get_finished_spans()
    [llm_span] = _by_name(spans, "llm")
    assert not llm_span.status.is_ok and llm_span.events and llm_span.events[0].name == "exception"
    [turn] = _by_name(spans, "turn")
    assert dict(turn.attributes or {})["turn.completed"] is False


@pytest.fixture
async def stub(core: AvatarCore) -> AsyncIterator[pb_grpc.AvatarServiceStub]:
    server = grpc.aio.server(interceptors=[ObservabilityInterceptor(core.metrics)])
    add_to_server(AvatarService(core), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield pb_grpc.AvatarServiceStub(channel)
    await server.stop(None)


async def test_a_traceparent_in_the_metadata_is_the_turns_parent(
    exporter: InMemorySpanExporter, stub: pb_grpc.AvatarServiceStub
) -> None:
    outputs = pb.OutputOptions(audio=True, video=False, animation=False)
    await stub.Interact(pb.InteractRequest(text="hi", outputs=outputs), metadata=(("traceparent", TRACEPARENT),))
    [turn] = _by_name(exporter.get_finished_spans(), "turn")
    assert turn.parent is not None and turn.parent.is_remote
    assert (_hex(turn.context.trace_id, 32), _hex(turn.parent.span_id, 16)) == (TRACE_ID, PARENT_ID)
    # Live turns too: every turn of the session is a child of the call's context.
    exporter.clear()
    call = stub.Converse(metadata=(("traceparent", TRACEPARENT),))
    await call.write(pb.ConverseRequest(config=pb.ConverseConfig(outputs=outputs)))
    await call.write(pb.ConverseRequest(text="hello"))
    await call.done_writing()
    kinds = [event.WhichOneof("event") async for event in call]
    assert "turn_completed" in kinds
    [live] = _by_name(exporter.get_finished_spans(), "turn")
    assert dict(live.attributes or {})["rpc"] == "converse"
    assert live.parent is not None and _hex(live.parent.span_id, 16) == PARENT_ID
    assert {s.name for s in exporter.get_finished_spans()} >= {"turn", "llm", "tts"}
    # Without a traceparent, a fresh trace.
    exporter.clear()
    await stub.Interact(pb.InteractRequest(text="hi", outputs=outputs))
    [turn] = _by_name(exporter.get_finished_spans(), "turn")
    assert turn.parent is None and _hex(turn.context.trace_id, 32) != TRACE_ID


async def test_log_records_carry_the_trace_id(exporter: InMemorySpanExporter, core: AvatarCore) -> None:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("test_tracing.logs")
    handler = Keep()
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        tracing.install_log_filter(logger)
        assert handler.formatter is not None and "%(trace_id)s" in (handler.formatter._fmt or "")
        with tracing.turn_span(turn_id="t1", session_id="s1", rpc="interact", avatar="grace") as span:
            assert span is not None
            logger.info("inside")
        logger.info("outside")
    finally:
        logger.removeHandler(handler)
    inside, outside = records
    assert inside.trace_id == _hex(span.get_span_context().trace_id, 32)
    assert outside.trace_id == "-"
    assert handler.format(inside).endswith(f"trace_id={_hex(span.get_span_context().trace_id, 32)}")


def test_off_imports_nothing_of_opentelemetry() -> None:
    """Zero cost when off: a turn runs without OpenTelemetry being imported at all (a fresh interpreter)."""
    script = (
        "import asyncio, sys\n"
        "from avatar_server.observability import tracing\n"
        "from avatar_server.values import Outputs, TurnRequest\n"
        "from tests.unit.fakes import FakeLLM, fake_core\n"
        "assert tracing.setup(None) is None\n"
        "core, _ = fake_core(FakeLLM('Hello there.'))\n"
        "outputs = Outputs(audio=True, video=False, animation=False)\n"
        "asyncio.run(core.interact(TurnRequest(text='hi', outputs=outputs)))\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "AVATAR_TRACING"))}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_setup_from_the_standard_environment() -> None:
    """OTEL_TRACES_EXPORTER=console alone turns tracing on (a fresh interpreter: setup sets process globals):
    the service is avatar-server, log lines end with the trace id."""
    script = (
        "import logging\n"
        "from avatar_server.observability import tracing\n"
        "logging.basicConfig(level=logging.INFO, format='%(levelname)s %(message)s')\n"
        "provider = tracing.setup(None)\n"
        "with tracing.turn_span(turn_id='t1', session_id='s1', rpc='interact', avatar='grace') as span:\n"
        "    logging.getLogger('x').info('in the turn')\n"
        "    print('TRACE', format(span.get_span_context().trace_id, '032x'), flush=True)\n"
        "tracing.shutdown(provider)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "AVATAR_TRACING"))}
    env["OTEL_TRACES_EXPORTER"] = "console"
    command = [sys.executable, "-c", script]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    trace_id = done.stdout.split("TRACE ", 1)[1].split()[0]
    assert f"INFO in the turn trace_id={trace_id}" in done.stderr
    assert '"name": "turn"' in done.stdout and '"service.name": "avatar-server"' in done.stdout
    assert '"turn.id": "t1"' in done.stdout
