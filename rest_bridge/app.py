"""FastAPI app: the seed's REST contract in front of gRPC AvatarService, media by URL, the widget at /."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from avatar.v1 import avatar_pb2_grpc as pb_grpc
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from grpc_health.v1 import health_pb2_grpc
from starlette.exceptions import HTTPException as StarletteHTTPException

from rest_bridge import errors, observability
from rest_bridge.backend import Backend
from rest_bridge.catch_all import CatchAll
from rest_bridge.grpc_channel import open_channel, read_ca
from rest_bridge.guard import AccessGuard, SecurityHeaders, document_security
from rest_bridge.limits import BodySizeLimit
from rest_bridge.media_store import MediaStore
from rest_bridge.routes import avatars, converse, health, interact, media, ticket
from rest_bridge.security import Security, check_exposure
from rest_bridge.settings import BridgeSettings, get_settings

log = logging.getLogger(__name__)
INTERACT_PATH = "/api/v1/avatar/interact"
_MULTIPART_OVERHEAD = 64 * 1024


def create_app(settings: BridgeSettings | None = None) -> FastAPI:
    """The bridge; SecurityConfigError when its security settings are wrong or it would be open to a network."""
    settings = settings or get_settings()
    security = Security.from_settings(settings)
    check_exposure(settings, settings.bridge_host, security.keys)
    ca = read_ca(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        channel = open_channel(settings, ca, obs.grpc_interceptors())
        store = MediaStore(
            settings.media_dir,
            settings.media_retention_seconds,
            max_bytes=settings.media_max_bytes,
            grace_seconds=settings.media_grace_seconds,
        )
        app.state.backend = Backend(
            settings, channel, pb_grpc.AvatarServiceStub(channel), health_pb2_grpc.HealthStub(channel), store
        )
        purger = asyncio.create_task(store.purge_forever())
        try:
            yield
        finally:
            purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await purger
            await channel.close()
            obs.close()

    app = FastAPI(
        title="Talking Avatar REST bridge",
        version="1.0.0",
        description="Multipart /interact → gRPC avatar.v1.AvatarService/Interact; produced media served by URL.",
        lifespan=lifespan,
    )
    app.state.security = security
    # Outermost last: headers on every answer, CORS (also on refusals, so a page can read them), then the guard.
    app.add_middleware(CatchAll)  # innermost: a route's unexpected exception → 500 JSON with an error id
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes + _MULTIPART_OVERHEAD, paths=(INTERACT_PATH,))
    app.add_middleware(AccessGuard, security=security)
    if security.origins.allowed:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(security.origins.allowed),
            allow_credentials=False,  # the key travels in the Authorization header, not in cookies
            allow_methods=["GET", "HEAD", "POST"],
            allow_headers=["Authorization", "Content-Type", "Range"],
            expose_headers=["Retry-After", "Content-Range", "Accept-Ranges", "Content-Length"],
            max_age=600,
        )
    app.add_middleware(SecurityHeaders, allowed_origins=security.origins.allowed)
    obs = observability.install(app, settings)  # outermost: counts and traces every answer, refusals too
    app.add_exception_handler(errors.BridgeError, errors.handle_bridge_error)
    app.add_exception_handler(StarletteHTTPException, errors.handle_http_error)
    app.add_exception_handler(RequestValidationError, errors.handle_validation_error)
    app.add_exception_handler(Exception, errors.handle_unexpected_error)
    app.include_router(interact.router)
    app.include_router(media.router)
    app.include_router(health.router)
    app.include_router(avatars.router)
    app.include_router(converse.router)
    app.include_router(ticket.router)
    document_security(app, keys_required=security.keys.enabled)
    if (settings.widget_dir / "index.html").is_file():
        app.mount("/", StaticFiles(directory=settings.widget_dir, html=True), name="widget")
    else:

        @app.get("/", include_in_schema=False)
        async def no_widget() -> HTMLResponse:
            return HTMLResponse(
                "<h1>Talking Avatar</h1><p>The widget is not built: <code>make run</code> builds it. "
                "The API is at <a href='/docs'>/docs</a>.</p>"
            )

    return app
