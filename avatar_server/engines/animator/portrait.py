"""The embedded animator: speech -> animation track (always) and a portrait video (when asked)."""

from __future__ import annotations

import hashlib

import numpy as np

from avatar_server.animation.portrait import PortraitRenderer
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
        import cv2

        self.video_fps = video_fps
        self._renderers: dict[str, PortraitRenderer] = {}
        for avatar in avatars.values():
            bgr = cv2.imread(str(avatar.portrait.path))
            if bgr is None:
                raise FileNotFoundError(f"avatar {avatar.id}: cannot read portrait {avatar.portrait.path}")
            image = np.asarray(bgr, dtype=np.uint8)
            rgb = np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), dtype=np.uint8)
            self._renderers[avatar.id] = PortraitRenderer(rgb, avatar.portrait.landmarks, video_size)

    def track(self, speech: Speech, text: str) -> Track:
        """The blendshape/viseme track of one piece of speech (blinks seeded by its text)."""
        seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "little")
        if speech.phonemes:
            return track_from_phonemes(speech.phonemes, speech.duration, TRACK_FPS, seed=seed)
        return track_from_audio(speech.samples, speech.sample_rate, TRACK_FPS, seed=seed)

    def video(self, avatar_id: str, speech: Speech, track: Track) -> tuple[bytes, float]:
        """A self-contained mp4 of the portrait saying `speech`, and its duration."""
        frames = self._renderers[avatar_id].frames(track, self.video_fps, speech.duration)
        mp4 = encode_mp4(frames, self.video_fps, speech.samples.astype(np.float32), speech.sample_rate)
        return mp4, frame_count(speech.duration, self.video_fps) / self.video_fps
