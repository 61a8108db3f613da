"""Animator interface: speech → animation track (always) and video (on request)."""

from __future__ import annotations

from typing import Protocol

from avatar_server.values import Speech, Track


class Animator(Protocol):
    """Speech → animation track (always) and video (on request)."""

    name: str
    video_fps: int
    local: bool  # renders on this machine's cores (False: waits on another process or device)

    def track(self, speech: Speech, text: str) -> Track: ...

    def video(self, avatar_id: str, speech: Speech, track: Track, start: float = 0.0) -> tuple[bytes, float]:
        """An MP4 of the avatar saying `speech`; `start` is where it begins on the turn's clock (idle motion)."""
        ...
