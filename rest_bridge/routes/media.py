"""Produced media at the seed's paths, with Range support (browsers seek video with it).

The file is opened before the answer starts and sent from that open file: one deleted by the purger or the
quota after the lookup is a 404 JSON answer, and one deleted while it is sent is still sent whole.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import BinaryIO

import anyio
from fastapi import APIRouter
from fastapi.responses import FileResponse
from starlette.types import Receive, Scope, Send

from rest_bridge.deps import BackendDep
from rest_bridge.errors import BridgeError
from rest_bridge.media_store import CONTENT_TYPES, KINDS

router = APIRouter(tags=["media"])
_GONE = "No such media (it may have expired)."


class OpenFileResponse(FileResponse):
    """FileResponse (Range, HEAD, ETag) reading from a file already open, closed when the answer ends."""

    def __init__(self, file: BinaryIO, stat_result: os.stat_result, media_type: str, headers: dict[str, str]):
        super().__init__(file.name, media_type=media_type, headers=headers, stat_result=stat_result)
        self._file = file

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope = {
            **scope,
            "extensions": {k: v for k, v in scope.get("extensions", {}).items() if k != "http.response.pathsend"},
        }
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._file.close()

    @asynccontextmanager
    async def _open_file(self) -> AsyncIterator[anyio.AsyncFile[bytes]]:
        yield anyio.wrap_file(self._file)  # closed by __call__, also when the transfer is cancelled


@router.get("/static/{kind}/{filename}", summary="Fetch produced audio, video or an animation track")
@router.head("/static/{kind}/{filename}", include_in_schema=False)  # the same answer without its body
async def get_media(kind: str, filename: str, backend: BackendDep) -> FileResponse:
    ext = KINDS.get(kind)
    path = None
    if ext and filename.endswith(ext):
        path = backend.media.path(kind, filename.removesuffix(ext))
    opened = await asyncio.to_thread(backend.media.open_for_read, path) if path is not None else None
    if opened is None:
        raise BridgeError(404, "NOT_FOUND", _GONE)
    file, st = opened
    return OpenFileResponse(file, st, CONTENT_TYPES[kind], {"Cache-Control": "private, max-age=3600"})
