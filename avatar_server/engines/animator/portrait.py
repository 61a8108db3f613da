"""The embedded animator: speech -> animation track (always) and a portrait video (when asked)."""

from __future__ import annotations

import hashlib

import numpy as np

from avatar_server.animation.portrait import PortraitRenderer, renderer_for
from avatar_server.animation.track import frame_count, track_from_audio, track_from_phonemes
from avatar_server.media.video import encode_mp4
from avatar_server.personas import Avatar
from avatar_server.values import Speech, Track

TRACK_FPS = 30.0


class PortraitAnimator:
    """Phoneme timings (or the audio alone) drive visemes/blendshapes and a 2D portrait warp."""

    name = "portrait"
    local = True

    def __init__(self, avatars: dict[str, Avatar], *, video_fps: int, video_size: int) -> None:
        self.video_fps = video_fps
        self._renderers: dict[str, PortraitRenderer] = {
            avatar.id: renderer_for(avatar.portrait.path, avatar.portrait.landmarks, video_size)
            for avatar in avatars.values()
        }

    def track(self, speech: Speech, text: str) -> Track:
        """The blendshape/viseme track of one piece of speech (blinks seeded by its text)."""
        seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "little")
        if speech.phonemes:
            return track_from_phonemes(speech.phonemes, speech.duration, TRACK_FPS, seed=seed)
        return track_from_audio(speech.samples, speech.sample_rate, TRACK_FPS, seed=seed)

    def video(self, avatar_id: str, speech: Speech, track: Track, start: float = 0.0) -> tuple[bytes, float]:
        """A self-contained mp4 of the portrait saying `speech`, and its duration.

        `start` (seconds on the turn's clock) continues the idle head motion from the segment before.
        """
        frames = self._renderers[avatar_id].frames(track, self.video_fps, speech.duration, start)
        mp4 = encode_mp4(frames, self.video_fps, speech.samples.astype(np.float32), speech.sample_rate)
        return mp4, frame_count(speech.duration, self.video_fps) / self.video_fps
