"""Streamed client audio (PCM16 at a stated rate, or Opus packets) → mono float32 at 16 kHz."""

from __future__ import annotations

import logging

import av
import numpy as np
import numpy.typing as npt

from avatar_server.errors import InvalidInput
from avatar_server.media.audio import STT_SAMPLE_RATE

log = logging.getLogger(__name__)


class AudioInput:
    """Stateful: the resampler and the Opus decoder keep their state across chunks."""

    def __init__(self, encoding: str, sample_rate: int) -> None:
        if encoding not in ("pcm16", "opus"):
            raise InvalidInput(f"Unsupported audio encoding {encoding!r}; use PCM16 or OPUS.")
        if not 8000 <= sample_rate <= 48000:
            raise InvalidInput(f"Sample rate {sample_rate} Hz is outside 8000..48000.")
        self.encoding = encoding
        self.rate = 48000 if encoding == "opus" else sample_rate
        self._resampler = (
            av.AudioResampler(format="flt", layout="mono", rate=STT_SAMPLE_RATE)
            if self.rate != STT_SAMPLE_RATE
            else None
        )
        self._decoder = None
        if encoding == "opus":
            self._decoder = av.CodecContext.create("libopus", "r")
            self._decoder.sample_rate = 48000
            self._decoder.layout = "mono"

    def convert(self, data: bytes) -> npt.NDArray[np.float32]:
        if self._decoder is not None:
            try:
                frames = self._decoder.decode(av.Packet(data))
            except av.FFmpegError as exc:
                log.info("an Opus packet could not be decoded: %s", exc)  # FFmpeg's words: the log's, not the client's
                raise InvalidInput("An Opus packet could not be decoded: send one Opus packet per message.") from None
            pieces = [np.asarray(f.to_ndarray(), dtype=np.float32).mean(axis=0) for f in frames]
            samples = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
            if frames and frames[0].format.name in ("s16", "s16p"):
                samples = samples / 32768.0
        else:
            if len(data) % 2:
                raise InvalidInput("PCM16 audio chunks must hold whole 16-bit samples (the byte count is odd).")
            samples = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
        if self._resampler is None or len(samples) == 0:
            return samples.astype(np.float32, copy=False)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = self.rate
        out = [np.asarray(f.to_ndarray(), dtype=np.float32).reshape(-1) for f in self._resampler.resample(frame)]
        return np.concatenate(out) if out else np.zeros(0, np.float32)
