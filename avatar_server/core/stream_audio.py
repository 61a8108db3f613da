"""A live session's microphone audio on the stream clock (16 kHz sample positions since the stream began)."""

from __future__ import annotations

import time
from collections import deque

import numpy as np
import numpy.typing as npt


class StreamAudio:
    """The audio kept from `base` on (older audio is trimmed away), and when each chunk reached the server."""

    def __init__(self) -> None:
        self._samples: npt.NDArray[np.float32] = np.zeros(0, dtype=np.float32)
        self.base = 0  # stream position of the first sample kept
        self._arrivals: deque[tuple[int, float]] = deque(maxlen=512)  # (position after a chunk, wall time)

    @property
    def position(self) -> int:
        """The stream position after the last sample received."""
        return self.base + len(self._samples)

    @property
    def kept(self) -> int:
        return len(self._samples)

    def append(self, samples: npt.NDArray[np.float32], now: float) -> None:
        self._samples = np.concatenate([self._samples, samples])
        self._arrivals.append((self.position, now))

    def trim(self, keep_from: int) -> None:
        cut = keep_from - self.base
        if cut > 0:
            self._samples = self._samples[cut:]
            self.base = keep_from

    def slice(self, start: int, end: int) -> npt.NDArray[np.float32]:
        return self._samples[max(0, start - self.base) : max(0, end - self.base)].copy()

    def arrival(self, position: int) -> float:
        """The wall time at which the sample at `position` reached the server."""
        for after, wall in self._arrivals:
            if after > position:
                return wall
        return time.perf_counter()
