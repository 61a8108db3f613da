"""REST/WebSocket bridge in front of the gRPC AvatarService (FastAPI)."""
