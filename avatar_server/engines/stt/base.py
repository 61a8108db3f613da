"""Speech-to-text interface."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from avatar_server.values import Transcript


@dataclass(frozen=True)
class SttCapabilities:
    """Capabilities as data: the pipeline never type-checks a backend."""

    streaming: bool
    sample_rate: int
    languages: tuple[str, ...]
    model: str
    local: bool = True  # computes on this machine's cores (False: waits on a remote service)


class SpeechToText(Protocol):
    """Transcribes mono float32 audio at `capabilities.sample_rate`. Synchronous; run off the loop."""

    name: str
    capabilities: SttCapabilities

    def transcribe(self, samples: npt.NDArray[np.float32], *, language: str | None) -> Transcript:
        """`language` None means detect."""
        ...
