"""Builds and runs the grpc.aio server: AvatarService, health checking and reflection."""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import grpc
from avatar.v1 import avatar_pb2 as pb
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry

from avatar_server.core.engines import Engines
from avatar_server.core.service import AvatarCore
from avatar_server.core.watchdog import Watchdog
from avatar_server.engines import factory
from avatar_server.engines.vad import SileroModel
from avatar_server.observability import tracing
from avatar_server.observability.http import MetricsServer
from avatar_server.observability.interceptor import ObservabilityInterceptor
from avatar_server.observability.metrics import Metrics
from avatar_server.personas import load_avatars
from avatar_server.settings import Settings
from avatar_server.transport import security
from avatar_server.transport.auth import KeyRing
from avatar_server.transport.grpc_service import AvatarService, add_to_server

log = logging.getLogger(__name__)
T = TypeVar("T")
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["AvatarService"].full_name
MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # audio uploads up to the 25 MB cap, mp4 replies, with room


def load_core(settings: Settings, metrics: Metrics | None = None) -> AvatarCore:
    """Load every engine (blocking, seconds): done before the service reports SERVING."""
    avatars = load_avatars(settings.avatars_dir)
    t0 = time.perf_counter()
    tts = factory.build_tts_engines(settings, [a.voice for a in avatars.values()])
    llm = factory.build_llm(settings)
    engines = Engines(
        stt=factory.build_stt(settings),
        llm=llm,
        live_llms=factory.build_live_llms(settings),
        tts=tts,
        fallback_tts=settings.fallback_tts_engine,
        primary_tts=settings.tts_engine,
        animator=factory.build_animator(settings, avatars),
        vad=SileroModel(),
        turn_model=factory.build_turn_model(settings),
    )
    log.info("engines loaded in %.1fs", time.perf_counter() - t0)
    core = AvatarCore(settings, engines, avatars, metrics)
    t0 = time.perf_counter()
    core.warm_up()
    log.info("engines warmed up in %.1fs", time.perf_counter() - t0)
    return core


async def _in_daemon_thread(fn: Callable[[], T]) -> T:
    """Run `fn` in a daemon thread: unlike the default executor, a stuck call cannot hold the process at exit."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def target() -> None:
        try:
            result = fn()
        except BaseException as exc:
            loop.call_soon_threadsafe(settle, None, exc)
        else:
            loop.call_soon_threadsafe(settle, result, None)

    threading.Thread(target=target, name="load-engines", daemon=True).start()
    return await future


async def _return_free_memory(every: float = 10.0) -> None:
    """Hand freed heap pages back to the OS now and then: glibc keeps them after a burst of turns (video
    frames, audio, tensors), so RSS would stay at the busiest moment's high-water mark."""
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return
    while True:
        await asyncio.sleep(every)
        await _in_daemon_thread(lambda: trim(0))


def serve_metrics(settings: Settings, registry: CollectorRegistry) -> MetricsServer | None:
    """/metrics on AVATAR_METRICS_HOST:AVATAR_METRICS_PORT (0: off), behind the API keys unless opened on purpose.
    Off loopback with no keys it must be opened on purpose (metrics_open or allow_insecure)."""
    if not settings.metrics_port:
        return None
    keys = KeyRing(settings.api_keys)
    host = settings.metrics_host
    if not (keys or settings.metrics_open or settings.allow_insecure or security.is_loopback(host)):
        raise security.StartupRefused(
            f"refusing to serve /metrics on {host} without API keys: set AVATAR_API_KEYS (scrapers send "
            "'Authorization: Bearer <key>'), or AVATAR_METRICS_OPEN=true if every client on this network may read them"
        )
    authorize = keys.accepts if keys and not settings.metrics_open else None
    try:
        server = MetricsServer(registry, host, settings.metrics_port, authorize).start()
    except OSError as exc:
        reason = exc.strerror or exc
        raise security.StartupRefused(f"cannot serve /metrics on {host}:{settings.metrics_port}: {reason}") from None
    access = "API keys" if authorize else "open"
    log.info("metrics at http://%s:%d/metrics (%s)", host, server.port, access)
    return server


async def serve(settings: Settings) -> None:
    # Refused before anything listens or loads: keys off loopback, TLS files that exist and pair up.
    security.check_exposure(settings)
    credentials = security.server_credentials(settings)
    metrics = Metrics()
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ],
        # First: calls the key check refuses are counted too, and every call runs in its caller's trace.
        interceptors=[ObservabilityInterceptor(metrics), *security.interceptors(settings)],
    )
    tracer_provider = tracing.setup(settings.tracing)
    metrics_server = serve_metrics(settings, metrics.registry)
    service = AvatarService(metrics=metrics)
    add_to_server(service, server)  # requests parsed in the handlers: bad UTF-8 -> INVALID_ARGUMENT
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if security.reflection_enabled(settings):
        reflection.enable_server_reflection(
            (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), server
        )
    address = f"{settings.host}:{settings.port}"
    secure = credentials is not None  # with TLS, plaintext is not served at all
    port = server.add_secure_port(address, credentials) if secure else server.add_insecure_port(address)
    if port == 0:
        raise RuntimeError(f"cannot listen on {address}")

    async def set_health(serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", SERVICE_NAME):
            await health_servicer.set(name, status)

    # Listen first, NOT_SERVING while engines load: orchestrators see the process alive but not ready.
    await set_health(False)
    await server.start()
    log.info("listening on %s:%d (%s), loading engines", settings.host, port, security.describe(settings))

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stop.is_set():
            log.warning("second signal: exiting now")
            os._exit(1)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)

    loader = asyncio.ensure_future(_in_daemon_thread(lambda: load_core(settings, metrics)))
    done, _ = await asyncio.wait({loader, asyncio.create_task(stop.wait())}, return_when=asyncio.FIRST_COMPLETED)
    watchdog_task: asyncio.Task[None] | None = None
    if loader in done:
        try:
            core = service.core = loader.result()  # an engine that cannot load ends the process with its error
        except BaseException:
            # Closed here, not by grpc.aio's __del__ after the loop has gone; the grace lets a health check
            # in flight finish rather than be cancelled (grpc.aio logs a traceback for each cancelled call).
            await server.stop(1.0)
            raise
        watchdog = Watchdog(
            core.workers,
            stall_seconds=settings.stall_seconds,
            interval=settings.watchdog_interval_seconds,
            on_change=set_health,
        )
        watchdog_task = asyncio.create_task(watchdog.run())
        trimmer = asyncio.create_task(_return_free_memory())
        await set_health(True)
        log.info("SERVING %s on %s:%d", SERVICE_NAME, settings.host, port)
        await stop.wait()
    # Drain: NOT_SERVING first (load balancers stop sending), running turns finish within the grace
    # period, live sessions are told, then the process ends.
    log.info("shutting down (grace %.1fs)", settings.grace_seconds)
    await health_servicer.enter_graceful_shutdown()
    if watchdog_task is not None:
        watchdog_task.cancel()
        trimmer.cancel()
    await service.drain(settings.grace_seconds)
    await server.stop(1.0)
    if service.core is not None:
        service.core.shutdown()
    if metrics_server is not None:
        metrics_server.close()
    tracing.shutdown(tracer_provider)  # the last spans go out
    log.info("stopped")
