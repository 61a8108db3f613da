"""ASGI middleware: an exception no route handled becomes a 500 JSON answer with an error id, logged once."""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rest_bridge.errors import BRIDGE_INTERNAL_MESSAGE, error_response, new_error_id

log = logging.getLogger(__name__)


class CatchAll:
    """Innermost of the bridge's middleware: routes' unexpected exceptions stop here.

    Unlike an exception handler for Exception (Starlette's ServerErrorMiddleware answers, then re-raises for
    the server to log a second traceback), this answers {"error": {"code": "INTERNAL", ...}} and logs the
    traceback once, under the error id the client was given.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] in ("http.response.start", "websocket.accept", "websocket.close"):
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracked_send)
        except Exception as exc:
            error_id = new_error_id()
            log.error("error_id=%s unhandled %s on %s", error_id, type(exc).__name__, scope.get("path"), exc_info=exc)
            if started:
                return  # part of an answer went out; the connection ends here
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1011, "reason": f"Internal error {error_id}"})
                return
            response = error_response(500, "INTERNAL", BRIDGE_INTERNAL_MESSAGE, error_id=error_id)
            await response(scope, receive, send)
