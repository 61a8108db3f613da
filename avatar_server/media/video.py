"""MP4 (H.264 + AAC) muxing with PyAV, which bundles libx264 and the AAC encoder."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from fractions import Fraction

import av
import cv2
import numpy as np
import numpy.typing as npt

from avatar_server.media.audio import resample

_AAC_RATE = 24000  # AAC-LC at a standard rate; reply voices are 22.05 kHz


def encode_mp4(
    frames: Iterable[npt.NDArray[np.uint8]],
    fps: int,
    audio: npt.NDArray[np.float32],
    audio_rate: int,
    preset: str = "superfast",
) -> bytes:
    """An mp4 for browsers: H.264 (yuv420p, faststart) video of RGB frames, AAC mono audio."""
    # faststart rewrites the file to put the index first (browsers start playing at once), so the
    # muxer needs a real file it can reopen, not a BytesIO.
    fd, path = tempfile.mkstemp(suffix=".mp4", prefix="avatar-")
    os.close(fd)
    try:
        _mux(path, frames, fps, audio, audio_rate, preset)
        with open(path, "rb") as f:
            return f.read()
    finally:
        os.unlink(path)


def _mux(
    path: str,
    frames: Iterable[npt.NDArray[np.uint8]],
    fps: int,
    audio: npt.NDArray[np.float32],
    audio_rate: int,
    preset: str,
) -> None:
    with av.open(path, mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
        video = None
        astream = container.add_stream("aac", rate=_AAC_RATE, layout="mono")
        astream.bit_rate = 64000
        astream.codec_context.options = {"aac_coder": "fast"}  # the default two-loop search costs 4x the time
        for k, rgb in enumerate(frames):
            if video is None:
                video = container.add_stream("libx264", rate=fps)
                video.width, video.height = rgb.shape[1], rgb.shape[0]
                video.pix_fmt = "yuv420p"
                video.time_base = Fraction(1, fps)
                video.options = {"preset": preset, "crf": "23"}
            # OpenCV's RGB->I420 is about twice as fast as swscale's conversion inside the encoder.
            yuv = np.asarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
            frame.pts = k
            container.mux(video.encode(frame))
        if video is not None:
            container.mux(video.encode(None))
        pcm = (np.clip(resample(audio, audio_rate, _AAC_RATE), -1, 1) * 32767).astype(np.int16)
        step = 1024
        for start in range(0, len(pcm), step):
            chunk = pcm[start : start + step].reshape(1, -1)
            aframe = av.AudioFrame.from_ndarray(chunk, format="s16", layout="mono")
            aframe.sample_rate = _AAC_RATE
            aframe.pts = start
            aframe.time_base = Fraction(1, _AAC_RATE)
            container.mux(astream.encode(aframe))
        container.mux(astream.encode(None))
