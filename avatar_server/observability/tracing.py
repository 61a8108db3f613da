"""OpenTelemetry traces: a span per turn with a child span per stage, parented on the caller's trace.

Optional (the `otel` extra) and off by default. Off, every hook returns one shared no-op context manager:
nothing of OpenTelemetry is imported and no span object exists. On (AVATAR_TRACING=true, or the standard
OTEL_TRACES_EXPORTER / OTEL_EXPORTER_OTLP_ENDPOINT set), the SDK's TracerProvider exports through the
exporter the standard OTEL_* environment names (OTLP over HTTP by default), and log records carry the trace id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

log = logging.getLogger(__name__)
SERVICE_NAME = "avatar-server"
_NULL: AbstractContextManager[None] = contextlib.nullcontext()
_tracer: Tracer | None = None
# A worker's name → the span of its stage (the live LLM contexts are the LLM too).
_STAGE_NAMES = {"decode": "decode", "stt": "stt", "tts": "tts", "animation": "animation", "video": "video"}


class TracingUnavailable(RuntimeError):
    """Tracing was asked for but OpenTelemetry is not installed."""


def wanted(setting: bool | None, environ: dict[str, str] | None = None) -> bool:
    """AVATAR_TRACING when set; otherwise on when the standard OTEL_* environment names an exporter."""
    if setting is not None:
        return setting
    env = os.environ if environ is None else environ
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def enabled() -> bool:
    return _tracer is not None


def setup(setting: bool | None) -> TracerProvider | None:
    """Configure tracing for this process from the environment (see the module's docstring); the provider,
    or None when tracing is off. An explicit AVATAR_TRACING=true without the extra installed is an error; an
    OTEL_* variable meant for other programs only earns a warning."""
    if not wanted(setting):
        return None
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
    except ImportError:
        message = "tracing needs OpenTelemetry: pip install 'talking-avatar[otel]'"
        if setting:
            raise TracingUnavailable(f"AVATAR_TRACING=true but {message}") from None
        log.warning("OTEL_* is set but %s; tracing stays off", message)
        return None
    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": SERVICE_NAME}
    provider = TracerProvider(resource=Resource.create(attributes))
    names = [n.strip().lower() for n in os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",") if n.strip()]
    for name in names or ["otlp"]:
        exporter: SpanExporter
        if name == "console":
            exporter = ConsoleSpanExporter()
        else:
            if name != "otlp":
                log.warning("OTEL_TRACES_EXPORTER=%s is not supported here; using otlp (OTLP over HTTP)", name)
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get(
                "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
            )
            if protocol != "http/protobuf":
                log.warning("OTLP protocol %r is not available here; spans go out as http/protobuf", protocol)

            # Endpoint, headers, timeout and compression: the OTEL_EXPORTER_OTLP_* environment.
            exporter = OTLPSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    use(provider)
    install_log_filter()
    log.info("tracing on: exporting spans with %s", ", ".join(names or ["otlp"]))
    return provider


def use(provider: Any | None) -> None:
    """Trace with this TracerProvider from now on (tests pass their own); None turns tracing off."""
    global _tracer
    _tracer = None if provider is None else provider.get_tracer("avatar_server")


def shutdown(provider: TracerProvider | None) -> None:
    """Flush the spans still queued (at exit)."""
    if provider is not None:
        provider.shutdown()


# -- spans ---------------------------------------------------------------------------------------------


def turn_span(*, turn_id: str, session_id: str, rpc: str, avatar: str) -> AbstractContextManager[Span | None]:
    """The span of one turn, current while it runs (its stages' spans become its children). Off: a no-op."""
    if _tracer is None:
        return _NULL
    attributes = {"turn.id": turn_id, "session.id": session_id, "rpc": rpc, "avatar": avatar}
    return _span("turn", attributes)


def stage_span(worker: str) -> AbstractContextManager[Span | None]:
    """The span of one engine call of a turn, named by its stage. Off: a no-op."""
    if _tracer is None:
        return _NULL
    name = _STAGE_NAMES.get(worker, "llm" if worker.startswith("llm") else worker)
    return _span(name, {"worker": worker})


@contextlib.contextmanager
def _span(name: str, attributes: dict[str, str]) -> Iterator[Span]:
    from opentelemetry.trace import Status, StatusCode

    assert _tracer is not None
    with _tracer.start_as_current_span(
        name, attributes=attributes, record_exception=False, set_status_on_exception=False
    ) as span:
        try:
            yield span
        except asyncio.CancelledError:
            span.set_attribute("cancelled", True)  # an interruption, a disconnect: not an error of the server
            raise
        except Exception as exc:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise


def finish_turn(span: Span | None, *, language: str, completed: bool, timings: object) -> None:
    """The turn's last attributes: its language, whether it completed, and every stage's seconds (the first
    token and first byte among them: `timing.llm_first_token` is when the model's first words came)."""
    if span is None:
        return
    span.set_attribute("language", language)
    span.set_attribute("turn.completed", completed)
    for name, value in vars(timings).items():
        if isinstance(value, float) and value > 0:
            span.set_attribute(f"timing.{name}", round(value, 4))


def extract(metadata: Iterable[tuple[str, str | bytes]] | None) -> Context | None:
    """The caller's trace context from gRPC metadata (W3C traceparent); None when tracing is off."""
    if _tracer is None:
        return None
    from opentelemetry import propagate

    carrier = {k.lower(): v for k, v in metadata or () if isinstance(v, str)}
    return propagate.extract(carrier)


@contextlib.contextmanager
def attached(context: Context | None) -> Iterator[None]:
    """Make `context` current for the block (a call's handler); None: nothing to do."""
    if context is None:
        yield
        return
    from opentelemetry import context as otel_context

    token = otel_context.attach(context)
    try:
        yield
    finally:
        otel_context.detach(token)


# -- logs ----------------------------------------------------------------------------------------------


class TraceIdFilter(logging.Filter):
    """Adds `trace_id` to every record: the current span's trace id in hex, or "-" outside a span."""

    def filter(self, record: logging.LogRecord) -> bool:
        trace_id = "-"
        if _tracer is not None:
            from opentelemetry import trace

            context = trace.get_current_span().get_span_context()
            if context.is_valid:
                trace_id = format(context.trace_id, "032x")
        record.trace_id = trace_id
        return True


def install_log_filter(logger: logging.Logger | None = None) -> None:
    """Every handler of `logger` (the root's by default) adds the trace id and shows it at the line's end."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if any(isinstance(f, TraceIdFilter) for f in handler.filters):
            continue
        handler.addFilter(TraceIdFilter())
        current = handler.formatter
        fmt = current._fmt if current is not None and current._fmt else "%(levelname)s %(name)s: %(message)s"
        if "%(trace_id)" not in fmt:
            datefmt = current.datefmt if current is not None else None
            handler.setFormatter(logging.Formatter(fmt + " trace_id=%(trace_id)s", datefmt))
