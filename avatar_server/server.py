"""Builds and runs the grpc.aio server: AvatarService, health checking and reflection."""

from __future__ import annotations

import asyncio
import logging
import signal
import time

import grpc
from avatar.v1 import avatar_pb2 as pb
from avatar.v1 import avatar_pb2_grpc as pb_grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from avatar_server.engines import factory
from avatar_server.engines.vad import SileroModel
from avatar_server.personas import load_avatars
from avatar_server.pipeline import Engines, Pipeline
from avatar_server.settings import Settings
from avatar_server.transport.grpc_service import AvatarService

log = logging.getLogger(__name__)
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["AvatarService"].full_name
MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # audio uploads up to the 25 MB cap, mp4 replies, with room


def load_pipeline(settings: Settings) -> Pipeline:
    """Load every engine (blocking, seconds): done before the service reports SERVING."""
    avatars = load_avatars(settings.avatars_dir)
    t0 = time.perf_counter()
    tts = {settings.tts_engine: factory.build_tts(settings.tts_engine, settings)}
    if settings.fallback_tts_engine not in tts:
        tts[settings.fallback_tts_engine] = factory.build_tts(settings.fallback_tts_engine, settings)
    engines = Engines(
        stt=factory.build_stt(settings),
        llm=factory.build_llm(settings),
        tts=tts,
        fallback_tts=settings.fallback_tts_engine,
        primary_tts=settings.tts_engine,
        animator=factory.build_animator(settings, avatars),
        vad=SileroModel(),
    )
    log.info("engines loaded in %.1fs", time.perf_counter() - t0)
    pipeline = Pipeline(settings, engines, avatars)
    t0 = time.perf_counter()
    pipeline.warm_up()
    log.info("engines warmed up in %.1fs", time.perf_counter() - t0)
    return pipeline


async def serve(settings: Settings) -> None:
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ]
    )
    service = AvatarService()
    pb_grpc.add_AvatarServiceServicer_to_server(service, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), server
    )
    address = f"{settings.host}:{settings.port}"
    port = server.add_insecure_port(address)
    if port == 0:
        raise RuntimeError(f"cannot listen on {address}")
    # Listen first, NOT_SERVING while engines load: orchestrators see the process alive but not ready.
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    await server.start()
    log.info("listening on %s:%d, loading engines", settings.host, port)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    loader = asyncio.create_task(asyncio.to_thread(load_pipeline, settings))
    done, _ = await asyncio.wait({loader, asyncio.create_task(stop.wait())}, return_when=asyncio.FIRST_COMPLETED)
    if loader in done:
        service.pipeline = loader.result()  # an engine that cannot load ends the process with its error
        for name in ("", SERVICE_NAME):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("SERVING %s on %s:%d", SERVICE_NAME, settings.host, port)
        await stop.wait()
    log.info("shutting down (grace %.1fs)", settings.grace_seconds)
    await health_servicer.enter_graceful_shutdown()
    await server.stop(settings.grace_seconds)
