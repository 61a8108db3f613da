"""POST /api/v1/avatar/converse/ticket: a one-use, short-lived ticket to open the WebSocket with.

Browsers cannot set headers on a WebSocket upgrade, so the key goes on this ordinary request (AccessGuard checks
it like every /api/v1/* call) and the socket is opened with `?ticket=<ticket>`.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from rest_bridge.security import Security

router = APIRouter(prefix="/api/v1/avatar", tags=["avatar"])


class Ticket(BaseModel):
    ticket: str
    expires_in: int


@router.post(
    "/converse/ticket",
    summary="A one-use ticket for the converse WebSocket (?ticket=...), valid for a few seconds",
)
async def converse_ticket(request: Request, response: Response) -> Ticket:
    security: Security = request.app.state.security
    response.headers["Cache-Control"] = "no-store"
    return Ticket(ticket=security.tickets.issue(), expires_in=max(1, int(security.tickets.ttl)))
