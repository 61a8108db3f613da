"""The avatars and their faces, for the widget: GET /api/v1/avatars, /api/v1/avatars/{id}/face (+ images)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import grpc
from avatar.v1 import avatar_pb2 as pb
from fastapi import APIRouter, Response

from rest_bridge.deps import BackendDep
from rest_bridge.errors import BridgeError, from_grpc

router = APIRouter(prefix="/api/v1/avatars", tags=["avatars"])
_CACHE = "public, max-age=3600"


@dataclass(frozen=True)
class _Face:
    model: dict[str, Any]
    portrait_png: bytes
    mouth_png: bytes


async def _face(backend: BackendDep, avatar_id: str) -> _Face:
    """The avatar's face from the server, kept per bridge process (a face does not change while it runs)."""
    cache = backend.faces
    if avatar_id in cache:
        cached: _Face = cache[avatar_id]
        return cached
    try:
        reply = await backend.avatar.GetAvatarFace(pb.GetAvatarFaceRequest(avatar_id=avatar_id), timeout=20.0)
    except grpc.aio.AioRpcError as exc:
        raise from_grpc(exc) from None
    face = _Face(json.loads(reply.face_model_json), reply.portrait_png, reply.mouth_png)
    if len(cache) < 64:
        cache[avatar_id] = face
    return face


@router.get("", summary="The avatars this server offers, and the default one")
async def list_avatars(backend: BackendDep) -> dict[str, Any]:
    try:
        caps = await backend.avatar.GetCapabilities(pb.GetCapabilitiesRequest(), timeout=10.0)
    except grpc.aio.AioRpcError as exc:
        raise from_grpc(exc) from None
    avatars = [
        {"id": a.id, "name": a.name, "description": a.description, "voice": a.voice, "language": a.language}
        for a in caps.avatars
    ]
    return {"default": caps.default_avatar_id, "avatars": avatars}


@router.get("/{avatar_id}/face", summary="An avatar's face model, with the URLs of its portrait and mouth images")
async def get_face(avatar_id: str, backend: BackendDep, response: Response) -> dict[str, Any]:
    face = await _face(backend, avatar_id)
    response.headers["Cache-Control"] = _CACHE
    base = f"/api/v1/avatars/{avatar_id}"
    return {"avatarId": avatar_id, "portrait": f"{base}/portrait.png", "mouth": f"{base}/mouth.png", **face.model}


@router.get("/{avatar_id}/{image}", summary="An avatar's portrait crop or mouth texture (PNG)")
async def get_image(avatar_id: str, image: str, backend: BackendDep) -> Response:
    if image not in ("portrait.png", "mouth.png"):
        raise BridgeError(404, "NOT_FOUND", f"No image {image!r}: use portrait.png or mouth.png.")
    face = await _face(backend, avatar_id)
    data = face.portrait_png if image == "portrait.png" else face.mouth_png
    return Response(data, media_type="image/png", headers={"Cache-Control": _CACHE})
