"""What the routes share, in a module of its own so that routes and deps never import the app."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import grpc
from avatar.v1 import avatar_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2_grpc

from rest_bridge.media_store import MediaStore
from rest_bridge.settings import BridgeSettings


@dataclass
class Backend:
    """One gRPC channel opened at startup, its stubs, the media store."""

    settings: BridgeSettings
    channel: grpc.aio.Channel
    avatar: pb_grpc.AvatarServiceStub
    health: health_pb2_grpc.HealthStub
    media: MediaStore
    faces: dict[str, Any] = field(default_factory=dict)  # avatar id -> its face, fetched once
