"""Animator interface: speech → animation track (always) and video (on request)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from avatar_server.values import Speech, Track


class Animator(Protocol):
    """Speech → animation track (always) and video (on request)."""

    name: str
    video_fps: int
    local: bool  # renders on this machine's cores (False: waits on another process or device)

    def track(self, speech: Speech, text: str) -> Track: ...

    def video(self, avatar_id: str, speech: Speech, track: Track) -> tuple[bytes, float]: ...

    def animate(self, avatar_id: str, speech: Speech, text: str, *, want_video: bool) -> Animation: ...


@dataclass(frozen=True)
class Animation:
    track: Track
    video_mp4: bytes | None
    video_seconds: float = 0.0
