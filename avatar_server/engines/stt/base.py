"""Speech-to-text interface."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
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

    def transcribe(
        self, samples: npt.NDArray[np.float32], *, language: str | None, fallback: str | None = None
    ) -> Transcript:
        """`language` None means detect, among the languages the engine was told the deployment serves;
        a detection less sure than the engine's threshold takes `fallback` (None: the best one anyway)."""
        ...


def choose_language(
    probabilities: Iterable[tuple[str, float]],
    served: Sequence[str],
    *,
    min_probability: float = 0.0,
    fallback: str | None = None,
) -> tuple[str, float]:
    """The language to transcribe in, from a detector's (language, probability) pairs over every language
    it knows: the most probable of the `served` ones (all of them when `served` is empty). When even that
    one is less probable than `min_probability`, `fallback` (when given) with the probability the
    detector gave it. Whisper base hears a short English clip as Chinese (0.52 against 0.35 for English)
    and espeak-ng's Ukrainian as Latin or Italian: among English and Ukrainian, English is right."""
    table = {code.lower(): float(p) for code, p in probabilities}
    candidates = [c for c in served if c in table] if served else list(table)
    if not candidates:  # the detector knows none of the served languages: nothing to choose from
        candidates = list(served)
    if not candidates:
        return fallback or "", 0.0
    best = max(candidates, key=lambda c: table.get(c, 0.0))
    probability = table.get(best, 0.0)
    if fallback and probability < min_probability:
        return fallback, table.get(fallback, 0.0)
    return best, probability
