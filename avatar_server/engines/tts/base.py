"""Text-to-speech interface."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from avatar_server.values import Speech


@dataclass(frozen=True)
class VoiceSpec:
    """A voice an engine offers."""

    id: str
    languages: tuple[str, ...]


@dataclass(frozen=True)
class TtsCapabilities:
    """What an engine can do; data, so callers never type-check a backend."""

    phoneme_timings: bool
    voices: tuple[VoiceSpec, ...] = field(default_factory=tuple)
    local: bool = True  # computes on this machine's cores (False: waits on a remote service)

    def speaks(self, language: str) -> bool:
        return any(language_matches(language, lang) for v in self.voices for lang in v.languages)


def language_matches(wanted: str, offered: str) -> bool:
    """True when a BCP-47 tag `offered` covers `wanted` ("en" covers "en-us" and the reverse)."""
    w, o = wanted.lower().split("-")[0], offered.lower().split("-")[0]
    return w == o


class TextToSpeech(Protocol):
    """Speaks text. Implementations are synchronous; the pipeline runs them off the event loop."""

    name: str
    capabilities: TtsCapabilities

    def synthesize(self, text: str, *, voice: str, language: str) -> Speech:
        """Speak `text` with `voice` (an id from capabilities) in `language`."""
        ...
