"""Bridge settings from the environment (AVATAR_ prefix, shared with the server's variables)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parents[1]


class BridgeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AVATAR_", extra="ignore")

    bridge_host: str = "127.0.0.1"
    bridge_port: int = 8000
    grpc_target: str = "127.0.0.1:50051"
    grpc_timeout_seconds: float = 120.0
    media_dir: Path = ROOT / "media"
    media_retention_seconds: float = 3600.0
    max_upload_bytes: int = 25 * 1024 * 1024
    max_text_chars: int = 2000
    widget_dir: Path = ROOT / "clients" / "web" / "dist"


@lru_cache(maxsize=1)
def get_settings() -> BridgeSettings:
    return BridgeSettings()
