"""Bridge settings from the environment (AVATAR_ prefix, shared with the server's variables)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parents[1]


class BridgeSettings(BaseSettings):
    # hide_input_in_errors: a mistyped setting must not print its value (it may be a key).
    model_config = SettingsConfigDict(env_prefix="AVATAR_", extra="ignore", hide_input_in_errors=True)

    bridge_host: str = "127.0.0.1"
    bridge_port: int = 8000
    grpc_target: str = "127.0.0.1:50051"
    grpc_timeout_seconds: float = 120.0
    media_dir: Path = ROOT / "media"
    media_retention_seconds: float = 3600.0
    max_upload_bytes: int = 25 * 1024 * 1024
    max_text_chars: int = 2000
    widget_dir: Path = ROOT / "clients" / "web" / "dist"
    # Security (rest_bridge.security): keys are SecretStr, so neither repr() nor a validation error shows them.
    api_keys: SecretStr = SecretStr("")  # comma-separated keys or sha256:<hex> hashes; empty: no authentication
    grpc_api_key: SecretStr = SecretStr("")  # the bridge's own key for avatar_server
    grpc_ca_file: Path | None = None  # TLS to avatar_server, trusting this CA bundle (PEM)
    allowed_origins: str = ""  # comma-separated origins besides the bridge's own (browsers' Origin header)
    allow_insecure: bool = False  # serve a non-loopback address without keys
    ws_ticket_seconds: float = 30.0  # how long a WebSocket ticket stays valid (it is also single-use)

    # Hardening (media quota and the WebSocket's bounds)
    media_max_bytes: int = 2 * 1024**3  # produced media on disk; least recently read files go first
    media_grace_seconds: float = 60.0  # the quota evicts a file read this recently only when nothing else can go
    ws_max_message_bytes: int = 1024 * 1024  # larger WebSocket messages are refused by the server (close 1009)
    ws_outbox_bytes: int = 8 * 1024 * 1024  # unsent bridge → browser data before a browser that does not read is closed

    # Observability (rest_bridge.observability): GET /metrics is always served.
    tracing: bool | None = None  # OpenTelemetry spans (the `otel` extra); unset: on when OTEL_* names an exporter


@lru_cache(maxsize=1)
def get_settings() -> BridgeSettings:
    return BridgeSettings()
