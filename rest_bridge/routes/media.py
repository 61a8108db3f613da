"""Produced media at the seed's paths, with Range support (browsers seek video with it)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse

from rest_bridge.deps import BackendDep
from rest_bridge.errors import BridgeError
from rest_bridge.media_store import CONTENT_TYPES, KINDS

router = APIRouter(tags=["media"])


@router.api_route(
    "/static/{kind}/{filename}", methods=["GET", "HEAD"], summary="Fetch produced audio, video or an animation track"
)
async def get_media(kind: str, filename: str, backend: BackendDep) -> FileResponse:
    ext = KINDS.get(kind)
    path = None
    if ext and filename.endswith(ext):
        path = backend.media.path(kind, filename.removesuffix(ext))
    if path is None:
        raise BridgeError(404, "NOT_FOUND", "No such media (it may have expired).")
    return FileResponse(path, media_type=CONTENT_TYPES[kind], headers={"Cache-Control": "private, max-age=3600"})
