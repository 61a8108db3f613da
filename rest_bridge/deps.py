"""Dependencies shared by the routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from rest_bridge.backend import Backend


def get_backend(conn: HTTPConnection) -> Backend:
    """The Backend the app's lifespan opened; HTTPConnection so HTTP routes and WebSockets share it."""
    backend: Backend = conn.app.state.backend
    return backend


BackendDep = Annotated[Backend, Depends(get_backend)]
