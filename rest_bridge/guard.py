"""ASGI middleware and the WebSocket admission check that apply rest_bridge.security to every request.

- AccessGuard: a state-changing request from a foreign Origin → 403; /api/v1/* without a valid Bearer key
  (when keys are configured) → 401 with `WWW-Authenticate: Bearer`.
- SecurityHeaders: nosniff, no-referrer and a Content-Security-Policy with frame-ancestors on every response.
- admit_websocket: the same Origin and key rules on the WebSocket upgrade, the key as a one-use ticket.
"""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi import FastAPI, WebSocket
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rest_bridge.security import Security, bearer_token, header

API_PREFIX = "/api/v1/"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_HOST_RE = re.compile(r"^[a-z0-9.\-]+(:\d{1,5})?$|^\[[0-9a-f:.]+\](:\d{1,5})?$")
_DOCS_PATHS = ("/docs", "/redoc")
_DOCS_SOURCES = "https://cdn.jsdelivr.net"


def _json_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


def forbidden_origin_message(origin: str) -> str:
    shown = origin[:100]
    return f"Requests from the web origin {shown!r} are not allowed by this avatar service."


UNAUTHENTICATED_MESSAGE = "A valid API key is required: send the header 'Authorization: Bearer <key>'."


class AccessGuard:
    """Origin allowlist for state-changing requests and Bearer-key authentication for /api/v1/*."""

    def __init__(self, app: ASGIApp, *, security: Security) -> None:
        self.app = app
        self.security = security

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope["headers"]
        method = scope["method"]
        origin = header(headers, b"origin")
        if (
            method not in _SAFE_METHODS
            and origin is not None
            and not self.security.origins.allows(origin, header(headers, b"host"))
        ):
            await _respond(send, 403, _json_body("FORBIDDEN", forbidden_origin_message(origin)))
            return
        if (
            self.security.keys.enabled
            and scope["path"].startswith(API_PREFIX)
            and method != "OPTIONS"
            and not self.security.keys.accepts(bearer_token(header(headers, b"authorization")))
        ):
            body = _json_body("UNAUTHENTICATED", UNAUTHENTICATED_MESSAGE)
            await _respond(send, 401, body, [(b"www-authenticate", b'Bearer realm="avatar"')])
            return
        await self.app(scope, receive, send)


async def _respond(send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra or [])})
    await send({"type": "http.response.body", "body": body})


async def admit_websocket(ws: WebSocket) -> bool:
    """Check a WebSocket upgrade before accepting it; refuse it with an HTTP 403/401 JSON answer if it fails.

    A browser always sends Origin on an upgrade; it must be the bridge's own or an allowed one. With keys
    configured, the socket needs `?ticket=` (from POST /api/v1/avatar/converse/ticket, one use, 30 s) or, for
    clients that can set headers, `Authorization: Bearer <key>`.
    """
    security: Security = ws.app.state.security
    origin = ws.headers.get("origin")
    if origin is not None and not security.origins.allows(origin, ws.headers.get("host")):
        await _deny(ws, 403, "FORBIDDEN", forbidden_origin_message(origin))
        return False
    if not security.keys.enabled:
        return True
    ticket = ws.query_params.get("ticket")
    if ticket is not None:
        if security.tickets.redeem(ticket):
            return True
        await _deny(ws, 401, "UNAUTHENTICATED", "The ticket is unknown, expired or already used; fetch a new one.")
        return False
    if security.keys.accepts(bearer_token(ws.headers.get("authorization"))):
        return True
    message = "A ticket is required: POST /api/v1/avatar/converse/ticket with your key, then open ?ticket=<ticket>."
    await _deny(ws, 401, "UNAUTHENTICATED", message)
    return False


async def _deny(ws: WebSocket, status: int, code: str, message: str) -> None:
    headers = {"www-authenticate": 'Bearer realm="avatar"'} if status == 401 else None
    try:
        await ws.send_denial_response(
            JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)
        )
    except RuntimeError:  # a server without the denial-response extension: close before accept (HTTP 403)
        await ws.close(code=1008, reason=message[:120])


class SecurityHeaders:
    """nosniff, no-referrer and a CSP on every HTTP response: the widget page, media and JSON alike."""

    def __init__(self, app: ASGIApp, *, allowed_origins: tuple[str, ...]) -> None:
        self.app = app
        self.frame_ancestors = " ".join(("'self'", *allowed_origins))

    def csp(self, path: str, content_type: str, host: str | None) -> str:
        ancestors = f"frame-ancestors {self.frame_ancestors}"
        if path in _DOCS_PATHS:  # FastAPI's Swagger UI and ReDoc pages load their code from a CDN
            return (
                f"default-src 'self'; script-src 'self' 'unsafe-inline' {_DOCS_SOURCES}; "
                f"style-src 'self' 'unsafe-inline' {_DOCS_SOURCES} https://fonts.googleapis.com; "
                "font-src https://fonts.gstatic.com; img-src 'self' data: https:; worker-src blob:; "
                f"connect-src 'self'; object-src 'none'; base-uri 'none'; {ancestors}"
            )
        if content_type.startswith("text/html"):
            # The widget: its own scripts and styles; the microphone worklet comes from a blob: URL; reply media
            # and faces from this bridge (or blob:/data: URLs); the live conversation over this host's WebSocket.
            sockets = ""
            if host and _HOST_RE.match(host.lower()):
                sockets = f" ws://{host.lower()} wss://{host.lower()}"
            return (
                "default-src 'self'; script-src 'self' blob:; worker-src 'self' blob:; style-src 'self'; "
                "img-src 'self' data: blob:; media-src 'self' blob:; "
                f"connect-src 'self'{sockets}; object-src 'none'; base-uri 'none'; form-action 'self'; {ancestors}"
            )
        return f"default-src 'none'; {ancestors}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                content_type = header(headers, b"content-type") or ""
                policy = self.csp(scope["path"], content_type, header(scope["headers"], b"host"))
                for name, value in (
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"content-security-policy", policy.encode()),
                ):
                    if name not in present:
                        headers.append((name, value))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def document_security(app: FastAPI, *, keys_required: bool) -> None:
    """Declare the Bearer scheme in the OpenAPI schema (/docs gets an Authorize button) and the answers the
    guard gives: 401 on /api/v1/* when keys are required, 403 on a foreign Origin's POST."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        error = {"description": "Error", "content": {"application/json": {"schema": {"type": "object"}}}}
        schema.setdefault("components", {}).setdefault("securitySchemes", {})["bearer"] = {
            "type": "http",
            "scheme": "bearer",
            "description": "One of the bridge's AVATAR_API_KEYS",
        }
        for path, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                responses = operation.setdefault("responses", {})
                if keys_required and path.startswith(API_PREFIX):
                    operation["security"] = [{"bearer": []}]
                    responses.setdefault("401", {**error, "description": "Missing or wrong API key"})
                if method.upper() not in _SAFE_METHODS:
                    responses.setdefault("403", {**error, "description": "The request's Origin is not allowed"})
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
