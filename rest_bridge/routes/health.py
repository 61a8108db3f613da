"""GET /healthz: the gRPC backend's health."""

from __future__ import annotations

import grpc
from fastapi import APIRouter
from grpc_health.v1 import health_pb2

from rest_bridge.deps import BackendDep
from rest_bridge.errors import BridgeError

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Health of the bridge and its gRPC backend")
async def healthz(backend: BackendDep) -> dict[str, str]:
    try:
        reply = await backend.health.Check(
            health_pb2.HealthCheckRequest(service="avatar.v1.AvatarService"), timeout=3.0
        )
    except grpc.aio.AioRpcError as exc:
        raise BridgeError(503, "UNAVAILABLE", f"The avatar service is unavailable: {exc.code().name}") from None
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        raise BridgeError(503, "UNAVAILABLE", f"The avatar service is {status}")
    return {"status": status}  # not the backend's address: that is for the operator's logs only
